"""Preemption: turn SIGTERM/SIGINT into a flag the training loop polls, and keep DataLoader
workers alive until their trainer is done with them.

Why: under ``paddle.distributed.launch`` a SIGTERM reaches every process of a trainer's
process group; DataLoader workers die first and the trainer crashes ("DataLoader process
killed") before it can save, and the launcher SIGKILLs what is left about 30 s later. A
``kill -9`` of a trainer, on the other hand, left its workers alive for over 40 s.

The trainer's part:

1. ``install_handlers()`` once in the main thread, before building the DataLoader.
2. ``DataLoader(..., worker_init_fn=worker_init_fn)`` (or ``make_worker_init_fn(own_fn)``; both in
   dist_train/data/workers.py, which data/loader.py uses):
   workers ignore SIGTERM/SIGINT and die when their parent dies (prctl PR_SET_PDEATHSIG on
   Linux, plus a parent-pid watchdog thread everywhere).
3. Once per step, after fetching the batch (and once when an epoch's batches are used up):
   ``if agree_to_stop(failure): save, shut the loader down, sys.exit(PREEMPTED_EXIT_CODE)``.
   ``agree_to_stop`` is a collective (one tiny sum): all ranks stop after the same step, and
   every rank calls the checkpoint save. The same sum carries input failures of any rank's
   loader, so a bad file on one rank stops every rank at once with the file named once, and
   is not mistaken for a preemption (see agree_to_stop).

``PREEMPTED_EXIT_CODE`` (75, EX_TEMPFAIL from sysexits.h) means "stopped on a signal, a
checkpoint was saved": launch.sh does not restart after it. ``paddle.distributed.launch`` does
not pass it on (it exits with the signal number, 15, when it was SIGTERMed itself, else with
the first failed trainer's code), so rank 0 also writes ``<run.dir>/PREEMPTED`` (JSON: global
step, checkpoint, signal) before any rank exits; launch.sh removes it before each attempt and
reads it after the launcher exits.

Test hook (tests only, not a feature): ``DIST_TRAIN_KILL_AT_STEP=k`` SIGKILLs the rank
``DIST_TRAIN_KILL_RANK`` (default 0) in the middle of global step k: after the backward pass,
before the optimizer updates the weights. It fires only in a first attempt (launch.sh sets
``DIST_TRAIN_RESTART`` to the attempt number), so a restarted job does not kill itself again.
"""
from __future__ import annotations

import json
import os
import signal

import numpy as np

from dist_train.dist import all_gather_object
from dist_train.dist.host_allreduce import sum_over_ranks_
from dist_train.errors import InputError
from dist_train.logs import get_logger
from dist_train.atomic import atomic_write_text
from dist_train.data.workers import STOP_SIGNALS

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: temporary failure, resume later
MARKER_FILE = "PREEMPTED"
KILL_STEP_ENV, KILL_RANK_ENV, RESTART_ENV = (
    "DIST_TRAIN_KILL_AT_STEP", "DIST_TRAIN_KILL_RANK", "DIST_TRAIN_RESTART")

_state = {"signal": None, "installed": False}


def _on_signal(signum, frame):
    if signum == signal.SIGINT and _state["signal"] == signal.SIGINT:
        raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait for the save
    _state["signal"] = signum
    # No logging here: a handler may interrupt the logging module while it holds its lock.
    os.write(2, f"[dist_train] received {signal.Signals(signum).name}: will save a checkpoint "
                "after the current step and exit\n".encode())


def install_handlers(signals=STOP_SIGNALS) -> None:
    """Make SIGTERM/SIGINT set the stop flag instead of killing the process (main thread only)."""
    for signum in signals:
        signal.signal(signum, _on_signal)
        # SA_RESTART: a signal arriving inside a blocking call of Paddle's TCP store or gloo
        # must not fail it with EINTR ("TCP receive error ... Interrupted system call").
        signal.siginterrupt(signum, False)
    _state["installed"] = True


def stop_requested() -> bool:
    """True once this process received a stop signal (local: see agree_to_stop for all ranks)."""
    return _state["signal"] is not None


def requested_signal() -> int | None:
    return _state["signal"]


def request_stop(signum: int = signal.SIGTERM) -> None:
    """Set the flag as a signal would (used by test hooks and by max-steps style stops)."""
    _state["signal"] = signum


def reset() -> None:
    _state["signal"] = None


def agree_to_stop(failure: BaseException | None = None) -> bool:
    """COLLECTIVE, once per step (after this rank fetched its batch, before the step's other
    collectives): one sum over the ranks of [stop signals, input failures], through shared
    memory on one host, else gloo on a CPU tensor (no device synchronisation).

    ``failure``: the input error this rank's loader raised instead of a batch. Rather than
    dying alone (the other ranks would wait for it in the step's collectives and the launcher
    would kill them, looking like a preemption), the rank brings it here; then every rank
    raises it (``raise_agreed_failure``): no save, no PREEMPTED marker. Otherwise returns True
    on every rank when any rank was asked to stop (save, then Preempted)."""
    local = np.array([1.0 if stop_requested() else 0.0, 0.0 if failure is None else 1.0])
    signals, failures = sum_over_ranks_(local)  # every step: the cheap transport
    if failures:
        raise_agreed_failure(failure)
    agreed = bool(signals > 0)
    if agreed and not stop_requested():
        get_logger().info("another rank received a stop signal: stopping after this step")
    return agreed


def raise_agreed_failure(failure: BaseException | None):
    """COLLECTIVE (after an agreement found a failure): every rank raises the input error of
    the lowest failing rank, marked ``on_every_rank`` so that rank 0 alone reports it."""
    messages = all_gather_object(None if failure is None else str(failure))
    rank = next(r for r, m in enumerate(messages) if m is not None)
    where = f" (rank {rank} of {len(messages)})" if len(messages) > 1 else ""
    error = InputError(messages[rank] + where)
    error.on_every_rank = True
    raise error from failure


class Preempted(Exception):
    """Raised by the training loop after the agreed stop step's checkpoint was saved."""

    def __init__(self, global_step: int, checkpoint_path: str):
        super().__init__(f"stopped on a signal after global step {global_step}; "
                         f"checkpoint {checkpoint_path}")
        self.global_step, self.checkpoint_path = global_step, checkpoint_path


def marker_path(run_dir: str) -> str:
    return os.path.join(run_dir, MARKER_FILE)


def clear_marker(run_dir: str) -> None:
    try:
        os.remove(marker_path(run_dir))
    except FileNotFoundError:
        pass


def write_marker(run_dir: str, stop: Preempted) -> None:
    """Rank 0: record a preempted exit for launch.sh (the launcher hides our exit code)."""
    signum = requested_signal()
    atomic_write_text(marker_path(run_dir), json.dumps(
        {"global_step": stop.global_step, "checkpoint": stop.checkpoint_path,
         "signal": signal.Signals(signum).name if signum else None}) + "\n")


# ----------------------------------------------------------------------------- test hook
def arm_kill_hook(optimizer, rank: int, current_step) -> bool:
    """TEST HOOK (see the module docstring): SIGKILL this rank inside global step
    ``DIST_TRAIN_KILL_AT_STEP``, between backward and the weight update. ``current_step()``
    returns the number of the step in progress (1-based). Returns whether it was armed."""
    spec = os.environ.get(KILL_STEP_ENV)
    if (not spec or int(os.environ.get(RESTART_ENV, "0") or 0) > 0
            or rank != int(os.environ.get(KILL_RANK_ENV, "0"))):
        return False
    kill_at, original = int(spec), optimizer.step

    def step_or_die(*args, **kwargs):
        if current_step() == kill_at:
            os.write(2, f"[dist_train] {KILL_STEP_ENV}={kill_at}: SIGKILL rank {rank} inside "
                        "the step (test hook)\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    optimizer.step = step_or_die  # GradScaler.step calls optimizer.step() (scaled or not)
    get_logger().warning(f"test hook armed: rank {rank} will be SIGKILLed inside step {kill_at}")
    return True
