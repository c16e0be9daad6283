"""Writing checkpoints on rank 0: one directory per save, built under a temporary name, fsynced
and renamed into place; the ``latest``/``best`` pointers; pruning; fault injection for tests.

The layout is documented in checkpoint.py's docstring; the collective ``save_checkpoint`` that
calls these lives there too. Nothing here is collective.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import time

import numpy as np
import paddle

from dist_train.atomic import atomic_write_text, fsync_dir, write_fsynced
from dist_train.checkpoint.layout import (FORMAT_VERSION, MODEL_FILE, OPTIM_FILE, RNG_FILE, SCALER_FILE,
                                          STATE_FILE, TMP_PREFIX, BEST_FILE, LATEST_FILE, CheckpointError,
                                          read_pointer, read_state)
from dist_train.checkpoint.rng_state import rng_npz_bytes
from dist_train.rundir import package_versions

FAULT_ENV = "DIST_TRAIN_FAULT"
FAULT_POINTS = ("after_model_file", "after_optimizer_file", "before_rename", "before_latest")
REQUIRED_TRAIN_STATE = ("epoch", "step_in_epoch", "global_step")


class InjectedFault(RuntimeError):
    """Raised at a fault point named by DIST_TRAIN_FAULT (tests only)."""


def inject_fault(point: str) -> None:
    """Raise InjectedFault (or SIGKILL this process with ``:kill``) when DIST_TRAIN_FAULT names
    ``point``; otherwise do nothing."""
    spec = os.environ.get(FAULT_ENV, "")
    name, _, action = spec.partition(":")
    if name != point:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"{FAULT_ENV}={spec}: injected fault at '{point}'")


def _write_bytes(path: str, data: bytes) -> dict:
    """Write and fsync ``data`` (inside the temporary checkpoint directory, so not atomic by
    itself); returns its manifest entry (size, sha256)."""
    write_fsynced(path, data)
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _paddle_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    paddle.save(obj, buffer)
    return buffer.getvalue()


def float32_state_dict(model) -> dict:
    """``model.state_dict()`` with float16/bfloat16 tensors (AMP O2) cast to float32, one cast
    per such tensor. (``paddle.amp.decorate(save_dtype=...)`` would register a hook on every
    sublayer, each re-casting the whole dictionary: casts growing with the square of the depth.)"""
    state = model.state_dict(use_hook=False)
    return {key: paddle.cast(value, "float32") if value.dtype in (paddle.float16, paddle.bfloat16)
            else value for key, value in state.items()}


def write_pointer(root: str, name: str, tag: str) -> None:
    """Replace pointer file ``name`` (``latest``/``best``) atomically and durably."""
    atomic_write_text(os.path.join(root, name), tag + "\n")
    fsync_dir(root)


def _config_dict(cfg):
    if cfg is None:
        return None
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def check_train_state(train_state: dict) -> dict:
    """A JSON round-tripped copy of ``train_state``; ValueError when a key is missing or a value
    is not JSON-able."""
    missing = [k for k in REQUIRED_TRAIN_STATE if k not in train_state]
    if missing:
        raise ValueError(f"train_state lacks {missing} (has {sorted(train_state)})")
    try:
        return json.loads(json.dumps(train_state))
    except TypeError as e:
        raise ValueError(f"train_state must be JSON-able (numbers, strings, lists, dicts): {e}") from e


def _versions() -> dict:
    versions = package_versions()
    versions["paddle"] = paddle.__version__
    return versions


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, paddle.Tensor):
        value = value.numpy()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def write_checkpoint_dir(root: str, tag: str, *, model, optimizer, scaler, train_state, cfg,
                         rng_per_rank) -> str:
    """Write every file of checkpoint ``tag`` into ``<root>/.tmp-<tag>-<pid>/``, state.json
    last, fsync, and rename it to ``<root>/<tag>`` (replacing a checkpoint of the same tag).
    Does not touch the pointers. Returns the final path."""
    final = os.path.join(root, tag)
    tmp = os.path.join(root, f"{TMP_PREFIX}{tag}-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    manifest = {MODEL_FILE: _write_bytes(os.path.join(tmp, MODEL_FILE),
                                         _paddle_bytes(float32_state_dict(model)))}
    inject_fault("after_model_file")
    if optimizer is not None:
        manifest[OPTIM_FILE] = _write_bytes(os.path.join(tmp, OPTIM_FILE),
                                            _paddle_bytes(optimizer.state_dict()))
    inject_fault("after_optimizer_file")
    scaler_state = {"enabled": bool(scaler is not None and scaler.state_dict()),
                    "state": _jsonable(scaler.state_dict()) if scaler is not None else {}}
    manifest[SCALER_FILE] = _write_bytes(os.path.join(tmp, SCALER_FILE),
                                         json.dumps(scaler_state, indent=1).encode())
    manifest[RNG_FILE] = _write_bytes(os.path.join(tmp, RNG_FILE), rng_npz_bytes(rng_per_rank))
    state = {"format_version": FORMAT_VERSION, "tag": tag, "saved_at": time.time(),
             "world_size": len(rng_per_rank), "train_state": train_state, "versions": _versions(),
             "config": _config_dict(cfg),
             "param_names": {name: p.name for name, p in model.named_parameters()},
             "manifest": manifest}
    _write_bytes(os.path.join(tmp, STATE_FILE), json.dumps(state, indent=1).encode())
    fsync_dir(tmp)
    inject_fault("before_rename")
    old = None
    if os.path.exists(final):  # same tag saved twice (e.g. periodic save, then SIGTERM)
        old = os.path.join(root, f"{TMP_PREFIX}old-{tag}-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(root)
    if old is not None:
        shutil.rmtree(old)
    return final


def prune_checkpoints(root: str, keep_last: int) -> list[str]:
    """Delete all but the newest ``keep_last`` checkpoints (never best or latest); returns them."""
    if keep_last <= 0:
        return []
    keep = {read_pointer(root, BEST_FILE), read_pointer(root, LATEST_FILE)}
    ordered = [tag for tag, _ in sorted(_saved_times(root).items(), key=lambda kv: kv[1], reverse=True)]
    removed = [tag for tag in ordered[keep_last:] if tag not in keep]
    for tag in removed:
        shutil.rmtree(os.path.join(root, tag))
    for name in os.listdir(root):  # leftovers of saves that died (only rank 0 ever writes here)
        if name.startswith(TMP_PREFIX):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return removed


def _saved_times(root: str) -> dict[str, tuple]:
    """{tag: (saved_at, global_step)} of the checkpoints whose state.json parses."""
    times = {}
    for name in os.listdir(root):
        if name.startswith("."):
            continue
        try:
            state = read_state(os.path.join(root, name))
        except CheckpointError:
            continue
        times[name] = (state.get("saved_at", 0.0), state["train_state"].get("global_step", 0))
    return times
