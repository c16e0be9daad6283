"""Loading checkpoints: exact resume (weights, optimizer with its LR scheduler, loss scaler,
per-rank RNG states) and model weights alone for fine-tuning, always through the restricted
loader. The layout is documented in checkpoint.py's docstring. Not collective: every rank reads
the checkpoint itself.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import paddle

from dist_train import compat, dist
from dist_train.checkpoint.layout import (MODEL_FILE, OPTIM_FILE, RNG_FILE, SCALER_FILE, CheckpointError,
                                          checkpoint_problem, read_state)
from dist_train.logs import get_logger
from dist_train.models.finetune import StateDictMismatch, compare_state_dict, load_pretrained, mismatch_message
from dist_train.checkpoint.optimizer_state import LR_SCHEDULER_KEY, load_optimizer_state
from dist_train.checkpoint.rng_state import read_rank_rng, restore_rng_state
from dist_train.checkpoint.source import weights_file
from dist_train.safeload import restricted_load



def _load_optimizer(path: str, optimizer, state: dict, model, weights: dict) -> None:
    file_path = os.path.join(path, OPTIM_FILE)
    if not os.path.isfile(file_path):
        raise CheckpointError(f"{path}: no {OPTIM_FILE} (saved without an optimizer)")
    saved = state["versions"].get("paddle", "?")
    try:
        opt_state = restricted_load(file_path)
        has_sched = isinstance(getattr(optimizer, "_learning_rate", None), paddle.optimizer.lr.LRScheduler)
        if has_sched and LR_SCHEDULER_KEY not in opt_state:
            get_logger().warning(f"{file_path}: no LR scheduler state; the scheduler starts from its beginning")
        load_optimizer_state(optimizer, model, opt_state, state["param_names"], weights, file_path)
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{file_path}: optimizer state written by Paddle {saved} cannot be "
                              f"loaded by Paddle {paddle.__version__} ({type(e).__name__}: {e}); "
                              "start a new optimizer with --weights instead of --resume") from e


def _load_scaler(path: str, scaler) -> None:
    with open(os.path.join(path, SCALER_FILE), encoding="utf-8") as f:
        saved = json.load(f)
    state = dict(saved.get("state") or {})
    enabled_now = bool(scaler.state_dict())
    if not saved.get("enabled") or not state:
        if enabled_now:
            get_logger().warning(f"{path}: the loss scaler was disabled when saved (CPU?); it starts "
                           "from its initial scale")
        return
    if not enabled_now:
        get_logger().info(f"{path}: loss-scaler state not restored: the scaler is disabled here (CPU/fp32)")
        return
    state["scale"] = np.asarray(state["scale"], dtype=np.float32).reshape(-1)
    scaler.load_state_dict(state)


def load_checkpoint(path: str, *, model, optimizer=None, scaler=None) -> dict:
    """Every rank reads ``path`` itself (shared storage required). Verifies sizes and sha256,
    restores weights, optimizer (with its LR scheduler), scaler and, when the world size
    matches, this rank's RNG states. Returns train_state."""
    rank = dist.get_rank()
    if not os.path.isdir(path):
        raise CheckpointError(f"rank {rank} cannot read checkpoint {path}: no such directory on "
                              "this node (resuming needs the run directory on shared storage)")
    problem = checkpoint_problem(path, verify_sha256=True)
    if problem:
        raise CheckpointError(f"rank {rank}: checkpoint unusable: {problem}")
    state = read_state(path)
    saved_paddle = state["versions"].get("paddle", "?")
    if not re.match(r"^\d+\.", saved_paddle) or compat.major_of(saved_paddle) != compat.paddle_major():
        get_logger().warning(f"{path} was written by Paddle {saved_paddle}; loading under {paddle.__version__}")
    weights = _load_model_strict(os.path.join(path, MODEL_FILE), model)
    if optimizer is not None:
        _load_optimizer(path, optimizer, state, model, weights)
    if scaler is not None:
        _load_scaler(path, scaler)
    world, saved_world = dist.get_world_size(), state["world_size"]
    if world == saved_world:
        restored = restore_rng_state(read_rank_rng(os.path.join(path, RNG_FILE), rank))
        get_logger().info(f"restored RNG states ({', '.join(restored)}) of rank {rank}")
    elif dist.is_main_process():
        get_logger().info(f"{path} was saved by {saved_world} rank(s), this job has {world}: process RNG "
                    "states are not restored (each rank keeps its start-up seeding); harmless, since "
                    "sample randomness is a pure function of (train.seed, epoch, global index)")
    return state["train_state"]


def _load_model_strict(file_path: str, model) -> dict:
    """Load every tensor of ``file_path`` into ``model`` (shapes must match), each converted to
    its tensor's dtype (float16/bfloat16 under AMP O2; the file holds float32). Returns the
    file's state dict."""
    weights = restricted_load(file_path)
    missing, unexpected, mis_shaped = compare_state_dict(model, weights)
    if missing or unexpected or mis_shaped:
        raise CheckpointError(mismatch_message(missing, unexpected, mis_shaped, file_path))
    model.set_state_dict(_in_model_dtypes(model, weights))
    return weights


def _in_model_dtypes(model, weights: dict) -> dict:
    """``weights`` with each float array converted to the dtype of the model's tensor
    (``set_value`` refuses another dtype)."""
    targets = model.state_dict(use_hook=False)
    converted = dict(weights)
    for key, target in targets.items():
        value = weights.get(key)
        if value is None or target.dtype in (paddle.float32, paddle.float64) \
                or not np.issubdtype(np.asarray(value).dtype, np.floating):
            continue
        converted[key] = paddle.cast(paddle.to_tensor(np.asarray(value, np.float32)), target.dtype)
    return converted


def load_weights(path: str, model, *, allow_head_mismatch: bool = True) -> dict:
    """Model weights only (fine-tuning, --weights), always through the restricted loader.

    ``path``: a checkpoint directory (its model.pdparams), a run directory (its best, else
    latest, checkpoint), an export directory (its network.pdparams), a .pdparams file, or
    converted weights (see checkpoint/source.py; the network options and normalisation they
    record are reconciled with the config by ``adopt_source_model`` before the model is built).
    A classifier head of another shape is left new when ``allow_head_mismatch``; any other
    mismatch raises CheckpointError listing keys and shapes.
    Returns {"source", "loaded", "skipped_head", "new_head"}.
    """
    file_path = weights_file(path) if os.path.exists(path) else path
    if not os.path.isfile(file_path):
        raise CheckpointError(f"--weights {path}: no such file (expected a .pdparams file, or a "
                              f"checkpoint, run or export directory holding {MODEL_FILE})")
    try:
        weights = restricted_load(file_path)
    except Exception as e:  # UnsafeFileError (refused global) or an unreadable file
        raise CheckpointError(f"--weights {path}: {e}") from e
    if not isinstance(weights, dict):
        raise CheckpointError(f"--weights {path}: holds a {type(weights).__name__}, not a state dict")
    if allow_head_mismatch:
        try:
            report = load_pretrained(model, weights, source=file_path)
        except StateDictMismatch as e:
            raise CheckpointError(str(e)) from e
    else:
        _load_model_strict(file_path, model)
        report = {"loaded": sorted(weights), "skipped_head": [], "new_head": False}
    if report["new_head"]:
        get_logger().warning(f"--weights {file_path}: classifier head not loaded (other shape or absent: "
                       f"{report['skipped_head']}); it keeps its fresh initialisation")
    get_logger().info(f"loaded {len(report['loaded'])} tensors from {file_path}")
    return {"source": file_path, **report}
