"""DevicePrefetcher with an injected copy on the CPU: batch k+1 is staged before batch k is
handed out, and no staging slot is reused while a batch made from it is alive."""
import weakref

import numpy as np

from dist_train.data.device_prefetch import DevicePrefetcher


class DeviceBatch:
    """A 'device' batch that, like a CPU tensor wrapping its buffer, holds the staging slot."""

    def __init__(self, view, number):
        self.view, self.number = view, number


class SlotCopy:
    """copy(batch, slot): writes the batch into the slot's buffer; busy while its batch lives."""

    def __init__(self, log):
        self.buffers, self.log = {}, log

    def __call__(self, batch, slot):
        buffer = self.buffers.setdefault(slot, np.empty(4, np.int64))
        buffer[:] = batch
        self.log.append(("copy", int(batch[0]), slot))
        device = DeviceBatch(buffer, int(batch[0]))
        alive = weakref.ref(device)
        return device, lambda: alive() is not None


def host_batches(n):
    return [np.full(4, k, np.int64) for k in range(n)]


def consume(prefetcher, log, keep):
    """Iterate, keeping the last ``keep`` batches alive; every kept batch must still hold its
    own numbers when it is dropped (a reused slot would have overwritten it)."""
    kept = []
    for batch in prefetcher:
        log.append(("got", batch.number))
        kept.append(batch)
        for old in kept:
            assert (old.view == old.number).all(), f"batch {old.number}'s slot was reused while held"
        del kept[:max(0, len(kept) - keep)]
        del batch
    return kept


def test_next_batch_is_staged_before_the_current_one_is_handed_out():
    log = []
    prefetcher = DevicePrefetcher(host_batches(6), SlotCopy(log))
    consume(prefetcher, log, keep=0)
    for k in range(6):
        got = log.index(("got", k))
        copies = [entry[1] for entry in log[:got] if entry[0] == "copy"]
        assert copies == list(range(min(k + 2, 6))), (k, log)
    # the loop variable holds batch k while batch k+1 is staged: three slots circulate
    assert prefetcher.slots == 3


def test_slots_held_by_the_consumer_are_never_reused():
    for keep in (1, 2, 5):
        log = []
        prefetcher = DevicePrefetcher(host_batches(12), SlotCopy(log))
        kept = consume(prefetcher, log, keep)
        assert [b.number for b in kept] == list(range(12 - keep, 12))
        assert all((b.view == b.number).all() for b in kept)
        assert prefetcher.slots == keep + 2
    log = []
    everything = list(DevicePrefetcher(host_batches(7), SlotCopy(log)))
    assert [int(b.view[0]) for b in everything] == list(range(7))


def test_wraps_the_loader():
    class Loader(list):
        dataset = "the dataset"
    prefetcher = DevicePrefetcher(Loader(host_batches(3)), SlotCopy([]))
    assert len(prefetcher) == 3 and prefetcher.dataset == "the dataset"
    assert [b.number for b in prefetcher] == [0, 1, 2]
    assert list(DevicePrefetcher([], SlotCopy([]))) == []


def test_loader_lends_host_batches_on_an_accelerator(monkeypatch):
    """host_batches: the shared-memory loader hands out CPU tensors wrapping its ring slots (the
    prefetcher's input) even where Paddle's device is not the CPU."""
    import paddle

    from dist_train.data import loader as loader_module

    class Clips:
        clip_layout = ((3, 2, 4, 4), np.uint8)

        def get_into(self, key, out):
            out[...] = key % 256
            return (key,)

    monkeypatch.setattr(loader_module, "_on_cpu", lambda: False)
    batches = [[0, 1], [2, 3], [4, 5]]
    host = loader_module.make_loader(Clips(), batches, 1, host_batches=True)
    try:
        got = list(host)
        assert host._ring.slots == 1 * 2 + loader_module.LENT_SLOTS
        for keys, (clips, labels) in zip(batches, got):
            assert clips.place.is_cpu_place() and labels.numpy().tolist() == keys
            assert (clips.numpy()[:, 0, 0, 0, 0] == keys).all()
    finally:
        host.close()
    device = loader_module.make_loader(Clips(), batches, 1)
    try:
        list(device)
        assert device._ring.slots == 1 * 2  # copies to the device, lends nothing
    finally:
        device.close()
    assert paddle.get_device() == "cpu"
