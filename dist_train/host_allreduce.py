"""Sum of small tensors over the ranks of ONE host through shared memory (CPU sync BN's transport).

Why: the CPU sync BN makes two collectives per BN layer and step (24 per step for ResNet-10),
each on the critical path. Through gloo (TCP over loopback) one call on a 129-float vector
took 0.3-5 ms here (median 2.6 ms while other processes shared the 2 cores); through this
module about 0.1 ms, and a 2-rank sync-BN step of the demo net came down to plain BN's time.

Protocol: a file in /dev/shm holds one int64 counter per rank (own cache line) and two slots
per rank (double buffering). Call number g: a rank writes its data into slot g % 2, then
stores g in its counter; it waits until every counter is >= g, then sums the slots in rank
order (so every rank gets a bitwise identical result). A slot is rewritten at call g + 2 only
after its writer saw every counter >= g + 1, i.e. after every rank finished reading call g.
Correctness needs stores seen in program order (x86-64 total store order, slots small enough
for plain, not non-temporal, copies): other machines fall back to gloo.

Waiting spins for about 2 ms (the other rank is usually microseconds away), then yields the
core, then sleeps 0.1 ms per check; a rank missing for WAIT_TIMEOUT_S raises an error naming it.
``DIST_TRAIN_SHM_ALLREDUCE=0`` disables it (every call goes through gloo).
"""
from __future__ import annotations

import mmap
import os
import platform
import time
import uuid

import numpy as np
import paddle

from . import dist

SLOT_BYTES = 1 << 16  # 64 KiB: 2 * 2048 float64 moments of the widest BN fit
WAIT_TIMEOUT_S = 1800.0  # gloo's default collective timeout
DISABLE_ENV = "DIST_TRAIN_SHM_ALLREDUCE"
_CACHE_LINE = 64


class HostAllReduce:
    """Shared-memory sum over ``world`` ranks of one host; build it with ``open_host_allreduce``."""

    def __init__(self, path: str, rank: int, world: int, create: bool):
        self.rank, self.world, self.path = rank, world, path
        size = _CACHE_LINE * world + 2 * world * SLOT_BYTES
        if create:
            with open(path, "wb") as f:
                f.truncate(size)  # zero-filled: every counter starts at 0
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        words = _CACHE_LINE // 8
        self._counters = np.frombuffer(self._map, np.int64, world * words, 0)[::words]
        self._slots = np.frombuffer(self._map, np.uint8, 2 * world * SLOT_BYTES,
                                    _CACHE_LINE * world).reshape(2, world, SLOT_BYTES)
        self._calls = 0

    def sum_(self, tensor: paddle.Tensor) -> paddle.Tensor:
        """In-place sum of ``tensor`` over the ranks. Every rank calls it in the same order with
        the same shape; tensors larger than a slot go through gloo (same decision everywhere)."""
        array = np.ascontiguousarray(tensor.numpy())
        if array.nbytes > SLOT_BYTES:
            return dist.all_reduce_sum_tensor_(tensor)
        self._calls += 1
        slots = self._slots[self._calls % 2]
        slots[self.rank, :array.nbytes] = array.view(np.uint8).reshape(-1)
        self._counters[self.rank] = self._calls  # publish after the data (program order)
        self._wait_for(self._calls)
        total = slots[0, :array.nbytes].view(array.dtype).copy()
        for r in range(1, self.world):
            total += slots[r, :array.nbytes].view(array.dtype)
        tensor.set_value(total.reshape(array.shape))
        return tensor

    def _wait_for(self, call: int) -> None:
        start = time.perf_counter()
        checks = 0
        while (self._counters < call).any():
            checks += 1
            if checks % 256:
                continue
            waited = time.perf_counter() - start
            if waited > WAIT_TIMEOUT_S:
                missing = [r for r in range(self.world) if self._counters[r] < call]
                raise RuntimeError(f"shared-memory all-reduce #{call}: rank(s) {missing} did not "
                                   f"arrive within {WAIT_TIMEOUT_S:g} s (rank {self.rank} waited); "
                                   "check log/workerlog.<rank> of those ranks")
            if waited > 0.02:
                time.sleep(1e-4)
            elif waited > 0.002:
                time.sleep(0)  # yield the core to whatever else is runnable


def _supported_here() -> bool:
    return (os.environ.get(DISABLE_ENV, "1") != "0"
            and platform.machine().lower() in ("x86_64", "amd64") and os.path.isdir("/dev/shm"))


def open_host_allreduce() -> HostAllReduce | None:
    """Collective (every rank calls it, at the same point): a HostAllReduce when several ranks
    share this host and shared memory works for all of them, else None (use gloo).

    Rank 0 creates the file under a fresh name; once every rank has mapped it, rank 0 unlinks
    it, so nothing is left in /dev/shm even when a rank crashes later.
    """
    if not dist.is_distributed():
        return None
    rank, world = dist.get_rank(), dist.get_world_size()
    path, reducer, error = None, None, None
    if rank == 0 and _supported_here():
        path = f"/dev/shm/dist_train_allreduce_{uuid.uuid4().hex}"
        try:
            reducer = HostAllReduce(path, rank, world, create=True)
        except OSError as e:  # e.g. /dev/shm full or read-only: gloo still works
            error, path = str(e), None
    path = dist.broadcast_object(path)
    if path is not None and rank != 0:
        try:
            reducer = HostAllReduce(path, rank, world, create=False) if _supported_here() else None
        except OSError as e:  # another host (no such file) or no permission
            error = str(e)
    usable = all(dist.all_gather_object(reducer is not None))
    if rank == 0 and path is not None:
        os.unlink(path)
    dist.barrier("host_allreduce_unlinked", timeout_s=300)  # the file is gone when any rank returns
    if error:
        from .logs import log_once

        log_once("host_allreduce", f"shared-memory all-reduce unavailable here ({error}); using gloo")
    return reducer if usable else None


_transport = {}  # "sum_": the in-place sum over ranks, chosen at the first call


def sum_over_ranks_(tensor: paddle.Tensor) -> paddle.Tensor:
    """In-place sum over the ranks of a small tensor: shared memory when every rank is on this
    host (~0.1 ms a call), else gloo/NCCL through dist (0.3-5 ms on CPU).

    The first call decides, collectively: every rank must make it at the same point (the CPU
    sync BN's first training forward, or the first per-step stop agreement)."""
    if "sum_" not in _transport:
        host = open_host_allreduce()
        _transport["sum_"] = host.sum_ if host is not None else dist.all_reduce_sum_tensor_
        if dist.is_distributed():
            from .logs import log_once

            log_once("host_allreduce_transport", "small per-step collectives (CPU sync BN, stop "
                     "agreement) through " + ("shared memory" if host is not None else
                                              "the backend's all-reduce"), 20)
    return _transport["sum_"](tensor)
