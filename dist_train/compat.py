"""Differences between Paddle 2.6 and 3.x, in one place (the only module that branches on them).

Inference models: Paddle 3 writes the PIR program as ``<name>.json`` by default; Paddle 2.x (and
3.x started with ``FLAGS_enable_pir_api=0``) writes the legacy ``<name>.pdmodel``. The PIR flag is
read when Paddle is imported, so a process that already imported Paddle with PIR on cannot write
the legacy format: that needs a fresh process with ``legacy_export_env()``.

zlib: Paddle 2.6's libpaddle.so exports its own zlib. When the system libz.so.1 is first loaded as
Paddle's dependency, libz's internal calls bind to Paddle's copy and PNG encoding/decoding (OpenCV,
matplotlib/Pillow) crashes in deflateReset/inflateReset2. Loading libz through Python's zlib module
BEFORE Paddle avoids it; ``import dist_train`` does that (so import dist_train before paddle).
Importing numpy first also loads libz (checked with LD_DEBUG=bindings: no libz -> libpaddle
binding), so only a process whose first heavy import is paddle is affected.

CPU random generator: Paddle 3's GeneratorState pickles to (device, seed, offset, engine state);
Paddle 2.6's drops the engine state, so it cannot be saved exactly (see ``capture_cpu_generator``).
Paddle 2.6's ``paddle.set_rng_state(..., device="cpu")`` raises AttributeError (a shadowed module).
"""
from __future__ import annotations

import ctypes
import json
import os
import zlib  # noqa: F401  (must load before Paddle: see the module docstring)

import numpy as np

PIR_FLAG = "FLAGS_enable_pir_api"
MODEL_SUFFIX = {"pir": ".json", "legacy": ".pdmodel"}
PARAMS_SUFFIX = ".pdiparams"


def paddle_version() -> str:
    import paddle

    return paddle.__version__


def major_of(version: str) -> int:
    """3 for "3.3.1"; development builds ("0.0.0") count as current (3 and later)."""
    major = int(str(version).split(".")[0])
    return major if major > 0 else 3


def paddle_major() -> int:
    return major_of(paddle_version())


def pir_enabled() -> bool:
    """True when this process writes PIR (.json) programs."""
    if paddle_major() < 3:
        return False
    import paddle

    return bool(paddle.get_flags([PIR_FLAG])[PIR_FLAG])


def default_export_format() -> str:
    return "pir" if paddle_major() >= 3 else "legacy"


def check_export_format(fmt: str) -> str:
    if fmt not in MODEL_SUFFIX:
        raise ValueError(f"export format must be 'pir' or 'legacy', got {fmt!r}")
    if fmt == "pir" and paddle_major() < 3:
        raise ValueError(f"export format 'pir' needs Paddle 3; this is Paddle {paddle_version()}: "
                         "use --format legacy (export.format: legacy)")
    return fmt


def legacy_export_env() -> dict[str, str]:
    """Environment variables a fresh process needs to write the legacy .pdmodel format."""
    return {PIR_FLAG: "0"}


def request_legacy_program_format() -> None:
    """Call BEFORE Paddle is imported (CLI start-up) so this process writes .pdmodel programs."""
    os.environ.update(legacy_export_env())


def check_readable_program(program: str) -> str:
    """``program`` unchanged when this Paddle can load it; a PIR .json needs Paddle 3."""
    if program.endswith(MODEL_SUFFIX["pir"]) and paddle_major() < 3:
        raise ValueError(f"{program} is a Paddle 3 (PIR) program, which Paddle {paddle_version()} "
                         "cannot read: export again with --format legacy (.pdmodel, readable by "
                         "Paddle 2.6 and 3.x)")
    return program


def inference_files(model_dir: str, name: str) -> tuple[str, str]:
    """(program file, params file) of an exported model, whichever format was written."""
    for suffix in MODEL_SUFFIX.values():
        program = os.path.join(model_dir, name + suffix)
        if os.path.isfile(program):
            return program, os.path.join(model_dir, name + PARAMS_SUFFIX)
    raise FileNotFoundError(f"{model_dir}: no {name}.json or {name}.pdmodel inference program")


# ----------------------------------------------------------------------------- numpy views
NUMPY_VIEW_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8",
                     "bool")


def numpy_view(tensor, what: str = "tensor") -> np.ndarray:
    """A writeable numpy array sharing the memory of a contiguous CPU tensor (no copy).

    ``tensor.numpy()`` copies, and writing a result back costs a Paddle op per tensor; the CPU
    gradient average and the CPU sync BN work on these views instead. The view does not keep the
    tensor alive: the caller holds the tensor while it uses the view. Paddle 3 exports writeable
    DLPack; Paddle 2.6's Tensor has no ``__dlpack__``, so there the view maps the tensor's data
    pointer. ``what`` names the tensor in errors (e.g. a parameter's name).
    """
    dtype_name = str(tensor.dtype).replace("paddle.", "")
    if dtype_name not in NUMPY_VIEW_DTYPES:
        raise TypeError(f"numpy_view: {what} has dtype {dtype_name}, which numpy cannot view")
    if not tensor.place.is_cpu_place():
        raise ValueError(f"numpy_view: {what} is on {tensor.place}; it needs a CPU tensor")
    if hasattr(tensor, "is_contiguous") and not tensor.is_contiguous():
        raise ValueError(f"numpy_view: {what} (shape {list(tensor.shape)}) is not contiguous")
    detached = tensor.detach()
    if hasattr(detached, "__dlpack__"):
        array = np.from_dlpack(detached)
        if array.flags.writeable:
            return array
    dtype = np.dtype(dtype_name)
    count = int(np.prod(tensor.shape)) if tensor.shape else 1
    if count == 0:
        return np.empty(tensor.shape, dtype)
    buffer = (ctypes.c_byte * (count * dtype.itemsize)).from_address(detached.data_ptr())
    return np.frombuffer(buffer, dtype, count).reshape(tensor.shape)


# ----------------------------------------------------------------------------- CPU generator
CPU_STATE_KEY = "paddle_cpu"       # exact state (Paddle 3): JSON text of the pickle tuple, uint8
CPU_SEED_KEY = "paddle_cpu_seed"   # Paddle 2.6: the seed the generator was re-seeded with, uint64


def _cpu_generator():
    from paddle.base import core

    return core.default_cpu_generator()


def capture_cpu_generator() -> dict[str, np.ndarray]:
    """Paddle's CPU generator as arrays for a checkpoint.

    Paddle 3: its exact state. Paddle 2.6 hides the engine state, so the generator is re-seeded
    with its own next draw and that seed is stored: the run that goes on after the save and a run
    resumed from it then draw the same numbers (saving changes the stream, identically in both).
    """
    generator = _cpu_generator()
    values = generator.get_state().__getstate__()
    if paddle_major() >= 3:
        return {CPU_STATE_KEY: np.frombuffer(json.dumps(list(values)).encode(), dtype=np.uint8)}
    seed = int(generator.random())
    generator.manual_seed(seed)
    return {CPU_SEED_KEY: np.array([seed], dtype=np.uint64)}


def restore_cpu_generator(states: dict[str, np.ndarray]) -> str | None:
    """Set Paddle's CPU generator from ``capture_cpu_generator`` output (written by either
    version). Returns None when restored, else why not (the generator keeps its seed)."""
    generator = _cpu_generator()
    if CPU_SEED_KEY in states:
        generator.manual_seed(int(states[CPU_SEED_KEY][0]))
        return None
    if CPU_STATE_KEY not in states:
        return "the checkpoint holds no Paddle CPU generator state"
    values = tuple(json.loads(states[CPU_STATE_KEY].tobytes().decode()))
    current = generator.get_state()
    if len(values) != len(current.__getstate__()):
        return (f"its Paddle CPU generator state (written by Paddle 3) cannot be set by Paddle "
                f"{paddle_version()}, whose generator state has no engine state")
    generator.set_state(generator_state_from_array(states[CPU_STATE_KEY], current))
    return None


def generator_state_to_array(state) -> np.ndarray | None:
    """A (CUDA) GeneratorState as uint8 JSON text of its pickle tuple (exact: JSON integers are
    unbounded; a Philox CUDA state is (device, seed, offset) on both versions); None when this
    Paddle's GeneratorState cannot be pickled."""
    try:
        values = state.__getstate__()
        text = json.dumps(list(values))
    except (TypeError, AttributeError, RuntimeError):
        return None
    return np.frombuffer(text.encode(), dtype=np.uint8) if isinstance(values, tuple) else None


def generator_state_from_array(array: np.ndarray, like):
    state = type(like).__new__(type(like))
    state.__setstate__(tuple(json.loads(array.tobytes().decode())))
    return state
