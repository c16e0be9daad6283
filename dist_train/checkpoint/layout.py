"""Names of the checkpoint layout and the checks that a checkpoint directory is complete.

The layout itself (files, fields, FORMAT_VERSION) is documented in checkpoint.py's docstring.
Reading only: nothing here writes, and nothing here is collective.
"""
from __future__ import annotations

import hashlib
import json
import os

from dist_train.errors import InputError

FORMAT_VERSION = 1
KNOWN_FORMAT_VERSIONS = (1,)
CKPT_DIR = "checkpoints"
MODEL_FILE, OPTIM_FILE, SCALER_FILE, RNG_FILE, STATE_FILE = (
    "model.pdparams", "optimizer.pdopt", "scaler.json", "rng.npz", "state.json")
LATEST_FILE, BEST_FILE = "latest", "best"
TMP_PREFIX = ".tmp-"


class CheckpointError(InputError, RuntimeError):
    """A checkpoint cannot be written, found or loaded; the message names it and says why."""


def step_tag(global_step: int) -> str:
    """Tag of the checkpoint taken after ``global_step`` optimizer steps."""
    return f"step_{int(global_step):06d}"


def checkpoints_dir(run_dir: str) -> str:
    return os.path.join(os.path.abspath(run_dir), CKPT_DIR)


def read_pointer(root: str, name: str) -> str | None:
    """The tag a pointer file (``latest``, ``best``) names, or None when it is absent or empty."""
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().strip() or None


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        if verify_sha256 and sha256_file(file_path) != entry.get("sha256"):
            return f"{file_path}: sha256 differs from the manifest (corrupt)"
    return None
