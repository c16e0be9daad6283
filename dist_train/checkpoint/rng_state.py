"""RNG states of a process as plain numpy arrays (for a checkpoint's rng.npz), and back.

Covered: python ``random``, numpy's global RandomState, Paddle's CPU generator and, on GPU,
every visible CUDA generator. How a Paddle ``GeneratorState`` becomes an array differs between
Paddle 2.6 and 3.x and lives in compat.py; loading says what could not be restored.
"""
from __future__ import annotations

import io
import random

import numpy as np
import paddle

from dist_train import compat
from dist_train.logs import get_logger


def _has_cuda() -> bool:
    return paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def capture_rng_state() -> dict[str, np.ndarray]:
    """This process's python / numpy / Paddle CPU (and CUDA) RNG states as numpy arrays."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    states = {"python_state": np.asarray(internal, dtype=np.uint32),
              "python_gauss": np.array([version, np.nan if gauss is None else gauss], np.float64),
              "numpy_keys": np.asarray(keys, dtype=np.uint32),
              "numpy_pos": np.array([pos, has_gauss], np.int64),
              "numpy_gauss": np.array([cached], np.float64)}
    states.update(compat.capture_cpu_generator())
    if _has_cuda():
        for i, cuda_state in enumerate(paddle.get_cuda_rng_state()):
            array = compat.generator_state_to_array(cuda_state)
            if array is not None:
                states[f"cuda{i}"] = array
    return states


def restore_rng_state(states: dict[str, np.ndarray]) -> list[str]:
    """Set this process's RNGs from ``capture_rng_state`` output; returns what was restored."""
    restored = []
    version = int(states["python_gauss"][0])
    gauss = None if np.isnan(states["python_gauss"][1]) else float(states["python_gauss"][1])
    random.setstate((version, tuple(int(v) for v in states["python_state"]), gauss))
    pos, has_gauss = (int(v) for v in states["numpy_pos"])
    np.random.set_state(("MT19937", states["numpy_keys"], pos, has_gauss,
                         float(states["numpy_gauss"][0])))
    restored += ["python", "numpy"]
    problem = compat.restore_cpu_generator(states)
    if problem is None:
        restored.append("paddle_cpu")
    else:
        get_logger().warning(f"{problem}: the Paddle CPU generator keeps its start-up seed")
    cuda_keys = sorted((k for k in states if k.startswith("cuda")), key=lambda k: int(k[4:]))
    if cuda_keys and _has_cuda():
        current = paddle.get_cuda_rng_state()
        if len(current) == len(cuda_keys):
            paddle.set_cuda_rng_state([compat.generator_state_from_array(states[k], current[0])
                                     for k in cuda_keys])
            restored.append("cuda")
        else:
            get_logger().warning(f"checkpoint has {len(cuda_keys)} CUDA generator state(s) per rank, this "
                           f"process sees {len(current)} GPU(s): CUDA generators keep their seed")
    elif cuda_keys:
        get_logger().info("checkpoint holds CUDA RNG states but no GPU is used now: not restored")
    return restored


def rng_npz_bytes(per_rank: list[dict[str, np.ndarray]]) -> bytes:
    arrays = {"world_size": np.array([len(per_rank)], np.int64)}
    for rank, states in enumerate(per_rank):
        arrays.update({f"r{rank}.{key}": value for key, value in states.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def read_rank_rng(npz_path: str, rank: int) -> dict[str, np.ndarray]:
    with np.load(npz_path, allow_pickle=False) as npz:
        prefix = f"r{rank}."
        return {k[len(prefix):]: npz[k] for k in npz.files if k.startswith(prefix)}
