"""Differences between Paddle 2.6 and 3.x, in one place (the only module that branches on them).

Inference models: Paddle 3 writes the PIR program as ``<name>.json`` by default; Paddle 2.x (and
3.x started with ``FLAGS_enable_pir_api=0``) writes the legacy ``<name>.pdmodel``. The PIR flag is
read when Paddle is imported, so a process that already imported Paddle with PIR on cannot write
the legacy format: that needs a fresh process with ``legacy_export_env()``.
"""
from __future__ import annotations

import os

PIR_FLAG = "FLAGS_enable_pir_api"
MODEL_SUFFIX = {"pir": ".json", "legacy": ".pdmodel"}
PARAMS_SUFFIX = ".pdiparams"


def paddle_version() -> str:
    import paddle

    return paddle.__version__


def paddle_major() -> int:
    version = paddle_version()
    # Development builds report "0.0.0"; they are current (3.x and later).
    major = int(version.split(".")[0])
    return major if major > 0 else 3


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


def inference_files(model_dir: str, name: str) -> tuple[str, str]:
    """(program file, params file) of an exported model, whichever format was written."""
    for suffix in MODEL_SUFFIX.values():
        program = os.path.join(model_dir, name + suffix)
        if os.path.isfile(program):
            return program, os.path.join(model_dir, name + PARAMS_SUFFIX)
    raise FileNotFoundError(f"{model_dir}: no {name}.json or {name}.pdmodel inference program")
