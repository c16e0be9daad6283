"""Checkpoints: versioned directories written atomically, exact resume, restricted loading.

Layout (FORMAT_VERSION 1)::

    <run_dir>/checkpoints/
        step_000123/          one checkpoint; the tag names the global step (see step_tag)
            model.pdparams    paddle.save(model.state_dict()) of the UNWRAPPED network; sync-BN
                              layers have the same keys as plain BN
            optimizer.pdopt   paddle.save(optimizer.state_dict()): accumulators keyed by Paddle
                              parameter names, plus "LR_Scheduler" when a paddle LRScheduler is
                              attached. Loading re-keys accumulators through the structured names
                              recorded in state.json, so the model may be built in any order.
            scaler.json       {"enabled": bool, "state": GradScaler.state_dict()}; on CPU the
                              scaler is disabled and its state is {} (recorded as such)
            rng.npz           RNG states of EVERY rank, gathered to rank 0 (allow_pickle=False;
                              see dist_train/rng_state.py):
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
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import time

import numpy as np
import paddle

from . import compat, dist
from .logs import get_logger
from .models.finetune import StateDictMismatch, compare_state_dict, load_pretrained, mismatch_message
from .rundir import atomic_write_text, package_versions
from .rng_state import capture_rng_state, read_rank_rng, restore_rng_state, rng_npz_bytes
from .safeload import restricted_load

FORMAT_VERSION = 1
KNOWN_FORMAT_VERSIONS = (1,)
CKPT_DIR = "checkpoints"
MODEL_FILE, OPTIM_FILE, SCALER_FILE, RNG_FILE, STATE_FILE = (
    "model.pdparams", "optimizer.pdopt", "scaler.json", "rng.npz", "state.json")
LATEST_FILE, BEST_FILE = "latest", "best"
TMP_PREFIX = ".tmp-"
FAULT_ENV = "DIST_TRAIN_FAULT"
FAULT_POINTS = ("after_model_file", "after_optimizer_file", "before_rename", "before_latest")
REQUIRED_TRAIN_STATE = ("epoch", "step_in_epoch", "global_step")
LR_SCHEDULER_KEY, MASTER_WEIGHTS_KEY = "LR_Scheduler", "master_weights"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, found or loaded; the message names it and says why."""


class InjectedFault(RuntimeError):
    """Raised at a fault point named by DIST_TRAIN_FAULT (tests only)."""


def _log() -> logging.Logger:
    return get_logger()


def step_tag(global_step: int) -> str:
    """Tag of the checkpoint taken after ``global_step`` optimizer steps."""
    return f"step_{int(global_step):06d}"


def checkpoints_dir(run_dir: str) -> str:
    return os.path.join(os.path.abspath(run_dir), CKPT_DIR)


def _fault(point: str) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    name, _, action = spec.partition(":")
    if name != point:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"{FAULT_ENV}={spec}: injected fault at '{point}'")


# ----------------------------------------------------------------------------- files
def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: str, data: bytes) -> dict:
    """Write, flush and fsync ``data``; returns its manifest entry (size, sha256)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _paddle_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    paddle.save(obj, buffer)
    return buffer.getvalue()


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_pointer(root: str, name: str, tag: str) -> None:
    atomic_write_text(os.path.join(root, name), tag + "\n")
    _fsync_dir(root)


def _read_pointer(root: str, name: str) -> str | None:
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().strip() or None


# ----------------------------------------------------------------------------- save
def _config_dict(cfg):
    if cfg is None:
        return None
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def _check_train_state(train_state: dict) -> dict:
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


def _write_checkpoint_dir(root: str, tag: str, *, model, optimizer, scaler, train_state, cfg,
                          rng_per_rank) -> str:
    final = os.path.join(root, tag)
    tmp = os.path.join(root, f"{TMP_PREFIX}{tag}-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    manifest = {MODEL_FILE: _write_bytes(os.path.join(tmp, MODEL_FILE), _paddle_bytes(model.state_dict()))}
    _fault("after_model_file")
    if optimizer is not None:
        manifest[OPTIM_FILE] = _write_bytes(os.path.join(tmp, OPTIM_FILE),
                                            _paddle_bytes(optimizer.state_dict()))
    _fault("after_optimizer_file")
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
    _fsync_dir(tmp)
    _fault("before_rename")
    old = None
    if os.path.exists(final):  # same tag saved twice (e.g. periodic save, then SIGTERM)
        old = os.path.join(root, f"{TMP_PREFIX}old-{tag}-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(root)
    if old is not None:
        shutil.rmtree(old)
    return final


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, paddle.Tensor):
        value = value.numpy()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


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
    train_state = _check_train_state(train_state)
    root = checkpoints_dir(run_dir)
    rng_per_rank = dist.all_gather_object(capture_rng_state())
    error = None
    if dist.is_main_process():
        try:
            os.makedirs(root, exist_ok=True)
            _write_checkpoint_dir(root, tag, model=model, optimizer=optimizer, scaler=scaler,
                                  train_state=train_state, cfg=cfg, rng_per_rank=rng_per_rank)
            _fault("before_latest")
            _write_pointer(root, LATEST_FILE, tag)
            if is_best:
                _write_pointer(root, BEST_FILE, tag)
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
        _log().info(f"saved checkpoint {path} (global step {train_state['global_step']})")
    return path


def prune_checkpoints(root: str, keep_last: int) -> list[str]:
    """Delete all but the newest ``keep_last`` checkpoints (never best or latest); returns them."""
    if keep_last <= 0:
        return []
    keep = {_read_pointer(root, BEST_FILE), _read_pointer(root, LATEST_FILE)}
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


# ----------------------------------------------------------------------------- discovery
def read_state(path: str) -> dict:
    """The parsed state.json of checkpoint ``path``; CheckpointError when unreadable or unknown."""
    state_path = os.path.join(path, STATE_FILE)
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: no {STATE_FILE} (not a checkpoint, or an interrupted save)") from e
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{state_path}: unreadable or not JSON ({e})") from e
    if not isinstance(state, dict) or not isinstance(state.get("train_state"), dict):
        raise CheckpointError(f"{state_path}: no train_state; not a checkpoint of this project")
    version = state.get("format_version")
    if version not in KNOWN_FORMAT_VERSIONS:
        raise CheckpointError(f"{state_path}: format_version {version!r} is unknown to this code "
                              f"(knows {KNOWN_FORMAT_VERSIONS}); use the dist_train version that wrote it")
    return state


def checkpoint_problem(path: str, verify_sha256: bool = False) -> str | None:
    """Why checkpoint ``path`` is incomplete or corrupt, or None when it is complete.

    Sizes are always checked; sha256 only with ``verify_sha256`` (it reads every byte).
    """
    try:
        state = read_state(path)
    except CheckpointError as e:
        return str(e)
    manifest = state.get("manifest") or {}
    if MODEL_FILE not in manifest:
        return f"{path}: manifest lists no {MODEL_FILE}"
    for name, entry in manifest.items():
        file_path = os.path.join(path, name)
        if not os.path.isfile(file_path):
            return f"{file_path}: missing"
        size = os.path.getsize(file_path)
        if size != entry.get("size"):
            return f"{file_path}: {size} bytes, manifest says {entry.get('size')} (truncated or replaced)"
        if verify_sha256 and _sha256_file(file_path) != entry.get("sha256"):
            return f"{file_path}: sha256 differs from the manifest (corrupt)"
    return None


def find_resume_checkpoint(run_dir_or_ckpts: str) -> tuple[str | None, list[str]]:
    """(newest complete checkpoint or None, [problems of the skipped ones]) — no collectives.

    Newest = latest save time (then global step), so a run resumed from an older checkpoint
    continues from its own newer saves. Normally that is the one ``latest`` names; when not,
    the reason is reported. Interrupted saves (.tmp-*) are reported as skipped.
    """
    root = run_dir_or_ckpts
    if os.path.basename(os.path.normpath(root)) != CKPT_DIR:
        root = checkpoints_dir(root)
    if not os.path.isdir(root):
        return None, []
    skipped, complete = [], {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            continue
        if name.startswith(TMP_PREFIX):
            skipped.append(f"{path}: interrupted save (never renamed into place)")
            continue
        problem = checkpoint_problem(path)
        if problem:
            skipped.append(problem)
        else:
            complete[name] = read_state(path)
    latest = _read_pointer(root, LATEST_FILE)
    if not complete:
        if latest is not None:
            skipped.append(f"{os.path.join(root, LATEST_FILE)} names '{latest}', which is not a "
                           "complete checkpoint, and no other complete checkpoint exists")
        return None, skipped
    newest = max(complete, key=lambda t: (complete[t].get("saved_at", 0.0),
                                          complete[t]["train_state"].get("global_step", 0)))
    if latest != newest:
        why = ("is not a complete checkpoint" if latest not in complete else
               f"is older than '{newest}' (a save stopped between its rename and 'latest')")
        skipped.append(f"{os.path.join(root, LATEST_FILE)} names '{latest}', which {why}; "
                       f"using the newest complete checkpoint '{newest}'")
    return os.path.join(root, newest), skipped


def _choose(run_dir: str, resume: str) -> str | None:
    if resume == "auto":
        path, skipped = find_resume_checkpoint(run_dir)
        for problem in skipped:
            _log().warning(f"resume: skipping {problem}")
        if path is None:
            _log().info(f"resume auto: no complete checkpoint under {checkpoints_dir(run_dir)}; "
                        "starting from scratch")
        return path
    path = os.path.abspath(resume)
    if not os.path.isdir(path):
        raise CheckpointError(f"--resume {resume}: no such checkpoint directory")
    if not os.path.exists(os.path.join(path, STATE_FILE)):  # a run dir or its checkpoints dir
        found, skipped = find_resume_checkpoint(path)
        for problem in skipped:
            _log().warning(f"resume: skipping {problem}")
        if found is None:
            raise CheckpointError(f"--resume {resume}: holds no complete checkpoint")
        return found
    problem = checkpoint_problem(path)
    if problem:
        raise CheckpointError(f"--resume {resume}: incomplete or corrupt checkpoint: {problem}")
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
            choice = _choose(run_dir, resume)
        except CheckpointError as e:
            error = str(e)
    choice, error = dist.broadcast_object((choice, error))
    if error is not None:
        raise CheckpointError(error)
    if choice is not None and dist.is_main_process():
        train_state = read_state(choice)["train_state"]
        _log().info(f"resume from {choice} (global step {train_state.get('global_step')}"
                    f"{', run finished' if train_state.get('finished') else ''})")
    return choice


# ----------------------------------------------------------------------------- load
def _remap_optimizer_state(opt_state: dict, saved_names: dict, model, source: str) -> dict:
    """Re-key accumulators from the saving process's parameter names to this model's.

    Paddle names parameters from global counters (linear_3.w_0), so the same network built in
    another order or process has other names; the structured names (fc.weight) are stable.
    """
    current = {name: p.name for name, p in model.named_parameters()}
    missing = sorted(set(saved_names) - set(current))
    if missing:
        raise CheckpointError(f"{source}: parameters {missing[:10]} of the checkpoint are not in "
                              "this model (another architecture or options?)")
    rename = {saved_names[k]: current[k] for k in saved_names}
    prefixes = sorted(rename, key=len, reverse=True)

    def new_key(key):
        for old in prefixes:
            if key == old or key.startswith(old + "_"):
                return rename[old] + key[len(old):]
        raise CheckpointError(f"{source}: optimizer entry '{key}' belongs to no parameter "
                              "recorded in state.json")

    remapped = {}
    for key, value in opt_state.items():
        if key == LR_SCHEDULER_KEY:
            remapped[key] = value
        elif key == MASTER_WEIGHTS_KEY and isinstance(value, dict):
            remapped[key] = {new_key(k): v for k, v in value.items()}
        else:
            remapped[new_key(key)] = value
    return remapped


def _load_optimizer(path: str, optimizer, state: dict, model) -> None:
    file_path = os.path.join(path, OPTIM_FILE)
    if not os.path.isfile(file_path):
        raise CheckpointError(f"{path}: no {OPTIM_FILE} (saved without an optimizer)")
    saved = state["versions"].get("paddle", "?")
    try:
        opt_state = restricted_load(file_path)
        opt_state = _remap_optimizer_state(opt_state, state["param_names"], model, file_path)
        has_sched = isinstance(getattr(optimizer, "_learning_rate", None), paddle.optimizer.lr.LRScheduler)
        if has_sched and LR_SCHEDULER_KEY not in opt_state:
            _log().warning(f"{file_path}: no LR scheduler state; the scheduler starts from its beginning")
        optimizer.set_state_dict(opt_state)
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
            _log().warning(f"{path}: the loss scaler was disabled when saved (CPU?); it starts "
                           "from its initial scale")
        return
    if not enabled_now:
        _log().info(f"{path}: loss-scaler state not restored: the scaler is disabled here (CPU/fp32)")
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
        _log().warning(f"{path} was written by Paddle {saved_paddle}; loading under {paddle.__version__}")
    _load_model_strict(os.path.join(path, MODEL_FILE), model)
    if optimizer is not None:
        _load_optimizer(path, optimizer, state, model)
    if scaler is not None:
        _load_scaler(path, scaler)
    world, saved_world = dist.get_world_size(), state["world_size"]
    if world == saved_world:
        restored = restore_rng_state(read_rank_rng(os.path.join(path, RNG_FILE), rank))
        _log().info(f"restored RNG states ({', '.join(restored)}) of rank {rank}")
    elif dist.is_main_process():
        _log().info(f"{path} was saved by {saved_world} rank(s), this job has {world}: process RNG "
                    "states are not restored (each rank keeps its start-up seeding); harmless, since "
                    "sample randomness is a pure function of (train.seed, epoch, global index)")
    return state["train_state"]


def _load_model_strict(file_path: str, model) -> None:
    weights = restricted_load(file_path)
    missing, unexpected, mis_shaped = compare_state_dict(model, weights)
    if missing or unexpected or mis_shaped:
        raise CheckpointError(mismatch_message(missing, unexpected, mis_shaped, file_path))
    model.set_state_dict(weights)


def load_weights(path: str, model, *, allow_head_mismatch: bool = True) -> dict:
    """Model weights only (fine-tuning, --weights), always through the restricted loader.

    ``path``: a checkpoint directory (its model.pdparams), a .pdparams file, or converted
    weights (the .meta.json beside them is not needed here). A classifier head of another
    shape is left new when ``allow_head_mismatch``; any other mismatch raises CheckpointError
    listing keys and shapes. Returns {"source", "loaded", "skipped_head", "new_head"}.
    """
    file_path = os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file_path):
        raise CheckpointError(f"--weights {path}: no such file (expected a .pdparams file or a "
                              f"checkpoint directory holding {MODEL_FILE})")
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
        _log().warning(f"--weights {file_path}: classifier head not loaded (other shape or absent: "
                       f"{report['skipped_head']}); it keeps its fresh initialisation")
    _log().info(f"loaded {len(report['loaded'])} tensors from {file_path}")
    return {"source": file_path, **report}
