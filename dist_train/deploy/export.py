"""Export for paddle.inference: preprocessing layer + network (plain BatchNorm), uint8 input
``[N, 3, T, H, W]`` with a dynamic batch, plus ``meta.json`` so prediction needs nothing else,
and ``network.pdparams`` (the network's state dict by parameter name, which the inference program
does not keep) so another dataset can fine-tune from the export (checkpoint/source.py).

The export directory is built under a temporary name and renamed into place, so it is either
the previous complete export or the new complete one.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from dist_train import __version__, compat
from dist_train.atomic import atomic_write_text
from dist_train.checkpoint.source import EXPORT_META_FILE, EXPORT_NETWORK_FILE
from dist_train.errors import OUTPUT_ERRNOS, InputError, input_message, write_error

MODEL_NAME = "model"
META_FILE = EXPORT_META_FILE
META_VERSION = 1
INPUT_NAME = "x"


def clip_sampling_description(cfg) -> dict:
    from dist_train.data.sampling import TEN_CLIPS, test_protocol_crops

    protocol = cfg["eval.protocol"]
    crops = test_protocol_crops(protocol, cfg["data.test_crops"])
    temporal = ("non-overlapping consecutive clips of clip_len frames (every temporal_stride-th "
                "frame) starting at frame 0 and covering the whole video" if protocol == "paper"
                else f"{TEN_CLIPS} evenly spaced clips of clip_len frames (every temporal_stride-th "
                     f"frame), starts round(i * (num_frames - span) / {TEN_CLIPS - 1})")
    return {
        "mode": "test",
        "protocol": protocol,
        "temporal": temporal + "; a clip running past the end is loop-padded with its own frames",
        "num_crops": crops,
        "spatial": "resize the short side to eval_short_side (bilinear), then "
                   + ("one centre crop" if crops == 1 else
                      "3 crops along the long side (start, centre, end)")
                   + " of crop_size x crop_size",
        "order": "clip-major, crops innermost",
        "aggregation": "softmax of each clip's logits, averaged over all clips and crops",
        "decoder": "OpenCV, every decodable frame, RGB",
    }


def meta_class_names(cfg, weights: str) -> list[str]:
    """The class names of the config's lists; when they name no class (every name class_<i>,
    e.g. an export on a machine without the dataset) those the checkpoint ``weights`` saved."""
    from dist_train.checkpoint import read_state
    from dist_train.evaluation.video_level import class_names

    names = class_names(cfg)
    if os.path.isdir(weights) and all(n == f"class_{i}" for i, n in enumerate(names)):
        saved = read_state(weights)["train_state"].get("class_names")
        if isinstance(saved, list) and len(saved) == len(names):
            return saved
    return names


def build_meta(cfg, weights: str, fmt: str, program_file: str) -> dict:
    from dist_train.models.from_config import network_options, normalization

    clip_len, crop = cfg["data.clip_len"], cfg["data.crop_size"]
    return {
        "meta_version": META_VERSION,
        "format": fmt,
        "model_file": os.path.basename(program_file),
        "params_file": MODEL_NAME + compat.PARAMS_SUFFIX,
        "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NCTHW",
                  "shape": [-1, 3, clip_len, crop, crop], "channels": "RGB", "range": "0-255"},
        "output": {"kind": "logits", "shape": [-1, cfg["model.num_classes"]]},
        "class_names": meta_class_names(cfg, weights),
        "num_classes": cfg["model.num_classes"],
        "clip_len": clip_len,
        "crop_size": crop,
        "eval_short_side": cfg["data.eval_short_side"] or crop,
        "temporal_stride": cfg["data.temporal_stride"],
        "normalization": {"preset": cfg["model.normalization"], **normalization(cfg),
                          "units": "0-255", "applied_inside_model": True},
        "clip_sampling": clip_sampling_description(cfg),
        "model": {"name": cfg["model.name"], "options": network_options(cfg)},
        "weights": os.path.abspath(weights),
        "network_params": EXPORT_NETWORK_FILE,  # the network's state dict (fine-tuning, --weights)
        "paddle_version": compat.paddle_version(),
        "package_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def read_meta(model_dir: str) -> dict:
    path = os.path.join(model_dir, META_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read ({e.strerror}); --model must be a "
                                "directory written by dist_train/export.py") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if meta.get("meta_version") != META_VERSION:
        raise ValueError(f"{path}: meta_version {meta.get('meta_version')!r}, this code reads "
                         f"{META_VERSION}; re-export the model")
    return meta


def _replace_dir(tmp_dir: str, out_dir: str) -> None:
    old = None
    if os.path.exists(out_dir):
        old = f"{out_dir}.old-{os.getpid()}"
        os.replace(out_dir, old)
    os.replace(tmp_dir, out_dir)
    if old:
        shutil.rmtree(old)


def _export_here(cfg, weights: str, out_dir: str, fmt: str) -> str:
    import paddle
    from paddle.static import InputSpec

    from dist_train.evaluation.video_level import load_eval_model

    model = load_eval_model(cfg, weights)
    clip_len, crop = cfg["data.clip_len"], cfg["data.crop_size"]
    spec = [InputSpec([None, 3, clip_len, crop, crop], "uint8", INPUT_NAME)]
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out_dir)}.tmp")
    try:
        static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
        paddle.jit.save(static, os.path.join(tmp_dir, MODEL_NAME))
        program, _ = compat.inference_files(tmp_dir, MODEL_NAME)
        written = "pir" if program.endswith(compat.MODEL_SUFFIX["pir"]) else "legacy"
        if written != fmt:
            raise RuntimeError(f"asked for the {fmt} format but Paddle wrote {program}")
        # The network's own state dict too: fine-tuning from an export (--weights EXPORT_DIR)
        # needs the parameter names, which the inference program does not keep.
        paddle.save(model.network.state_dict(), os.path.join(tmp_dir, EXPORT_NETWORK_FILE))
        meta = build_meta(cfg, weights, fmt, program)
        atomic_write_text(os.path.join(tmp_dir, META_FILE), json.dumps(meta, indent=1) + "\n")
        _replace_dir(tmp_dir, out_dir)
    except BaseException as error:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if isinstance(error, OSError) and error.errno in OUTPUT_ERRNOS:  # Paddle's writers name
            raise write_error(error, out_dir, "exporting to") from error  # no file
        raise
    return out_dir


def _export_in_fresh_process(cfg, weights: str, out_dir: str) -> str:
    """The legacy format from a process that already runs PIR: a fresh export CLI process."""
    fd, cfg_path = tempfile.mkstemp(prefix="export_cfg_", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(cfg.to_yaml())
    try:
        cmd = [sys.executable, "-m", "dist_train.export", "-c", cfg_path, "--weights", weights,
               "--out", out_dir, "--format", "legacy"]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, **compat.legacy_export_env()})
    finally:
        os.unlink(cfg_path)
    if proc.returncode != 0:
        raise RuntimeError(f"legacy export failed ({proc.returncode}): {' '.join(cmd)}\n"
                           f"{proc.stderr[-4000:]}")
    return out_dir


def export_model(cfg, weights: str, out_dir: str, fmt: str | None = None) -> str:
    """Export ``weights`` (a .pdparams file or checkpoint directory) with the model of ``cfg``
    to ``out_dir``; ``fmt`` 'pir' | 'legacy' | 'auto' (default: export.format).
    Not collective: call it on rank 0 only. Returns ``out_dir``."""
    from dist_train.checkpoint import adopt_source_model

    cfg, _ = adopt_source_model(cfg, weights, include_classes=True)
    if fmt is None:
        fmt = cfg["export.format"]
    if fmt == "auto":
        fmt = compat.default_export_format()
    fmt = compat.check_export_format(fmt)
    if fmt == "legacy" and compat.pir_enabled():
        return _export_in_fresh_process(cfg, weights, out_dir)
    return _export_here(cfg, weights, out_dir, fmt)


def export_at_end(cfg) -> None:
    """With ``export.at_end`` set, rank 0 exports the best checkpoint (else the latest) to
    <run.dir>/export; a collective (every rank calls it after training)."""
    from dist_train import checkpoint, dist
    from dist_train.logs import get_logger

    if not cfg["export.at_end"]:
        return
    run_dir = cfg["run.dir"]
    error = None
    if dist.is_main_process():
        root = checkpoint.checkpoints_dir(run_dir)
        try:
            weights = None
            for pointer in (checkpoint.BEST_FILE, checkpoint.LATEST_FILE):
                path = os.path.join(root, pointer)
                if os.path.exists(path):
                    with open(path, encoding="utf-8") as f:
                        weights = os.path.join(root, f.read().strip())
                    break
            if weights is None:
                raise checkpoint.CheckpointError(f"no best or latest checkpoint in {root} to export")
            out = export_model(cfg, weights, os.path.join(run_dir, "export"))
            get_logger().info(f"exported {weights} to {out}")
        except Exception as e:  # reported on every rank below: an input problem or a bug
            message = input_message(e)
            error = (f"export at end failed: {message or f'{type(e).__name__}: {e}'}",
                     message is not None)
    dist.barrier("export-at-end", timeout_s=1800)
    error = dist.broadcast_object(error)
    if error is not None:
        failure = (InputError if error[1] else RuntimeError)(error[0])
        failure.on_every_rank = True
        raise failure
