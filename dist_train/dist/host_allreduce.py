"""Sums over the ranks of ONE host through shared memory: the CPU transport for the small
per-step sums (CPU sync BN, stop agreement) and for data parallelism's gradient average.

Why: gloo sends even a 129-float sum over TCP loopback (milliseconds); shared memory takes
about a tenth of a millisecond, which matters for 26 sync-BN sums a step and for the gradient
average (benchmarks/README.md has the measurements).

Protocol: a file in /dev/shm holds one int64 counter per rank (own cache line) and two slots
per rank (double buffering). Call number g: a rank writes its data into slot g % 2, then
stores g in its counter; it waits until every counter is >= g, then sums the slots in rank
order (so every rank gets a bitwise identical result). A slot is rewritten at call g + 2 only
after its writer saw every counter >= g + 1, i.e. after every rank finished reading call g.
Arrays larger than a slot go through in slot-sized chunks, one call each.
Correctness needs the counter store to become visible after the data: x86-64 orders plain
stores, and the data copy (memcpy: rep movsb up to glibc's non-temporal threshold, ~192 MiB
here, far above a slot) is followed by the counter store as Intel's rule for fast-string
operations asks ("write a discrete semaphore after the string operation"). Other machines
fall back to gloo.

Waiting spins for 50 us, then sleeps 50 us (~0.1 ms with the kernel's timer slack) between
checks; a rank missing for WAIT_TIMEOUT_S raises an error naming it. Spinning longer was slower
on a 2-vCPU machine: a spinning rank keeps its vCPU busy, a sleeping one lets the kernel (and
the hypervisor) run the late rank or whatever delays it.
``DIST_TRAIN_SHM_ALLREDUCE=0`` disables it (gloo everywhere, DataParallel's own gradient sync).
"""
from __future__ import annotations

import mmap
import os
import platform
import time
import uuid

import numpy as np
import paddle

from dist_train import dist
from dist_train.compat import numpy_view

SLOTS_BUDGET_BYTES = 16 << 20  # all slots of all ranks: fits Docker's default 64 MB /dev/shm
MIN_SLOT_BYTES = 1 << 16  # 2 * 2048 float64 moments of the widest BN in one call
# gloo's default collective timeout; DIST_TRAIN_SHM_TIMEOUT_S lowers it (tests)
WAIT_TIMEOUT_S = float(os.environ.get("DIST_TRAIN_SHM_TIMEOUT_S") or 1800.0)
SPIN_S = 5e-5  # spin this long for the other ranks, then sleep between checks
SLEEP_S = 5e-5
DISABLE_ENV = "DIST_TRAIN_SHM_ALLREDUCE"
_CACHE_LINE = 64


def slot_bytes_for(world: int) -> int:
    """Slot size: the budget shared by 2 slots per rank, in whole 4 KiB pages."""
    return max(MIN_SLOT_BYTES, SLOTS_BUDGET_BYTES // (2 * world) // 4096 * 4096)


class HostAllReduce:
    """Shared-memory sum over ``world`` ranks of one host; build it with ``open_host_allreduce``."""

    def __init__(self, path: str, rank: int, world: int, create: bool, slot_bytes: int):
        self.rank, self.world, self.path, self.slot_bytes = rank, world, path, slot_bytes
        size = _CACHE_LINE * world + 2 * world * slot_bytes
        fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
        try:
            if create:  # reserve the pages now: a full /dev/shm fails here, not with SIGBUS later
                os.posix_fallocate(fd, 0, size)  # zero-filled: every counter starts at 0
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        words = _CACHE_LINE // 8
        self._counters = np.frombuffer(self._map, np.int64, world * words, 0)[::words]
        self._slots = np.frombuffer(self._map, np.uint8, 2 * world * slot_bytes,
                                    _CACHE_LINE * world).reshape(2, world, slot_bytes)
        self._calls = 0
        self.waited_s = 0.0  # time this rank spent waiting for the others (trainer metrics)

    def sum_array_(self, array: np.ndarray) -> np.ndarray:
        """In-place sum of a contiguous numpy array over the ranks; returns it."""
        if not array.flags.c_contiguous:  # reshape would copy, and the sums would be lost
            raise ValueError("sum_array_ needs a C-contiguous array (np.ascontiguousarray)")
        self.sum_segments_([array.reshape(-1)])  # a view: the sums land in ``array``
        return array

    def sum_segments_(self, segments: list[np.ndarray]) -> None:
        """In-place sum over the ranks of 1-D arrays of one dtype, taken as one concatenation
        (every rank passes the same sizes in the same order). Each segment is copied into the
        slot and the sum written back into it: no concatenated copy, no Paddle op (the
        gradient average passes views of the gradients themselves)."""
        dtype = segments[0].dtype
        if any(seg.dtype != dtype or seg.ndim != 1 for seg in segments):
            raise ValueError("sum_segments_ needs 1-D arrays of one dtype")
        chunk = self.slot_bytes // dtype.itemsize
        bounds = np.cumsum([0] + [seg.size for seg in segments]).tolist()
        for start in range(0, bounds[-1], chunk):
            end = min(start + chunk, bounds[-1])
            pieces = []  # (the part of a segment in this chunk, its position in the slot)
            for seg, lo, hi in zip(segments, bounds[:-1], bounds[1:]):
                first, last = max(lo, start), min(hi, end)
                if first < last:
                    pieces.append((seg[first - lo:last - lo], first - start))
            self._calls += 1
            slots = self._slots[self._calls % 2].view(dtype)
            for part, at in pieces:
                slots[self.rank, at:at + part.size] = part
            self._counters[self.rank] = self._calls  # publish after the data (program order)
            self._wait_for(self._calls)
            for part, at in pieces:  # rank order: identical on every rank
                np.copyto(part, slots[0, at:at + part.size])
                for r in range(1, self.world):
                    part += slots[r, at:at + part.size]

    def _wait_for(self, call: int) -> None:
        start = time.perf_counter()
        checks = 0
        while (self._counters < call).any():
            checks += 1
            if checks % 16:
                continue
            waited = time.perf_counter() - start
            if waited > WAIT_TIMEOUT_S:
                missing = [r for r in range(self.world) if self._counters[r] < call]
                raise RuntimeError(f"shared-memory all-reduce #{call}: rank(s) {missing} did not "
                                   f"arrive within {WAIT_TIMEOUT_S:g} s (rank {self.rank} waited); "
                                   "check log/workerlog.<rank> of those ranks")
            if waited > SPIN_S:
                time.sleep(SLEEP_S)  # a sleeping vCPU/core lets the late rank run (see above)
        self.waited_s += time.perf_counter() - start


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
    slot_bytes = slot_bytes_for(world)
    path, reducer, error = None, None, None
    if rank == 0 and _supported_here():
        path = f"/dev/shm/dist_train_allreduce_{uuid.uuid4().hex}"
        try:
            reducer = HostAllReduce(path, rank, world, True, slot_bytes)
        except OSError as e:  # e.g. /dev/shm full or read-only: gloo still works
            error = f"{path}: {e}"
            if os.path.exists(path):
                os.unlink(path)
            path = None
    path = dist.broadcast_object(path)
    if path is not None and rank != 0:
        try:
            reducer = HostAllReduce(path, rank, world, False, slot_bytes) if _supported_here() else None
        except OSError as e:  # another host (no such file) or no permission
            error = f"{path}: {e}"
    usable = all(dist.all_gather_object(reducer is not None))
    if rank == 0 and path is not None:
        os.unlink(path)
    dist.barrier("host_allreduce_unlinked", timeout_s=300)  # the file is gone when any rank returns
    if error:
        from dist_train.logs import log_once

        log_once("host_allreduce", f"shared-memory all-reduce unavailable here ({error}); using gloo")
    return reducer if usable else None


_shared = {}  # "reducer": this process's HostAllReduce (or None), opened at the first use


def shared_reducer() -> HostAllReduce | None:
    """The process-wide HostAllReduce, opened collectively at the first call (every rank must
    make that call at the same point); None for one rank or without shared memory."""
    if "reducer" not in _shared:
        _shared["reducer"] = open_host_allreduce()
    return _shared["reducer"]


def waited_seconds() -> float | None:
    """Seconds this process has waited for the other ranks in shared-memory sums so far
    (imbalance between ranks: a slow core, a straggler); None when they do not go through shared
    memory here (one rank, GPU, gloo), where no such wait is measured."""
    reducer = _shared.get("reducer")
    return reducer.waited_s if reducer is not None else None


_transport = {}  # "sum_": the in-place sum over ranks of a numpy array, chosen at the first call


def backend_sum_(array: np.ndarray) -> np.ndarray:
    """In-place sum over ranks of a numpy array through gloo on CPU tensors (the fallback
    transport, e.g. across hosts: no device synchronisation, see dist.all_reduce_cpu_)."""
    return dist.all_reduce_cpu_(array)


def sum_over_ranks_(array: np.ndarray) -> np.ndarray:
    """In-place sum over the ranks of a small contiguous numpy array (returned): shared memory
    when every rank is on this host (~0.1 ms a call), else gloo through dist (0.3-5 ms on CPU).
    Numpy, not Paddle tensors: the callers' arithmetic on a few hundred floats costs ~1 us per
    numpy op against ~15 us per Paddle op dispatch (the CPU sync BN makes ~20 per layer).

    The first use of the shared reducer opens it collectively: every rank must get there at
    the same point (``gradient_average`` at training setup on CPU, else the CPU sync BN's first
    training forward or the first per-step stop agreement)."""
    if "sum_" not in _transport:
        host = shared_reducer()
        _transport["sum_"] = host.sum_array_ if host is not None else backend_sum_
        if dist.is_distributed():
            from dist_train.logs import log_once

            log_once("host_allreduce_transport", "small per-step collectives (CPU sync BN, stop "
                     "agreement) through " + ("shared memory" if host is not None else
                                              "the backend's all-reduce"), 20)
    return _transport["sum_"](array)


class GradientAverage:
    """Averages the gradients of ``params`` over the ranks in one flat shared-memory sum.

    The gradients go into the slots and the sums come back into them through numpy views of
    their memory (``compat.numpy_view``): no concatenated copy and no Paddle op (Paddle's
    concat/split/assign cost several times the sum itself).

    Every rank passes the same parameter list (the optimizer's trainable parameters, in order).
    One extra value per parameter counts the ranks that have its gradient, so a parameter used
    by some ranks only (Paddle creates a gradient only in backward; the replicas would drift)
    raises the same error on every rank, after the same collective.
    """

    def __init__(self, reducer: HostAllReduce, params, names=None):
        self.reducer, self.params = reducer, list(params)
        self.names = list(names) if names is not None else [p.name for p in self.params]
        self.sizes = [int(np.prod(p.shape)) for p in self.params]
        dtypes = sorted({str(p.dtype) for p in self.params})
        if len(dtypes) > 1:
            raise TypeError(f"gradient average: parameters of mixed dtypes {dtypes}; the "
                            f"shared-memory average needs one ({DISABLE_ENV}=0 uses "
                            "DataParallel's own all-reduce)")
        self.dtype = np.dtype(dtypes[0].replace("paddle.", "") if dtypes else "float32")
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"gradient average: parameters of dtype {dtypes[0]}; the shared-"
                            f"memory average sums float32/float64 ({DISABLE_ENV}=0 uses "
                            "DataParallel's own all-reduce)")

    def __call__(self) -> None:
        grads = [p.grad for p in self.params]
        views, copied = [], []  # copied: gradients summed in a contiguous copy, written back
        for grad, size in zip(grads, self.sizes):
            if grad is None:
                views.append(np.zeros(size, self.dtype))
            elif hasattr(grad, "is_contiguous") and not grad.is_contiguous():
                views.append(np.ascontiguousarray(grad.numpy()).reshape(-1))  # e.g. used as w.T
                copied.append((grad, views[-1]))
            else:
                views.append(numpy_view(grad).reshape(-1))
        counts = np.array([g is not None for g in grads], self.dtype)
        self.reducer.sum_segments_(views + [counts])
        partial = [name for name, count in zip(self.names, counts) if 0 < count < self.reducer.world]
        if partial:  # (the gradients now hold sums: the run cannot go on anyway)
            raise RuntimeError(f"gradient average: parameter '{partial[0]}' has a gradient on "
                               f"{int(counts[self.names.index(partial[0])])} of "
                               f"{self.reducer.world} ranks; every rank must use every trainable "
                               "parameter")
        scale = np.asarray(1.0 / self.reducer.world, self.dtype)
        for grad, view in zip(grads, views):
            if grad is not None:  # the view is the gradient's memory: averaged in place
                np.multiply(view, scale, out=view)
        for grad, view in copied:
            paddle.assign(paddle.to_tensor(view.reshape(grad.shape)), output=grad)


def gradient_average(params, names=None) -> GradientAverage | None:
    """Collective: the shared-memory gradient average for CPU ranks on one host, else None
    (one rank, or no shared memory: DataParallel's own all-reduce stays in charge)."""
    reducer = shared_reducer()
    if reducer is None:
        return None
    from dist_train.logs import log_once

    log_once("host_gradient_average", "gradients averaged through shared memory (CPU ranks on "
             f"one host) instead of DataParallel's gloo all-reduce ({DISABLE_ENV}=0 to disable)", 20)
    return GradientAverage(reducer, params, names)
