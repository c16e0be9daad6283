"""Loader workers that survive the launcher's SIGTERM and die with their trainer.

Under ``paddle.distributed.launch`` a SIGTERM reaches every process group, and loader workers
would die before the trainer can save (REFERENCE §3); a ``kill -9`` of a trainer would orphan
them. Workers therefore ignore SIGTERM/SIGINT (the trainer decides when to stop, see
dist_train/training/preempt.py) and exit when their parent dies (prctl PR_SET_PDEATHSIG on Linux, plus a
parent-pid watchdog thread).
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time

from dist_train.logs import get_logger

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1
WATCHDOG_POLL_S = 1.0


def _set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent thread exits."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        get_logger().warning(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}")
        return False
    return True


def _watch_parent(parent_pid: int, poll_s: float) -> None:
    while True:
        if os.getppid() != parent_pid:  # re-parented: the trainer is gone
            os._exit(1)
        time.sleep(poll_s)


def protect_worker(use_prctl: bool = True, poll_s: float = WATCHDOG_POLL_S) -> int:
    """Call inside a loader worker: ignore SIGTERM/SIGINT, die with the parent. Returns the
    parent pid being watched."""
    parent_pid = os.getppid()
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if use_prctl:
        _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    # Fallback for systems without prctl, and for a parent thread (not process) exit race.
    threading.Thread(target=_watch_parent, args=(parent_pid, poll_s), daemon=True,
                     name="parent-watchdog").start()
    return parent_pid


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: see protect_worker."""
    protect_worker()


def make_worker_init_fn(inner=None):
    """A worker_init_fn that protects the worker, then calls ``inner(worker_id)`` if given."""
    if inner is None:
        return worker_init_fn
    return _ChainedInit(inner)


class _ChainedInit:
    """Picklable (for spawn start methods) chain of protect_worker and the trainer's init."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, worker_id: int) -> None:
        protect_worker()
        self.inner(worker_id)


_parent_cleanup_registered = False


def _kill_daemon_children() -> None:
    daemons = [child for child in multiprocessing.active_children() if child.daemon]
    if daemons:
        # Paddle's DataLoader installs a SIGCHLD handler that raises "DataLoader process ...
        # killed by signal" for any of its workers that dies by a signal, here in the middle of
        # interpreter exit; these kills are on purpose, so the default handler comes back first.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in daemons:
        child.kill()


def register_parent_cleanup() -> None:
    """Call in the trainer before it starts protected DataLoader workers.

    Protected workers ignore SIGTERM, and multiprocessing's exit handler stops daemon children
    with SIGTERM and then joins them: without this the interpreter would wait for them forever
    (seen with Paddle 2.6's DataLoader after a worker error). atexit runs handlers in reverse
    order of registration, so this one runs before multiprocessing's and SIGKILLs them.
    """
    global _parent_cleanup_registered
    if not _parent_cleanup_registered:
        atexit.register(_kill_daemon_children)
        _parent_cleanup_registered = True
