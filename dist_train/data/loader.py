"""Batch loaders: the stock ``paddle.io.DataLoader`` and a shared-memory loader with less copying.

Paddle's DataLoader pickles every sample from a worker process to the trainer (REFERENCE §4:
about 1,600-1,700 uint8 clips/s per worker, less than one worker produces). ``ShmBatchLoader``
instead forks worker processes that write each batch's clips straight into a ring of shared
batch buffers mapped before the fork (the dataset's ``get_into`` writes the transform's output
into the slot: no per-clip array, no second copy); only the slot number and the small fields
(labels, indices) cross a pipe. On an accelerator the trainer copies a finished slot once
into a device tensor (the copy a GPU needs anyway) and hands the slot back.

On CPU there is no copy at all: the batch tensor wraps the slot itself (Paddle's zero-copy
tensor keeps a reference to the numpy view), and the slot goes back to the workers only when no
tensor uses it any more (its reference count, checked before every task is sent). The ring has
two slots more for such lent batches; if a consumer keeps more batches alive than that, the
loader copies instead (at least one slot always circulates). ``paddle.to_tensor`` would be
worse than a copy: Paddle's CPU allocation of a fresh 10 MB tensor page-faults all of its pages
on every batch.

Both loaders yield the same batches, in the same order: a list ``[clips, field1, ...]`` of
``paddle.Tensor``; ``clips`` is the stacked first item field (uint8 ``[B, 3, T, H, W]``), the other
fields (labels, video/clip indices) are int64 ``[B]``. The sampler yields lists of dataset keys.

Workers of both kinds ignore SIGTERM/SIGINT and die with their trainer (dist_train/data/workers.py):
the launcher signals a trainer's whole process group, and the trainer needs its workers until it
has saved and shut them down.
"""
import mmap
import multiprocessing
import multiprocessing.connection
import sys
import traceback

import numpy as np

from dist_train.data.workers import protect_worker, register_parent_cleanup, worker_init_fn

LOADER_KINDS = ("shm", "stock")
LENT_SLOTS = 2  # extra ring slots for CPU batches the trainer still holds (see above)


def make_loader(dataset, batch_sampler, num_workers, kind="shm", prefetch_batches=2,
                timeout_s=600, host_batches=False):
    """The trainer's loader: ``for clips, labels in make_loader(ds, sampler, n): ...``.

    kind 'shm' (ShmBatchLoader, default) or 'stock' (paddle.io.DataLoader with the same
    sampler). ``num_workers`` 0 loads in the calling process. ``host_batches`` (shm): CPU
    tensors even on an accelerator, for a device prefetcher (data/device_prefetch.py).
    """
    register_parent_cleanup()
    if kind == "shm":
        return ShmBatchLoader(dataset, batch_sampler, num_workers, prefetch_batches, timeout_s,
                              host_batches)
    if kind == "stock":
        import paddle
        return paddle.io.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                                    prefetch_factor=prefetch_batches, timeout=timeout_s if
                                    num_workers else 0, worker_init_fn=worker_init_fn)
    raise ValueError(f"unknown loader kind {kind!r}: use one of {LOADER_KINDS}")


def _on_cpu():
    import paddle
    return paddle.device.get_device() == "cpu"


def _to_tensors(clips, fields, owned=False, host=False):
    """Tensors of a batch on Paddle's current device (``host``: on the CPU). ``owned``: on CPU
    the clips tensor may wrap ``clips`` itself (else, e.g. a slot that goes back to the workers,
    it is copied)."""
    import paddle
    arrays = [clips] + [np.asarray(f, dtype=np.int64) for f in fields]
    if not (host or _on_cpu()):
        return [paddle.to_tensor(a) for a in arrays]  # the host-to-device copy
    if not owned:
        arrays[0] = np.empty(clips.shape, clips.dtype)
        np.copyto(arrays[0], clips)
    # zero_copy: the tensor shares (and keeps alive) the numpy array.
    return [paddle.Tensor(np.ascontiguousarray(a), paddle.CPUPlace(), False, True)
            for a in arrays]


def _fill_batch(dataset, keys, out):
    """Write the clips of ``keys`` into ``out[k]``; return the other fields as columns.

    A dataset's ``get_into`` writes the transform's output there directly; otherwise each
    item's clip is copied in (its shape and dtype must match the buffer's)."""
    get_into = getattr(dataset, "get_into", None)
    rows = []
    for k, key in enumerate(keys):
        if get_into is not None:
            rows.append(tuple(get_into(key, out[k])))
            continue
        item = dataset[key]
        if item[0].shape != out.shape[1:] or item[0].dtype != out.dtype:
            raise ValueError(f"sample {key!r} has shape {item[0].shape} {item[0].dtype}, "
                             f"the batch buffers hold {out.shape[1:]} {out.dtype}")
        out[k] = item[0]
        rows.append(item[1:])
    return [list(column) for column in zip(*rows)]


class _Ring:
    """``slots`` batch buffers of ``slot_bytes`` in one anonymous shared mapping (survives fork)."""

    def __init__(self, slots, slot_bytes):
        self.slots, self.slot_bytes = slots, slot_bytes
        self.buffer = mmap.mmap(-1, slots * slot_bytes, flags=mmap.MAP_SHARED)

    def view(self, slot, shape, dtype):
        count = int(np.prod(shape))
        return np.frombuffer(self.buffer, dtype, count, slot * self.slot_bytes).reshape(shape)


def _worker_loop(dataset, ring, clip_shape, clip_dtype, tasks, results):
    """Fill slots: task (batch_no, slot, keys) -> result (batch_no, slot, fields, error).

    The worker dies with the trainer (protect_worker), so it may block on ``tasks`` forever.
    """
    protect_worker()
    while True:
        task = tasks.get()
        if task is None:
            return
        batch_no, slot, keys = task
        try:
            fields = _fill_batch(dataset, keys, ring.view(slot, (len(keys),) + clip_shape,
                                                          clip_dtype))
            results.send((batch_no, slot, fields, None))
        except Exception:  # reported to and raised by the trainer process
            results.send((batch_no, slot, None, traceback.format_exc()))


class ShmBatchLoader:
    """Worker processes write batches into shared memory; see the module docstring.

    Workers are forked at the first ``iter()`` and persist across epochs (keys travel with each
    task, so ``batch_sampler.set_epoch`` needs no new workers; the dataset object is the one of
    fork time). An abandoned or failed iteration stops them; ``close()`` stops them. Buffers are
    sized by the dataset's ``clip_layout`` (shape, dtype) if it has one, else by loading the first
    sample of the first batch in the trainer; samples of other shapes raise an error.
    """

    def __init__(self, dataset, batch_sampler, num_workers=1, prefetch_batches=2, timeout_s=600,
                 host_batches=False):
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.num_workers = int(num_workers)
        self.prefetch_batches = max(1, int(prefetch_batches))
        self.timeout_s = timeout_s
        self._ring = self._worker_ring = self._layout = None
        self._workers = []
        self._lent = {}  # slot -> the view a live CPU tensor wraps
        self._host = bool(host_batches)  # CPU tensors on an accelerator too (make_loader)

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        batches = [list(b) for b in self.batch_sampler]
        if not batches:
            return
        if self.num_workers == 0:
            shape, dtype = self._clip_layout(batches)
            for keys in batches:
                clips = np.empty((len(keys),) + shape, dtype)  # filled in place, no stacking
                yield _to_tensors(clips, _fill_batch(self.dataset, keys, clips), owned=True,
                                  host=self._host)
            return
        yield from self._iter_workers(batches)

    def _clip_layout(self, batches):
        if self._layout is None:
            known = getattr(self.dataset, "clip_layout", None)  # (shape, dtype), no loading
            if known is None:  # probe one sample (once) for the clip shape and dtype
                probe = self.dataset[batches[0][0]][0]
                known = (probe.shape, probe.dtype)
            self._layout = (tuple(known[0]), np.dtype(known[1]))
        return self._layout

    def _ensure_ring(self, batches):
        shape, dtype = self._clip_layout(batches)
        slot_bytes = max(len(b) for b in batches) * int(np.prod(shape)) * np.dtype(dtype).itemsize
        slots = self.num_workers * self.prefetch_batches + (LENT_SLOTS if self._host or _on_cpu() else 0)
        ring = self._ring
        if ring is None or ring.slots != slots or ring.slot_bytes < slot_bytes:
            # Batches lent from the old ring keep its mapping alive (their views hold it).
            self._ring = ring = _Ring(slots, slot_bytes)
            self._lent = {}
        return ring, shape, dtype

    def _reclaim(self, free):
        """Slots whose lent view only this loader references go back to ``free``."""
        for slot in list(self._lent):
            if sys.getrefcount(self._lent[slot]) <= 2:  # the dict's reference and the argument
                del self._lent[slot]
                free.append(slot)

    def _hand_out(self, ring, slot, shape, dtype, fields, free):
        """The batch tensors of a filled slot: lent (CPU, while another slot circulates) or
        copied (the slot is free again at once)."""
        clips = ring.view(slot, shape, dtype)
        if (self._host or _on_cpu()) and len(self._lent) + 1 < ring.slots:
            self._lent[slot] = clips
            return _to_tensors(clips, fields, owned=True, host=True)
        free.append(slot)
        return _to_tensors(clips, fields, host=self._host)

    def _start_workers(self, ring, shape, dtype):
        # Plain pipes, no multiprocessing.Queue: a Queue's feeder thread fights the trainer
        # for the GIL and, with worker and trainer on one core, cost about 2 ms per batch.
        # Tasks: one SimpleQueue (workers take the next batch when free); results: one pipe
        # per worker, so workers never contend for a lock to report.
        context = multiprocessing.get_context("fork")
        self._tasks = context.SimpleQueue()
        pipes = [context.Pipe(duplex=False) for _ in range(self.num_workers)]
        self._results = [reader for reader, _ in pipes]
        self._workers = [context.Process(target=_worker_loop, daemon=True,
                                         args=(self.dataset, ring, shape, dtype, self._tasks,
                                               writer))
                         for _, writer in pipes]
        for worker in self._workers:
            worker.start()
        for _, writer in pipes:
            writer.close()  # the trainer only reads

    def close(self):
        """Stop the worker processes (also done at garbage collection and interpreter exit)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            if worker.is_alive():
                self._tasks.put(None)
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():  # still busy after its grace period; it ignores SIGTERM
                worker.kill()
                worker.join()
        if workers:
            for reader in self._results:
                reader.close()
            self._tasks.close()

    def __del__(self):
        if getattr(self, "_workers", None):
            self.close()

    def _iter_workers(self, batches):
        ring, shape, dtype = self._ensure_ring(batches)
        if not self._workers or ring is not self._worker_ring:
            self.close()
            self._start_workers(ring, shape, dtype)
            self._worker_ring = ring
        free = [slot for slot in range(ring.slots) if slot not in self._lent]
        sent, pending, clean = 0, {}, False
        try:
            for batch_no in range(len(batches)):
                self._reclaim(free)
                while free and sent < len(batches):
                    self._tasks.put((sent, free.pop(), batches[sent]))
                    sent += 1
                while batch_no not in pending:
                    number, slot, fields, error = self._get()
                    if error:
                        raise RuntimeError(f"loader worker failed on batch {number}:\n{error}")
                    pending[number] = (slot, fields)
                slot, fields = pending.pop(batch_no)
                yield self._hand_out(ring, slot, (len(batches[batch_no]),) + shape, dtype,
                                     fields, free)
            clean = True
        finally:
            if not clean:
                # Abandoned or failed: in-flight batches would land in the next iteration.
                self.close()

    def _get(self):
        waited = 0.0
        while True:
            ready = multiprocessing.connection.wait(self._results, timeout=1.0)
            for reader in ready:
                try:
                    return reader.recv()
                except EOFError:
                    break  # that worker is gone: reported below
            else:
                if not ready:
                    waited += 1.0
            dead = [w.pid for w in self._workers if not w.is_alive()]
            if dead:
                raise RuntimeError(f"loader worker process(es) {dead} died (killed, or out "
                                   f"of memory?)")
            if waited >= self.timeout_s:
                raise RuntimeError(f"no batch from the loader workers in {waited:.0f} s")
