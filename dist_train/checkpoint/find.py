"""Finding the checkpoint to resume from: the newest complete one under a run directory, or
the one the user named, with the reason for every checkpoint skipped. Not collective:
checkpoint.resolve_resume runs this on rank 0 and broadcasts the choice."""
from __future__ import annotations

import os

from dist_train.checkpoint.layout import (CKPT_DIR, LATEST_FILE, STATE_FILE, TMP_PREFIX, CheckpointError,
                                          checkpoint_problem, checkpoints_dir, read_pointer, read_state)
from dist_train.logs import get_logger


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
    latest = read_pointer(root, LATEST_FILE)
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


def choose_resume(run_dir: str, resume: str) -> str | None:
    """The checkpoint ``resume`` ('auto' or a path) designates, warnings logged for skipped
    ones; None when 'auto' finds nothing. CheckpointError when a named path is unusable."""
    log = get_logger()
    if resume == "auto":
        path, skipped = find_resume_checkpoint(run_dir)
        for problem in skipped:
            log.warning(f"resume: skipping {problem}")
        if path is None:
            log.info(f"resume auto: no complete checkpoint under {checkpoints_dir(run_dir)}; "
                     "starting from scratch")
        return path
    path = os.path.abspath(resume)
    if not os.path.isdir(path):
        raise CheckpointError(f"--resume {resume}: no such checkpoint directory")
    if not os.path.exists(os.path.join(path, STATE_FILE)):  # a run dir or its checkpoints dir
        found, skipped = find_resume_checkpoint(path)
        for problem in skipped:
            log.warning(f"resume: skipping {problem}")
        if found is None:
            raise CheckpointError(f"--resume {resume}: holds no complete checkpoint")
        return found
    problem = checkpoint_problem(path)
    if problem:
        raise CheckpointError(f"--resume {resume}: incomplete or corrupt checkpoint: {problem}")
    return path
