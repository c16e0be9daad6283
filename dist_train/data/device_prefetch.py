"""Copy batch k+1 to the device while batch k computes.

``for clips, labels in DevicePrefetcher(loader, copy): ...`` takes the loader's host batches and
hands out device batches. Before it hands out batch k it has already started the copy of batch
k+1. On a GPU (``pinned_gpu_copy``) that copy goes from pinned memory without blocking: the host
stages batch k+1 and goes on launching batch k's kernels, where a synchronous
``paddle.to_tensor`` from pageable memory made it wait, every step, for the copy and so for every
kernel queued before it (the GPU then idles while the host prepares the next step). The copy is
queued on the current stream, ahead of batch k's kernels; the DMA itself is short (a 16 x
16x112x112 uint8 batch is 9.6 MB, about 1 ms over PCIe) next to the step.

The copy is injected, so the ordering and slot bookkeeping here are device-agnostic (and tested
on the CPU): ``copy(batch, slot) -> (device_batch, busy)``. ``slot`` numbers the staging area the
copy may use (e.g. a pinned buffer); the prefetcher gives a slot to a new batch only when the
``busy()`` of its previous batch returns False: its asynchronous copy has completed, or no tensor
holds it any more. When every slot is busy it opens another one, so a consumer that keeps
batches alive never sees them overwritten and never waits for itself.
"""
from __future__ import annotations

from collections import deque


class DevicePrefetcher:
    """Iterates ``loader`` (each item a host batch), yielding ``copy``'s device batches one
    batch ahead (see the module docstring). ``len()`` and attributes are the loader's."""

    def __init__(self, loader, copy):
        self.loader = loader
        self.copy = copy
        self._busy = []  # per slot: the busy() of the batch it holds, or None

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):  # dataset, close, ... of the wrapped loader
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    @property
    def slots(self) -> int:
        """Staging slots opened so far."""
        return len(self._busy)

    def _free_slot(self) -> int:
        for slot, busy in enumerate(self._busy):
            if busy is None or not busy():
                return slot
        self._busy.append(None)
        return len(self._busy) - 1

    def __iter__(self):
        batches = iter(self.loader)
        staged = deque()

        def stage_next() -> None:
            for batch in batches:
                slot = self._free_slot()
                device_batch, busy = self.copy(batch, slot)
                self._busy[slot] = busy
                staged.append(device_batch)
                return

        stage_next()
        while staged:
            stage_next()  # batch k+1 is on its way before batch k is handed out
            yield staged.popleft()


def pinned_gpu_copy():
    """``copy`` for a GPU: each field of the batch goes into pinned host memory (one host copy
    from the loader's shared memory) and from there to the current GPU without blocking the
    host; the slot is busy until an event recorded after those copies has completed, and the
    pinned memory lives as long as that. Verified only by scripts/gpu_selftest.sh."""
    import numpy as np
    import paddle

    def copy(batch, slot):
        host = [field if isinstance(field, paddle.Tensor)
                else paddle.to_tensor(np.asarray(field), place=paddle.CPUPlace()) for field in batch]
        pinned = [field.pin_memory() for field in host]
        device = [field.cuda(blocking=False) for field in pinned]
        event = paddle.device.cuda.Event()
        event.record()

        def busy(pinned=pinned, event=event):
            return not event.query()

        return device, busy

    return copy
