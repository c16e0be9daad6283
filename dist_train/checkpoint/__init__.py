"""Checkpoints: versioned directories written atomically, exact resume, restricted loading.

Layout (FORMAT_VERSION 1)::

    <run_dir>/checkpoints/
        step_000123/          one checkpoint; the tag names the global step (see step_tag)
            model.pdparams    paddle.save(model.state_dict()) of the UNWRAPPED network, float32
                              (AMP O2's float16/bfloat16 tensors cast once each); sync-BN
                              layers have the same keys as plain BN
            optimizer.pdopt   paddle.save(optimizer.state_dict()): accumulators keyed by Paddle
                              parameter names (under O2 "<param>_fp32_master_0_velocity_0" and the
                              float32 "master_weights"), plus "LR_Scheduler" when a paddle
                              LRScheduler is attached. Loading reads it per structured name (the
                              names recorded in state.json), so the model may be built in any
                              order and under any AMP level (checkpoint/optimizer_state.py).
            scaler.json       {"enabled": bool, "state": GradScaler.state_dict()}; on CPU the
                              scaler is disabled and its state is {} (recorded as such)
            rng.npz           RNG states of EVERY rank, gathered to rank 0 (allow_pickle=False;
                              see dist_train/checkpoint/rng_state.py):
                              r<k>.python_state uint32[625], r<k>.python_gauss f64[2],
                              r<k>.numpy_keys uint32[624], r<k>.numpy_pos i64[2], r<k>.numpy_gauss f64[1],
                              r<k>.paddle_cpu / r<k>.cuda<i> uint8: JSON text of the
                              GeneratorState's pickle tuple (device, seed, offset, engine state)
            state.json        written last: format_version, tag, saved_at, world_size,
                              train_state, versions (python, Paddle, packages), config
                              (cfg.to_dict()), param_names (structured -> Paddle name) and the
                              manifest {file: {"size", "sha256"}} of the files above
        latest                text: the tag of the newest checkpoint, replaced atomically LAST
        best                  text: the tag of the best checkpoint (pruning never removes it)
        .tmp-<tag>-<pid>/     a save in progress, or one that died before its rename

A save writes every file into ``.tmp-<tag>-<pid>/``, fsyncs files and directory, renames it to
``<tag>/``, fsyncs ``checkpoints/``, then replaces ``latest``. A crash at any point leaves
``latest`` naming a complete checkpoint. A checkpoint is *complete* when state.json parses, its
format version is known and every manifest file exists with its recorded size (sha256 is checked
on load). Only JSON and .npz are ours; no pickled Python objects are written.

Resuming on another world size: the sampler position (epoch, step_in_epoch, global_step) is
global, so only the per-rank RNG states depend on the world size. They are restored when the
world size matches; otherwise each rank keeps its start-up RNG state, which is harmless because
sample randomness is a pure function of (train.seed, epoch, global index).

Fault injection for tests: DIST_TRAIN_FAULT=<point>[:kill] with point in FAULT_POINTS raises
InjectedFault (or SIGKILLs the process with ":kill") on rank 0 at that point of a save.

Modules (imports run one way: this package -> the four below -> layout.py):
    __init__.py     this layout, and the collectives every rank calls: save_checkpoint,
                    resolve_resume; the public names of the others
    layout.py       file names, CheckpointError, state.json parsing, completeness checks
    write.py        rank 0's temp-dir write + rename, pointers, pruning, fault injection
    find.py         which checkpoint to resume from (newest complete, or the named one)
    load.py         load_checkpoint (exact resume) and load_weights (fine-tuning)
    optimizer_state.py  the optimizer state across AMP levels (fp32, O1, O2 master weights)
    source.py       weights sources (checkpoint, run, export dir, file): the file and the network
                    and normalisation they record (adopt_source_model)
    rng_state.py    every rank's RNG states, captured and restored
"""
from __future__ import annotations

import os
import re

from dist_train import dist
from dist_train.checkpoint.find import choose_resume, find_resume_checkpoint
from dist_train.checkpoint.layout import (BEST_FILE, CKPT_DIR, FORMAT_VERSION, KNOWN_FORMAT_VERSIONS,
                                          LATEST_FILE, MODEL_FILE, OPTIM_FILE, RNG_FILE, SCALER_FILE,
                                          STATE_FILE, TMP_PREFIX, CheckpointError, checkpoint_problem,
                                          checkpoints_dir, read_state, step_tag)
from dist_train.checkpoint.load import load_checkpoint, load_weights
from dist_train.checkpoint.source import adopt_source_model
from dist_train.checkpoint.write import (FAULT_ENV, FAULT_POINTS, InjectedFault, check_train_state,
                                         inject_fault, prune_checkpoints, write_pointer)
from dist_train.logs import get_logger
from dist_train.checkpoint.rng_state import capture_rng_state

# Module-level names that save_checkpoint looks up at call time, so a test can wrap the writer
# (tests/ckpt_probe.py slows rank 0's write this way).
from dist_train.checkpoint.write import write_checkpoint_dir as _write_checkpoint_dir

__all__ = [
    "BEST_FILE", "CKPT_DIR", "FAULT_ENV", "FAULT_POINTS", "FORMAT_VERSION", "KNOWN_FORMAT_VERSIONS",
    "LATEST_FILE", "MODEL_FILE", "OPTIM_FILE", "RNG_FILE", "SCALER_FILE", "STATE_FILE", "TMP_PREFIX",
    "CheckpointError", "InjectedFault", "adopt_source_model", "checkpoint_problem", "checkpoints_dir",
    "find_resume_checkpoint", "load_checkpoint", "load_weights", "prune_checkpoints", "read_state",
    "resolve_resume", "save_checkpoint", "step_tag",
]


def save_checkpoint(run_dir: str, tag: str, *, model, optimizer, scaler, train_state: dict,
                    cfg, keep_last: int, is_best: bool = False,
                    barrier_timeout_s: float = 600.0) -> str:
    """COLLECTIVE: every rank calls it at the same step; returns the checkpoint path everywhere.

    Gathers every rank's RNG states to rank 0, which writes ``<run_dir>/checkpoints/<tag>/``
    (temp dir + fsync + rename), then ``latest``, ``best`` when ``is_best``, and prunes to the
    newest ``keep_last`` (<= 0 keeps all; the best and latest are always kept). All ranks then
    meet at a barrier that times out after ``barrier_timeout_s``; a failure on rank 0 raises
    CheckpointError on every rank.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", tag) or tag.startswith("."):
        raise ValueError(f"checkpoint tag {tag!r}: use letters, digits, '_', '-', '.' (not leading)")
    train_state = check_train_state(train_state)
    root = checkpoints_dir(run_dir)
    rng_per_rank = dist.all_gather_object(capture_rng_state())
    error = None
    if dist.is_main_process():
        try:
            os.makedirs(root, exist_ok=True)
            _write_checkpoint_dir(root, tag, model=model, optimizer=optimizer, scaler=scaler,
                                  train_state=train_state, cfg=cfg, rng_per_rank=rng_per_rank)
            inject_fault("before_latest")
            write_pointer(root, LATEST_FILE, tag)
            if is_best:
                write_pointer(root, BEST_FILE, tag)
            prune_checkpoints(root, keep_last)
        except BaseException as e:
            error = e
    # Rank 0 arrives after writing (or failing), so no rank proceeds before the files exist.
    dist.barrier(f"checkpoint-{tag}", timeout_s=barrier_timeout_s)
    message = dist.broadcast_object(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if message is not None:
        raise CheckpointError(f"rank 0 failed to save checkpoint {tag} in {root}: {message}")
    path = os.path.join(root, tag)
    if dist.is_main_process():
        get_logger().info(f"saved checkpoint {path} (global step {train_state['global_step']})")
    return path


def resolve_resume(run_dir: str, resume: str) -> str | None:
    """COLLECTIVE. ``resume`` is 'auto', 'none' or a path (a checkpoint, or a run/checkpoints
    directory whose newest complete checkpoint is taken). Rank 0 chooses and broadcasts; an
    error on rank 0 raises CheckpointError on every rank. None: nothing to resume."""
    if resume in (None, "", "none"):
        return None
    choice, error = None, None
    if dist.is_main_process():
        try:
            choice = choose_resume(run_dir, resume)
        except CheckpointError as e:
            error = str(e)
    choice, error = dist.broadcast_object((choice, error))
    if error is not None:
        raise CheckpointError(error)
    if choice is not None and dist.is_main_process():
        train_state = read_state(choice)["train_state"]
        get_logger().info(f"resume from {choice} (global step {train_state.get('global_step')}"
                          f"{', run finished' if train_state.get('finished') else ''})")
    return choice
