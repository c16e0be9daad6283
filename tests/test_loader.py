"""The shared-memory loader yields exactly the stock paddle.io.DataLoader's batches."""
import os
import signal

import numpy as np
import pytest

from dist_train.data.datasets import EvalClipDataset, TrainClipDataset
from dist_train.data.lists import ListEntry
from dist_train.data.loader import ShmBatchLoader, make_loader
from dist_train.data.readers import BadSampleError
from dist_train.data.sampler import EvalBatchSampler, GlobalBatchSampler

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


class ArrayReader:
    """In-memory textured videos (random noise + gradient), same interface as the readers."""

    def __init__(self, lengths, height=20, width=28, fail_video=None):
        rng = np.random.default_rng(7)
        ramp = np.linspace(0, 120, width, dtype=np.float32)[None, None, :, None]
        self.videos = {f"C/v{k}": (rng.integers(0, 130, (n, height, width, 3)) + ramp)
                       .astype(np.uint8) for k, n in enumerate(lengths)}
        self.fail_video = fail_video

    def read(self, video, indices):
        if video == self.fail_video:
            raise ValueError(f"cannot read {video}")
        return self.videos[video][indices]


LENGTHS = [9, 14, 5, 20, 11, 8, 16, 7, 12, 10, 6, 13]


def entries():
    return [ListEntry(f"C/v{k}", n, k % 3) for k, n in enumerate(LENGTHS)]


def collect(loader, epochs, sampler=None):
    out = []
    for epoch in range(epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        out.extend([[t.numpy() for t in batch] for batch in loader])
    return out


def assert_same_batches(a, b):
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u, v)


def test_train_batches_equal_stock_loader():
    ds = TrainClipDataset(entries(), ArrayReader(LENGTHS), clip_len=6, crop_size=12, seed=3)
    sampler = GlobalBatchSampler(len(ds), 4, seed=1)
    reference = collect(make_loader(ds, sampler, 0, kind="stock"), 2, sampler)
    assert reference[0][0].dtype == np.uint8 and reference[0][1].dtype == np.int64
    assert reference[0][0].shape == (4, 3, 6, 12, 12)
    assert_same_batches(collect(make_loader(ds, sampler, 2, kind="stock"), 2, sampler), reference)
    for workers in (0, 1, 2):
        loader = make_loader(ds, sampler, workers, kind="shm", prefetch_batches=2)
        assert_same_batches(collect(loader, 2, sampler), reference)
        if workers:
            assert len(loader._workers) == workers  # persistent across epochs
            loader.close()
            assert loader._workers == []


def test_eval_batches_equal_stock_loader_with_short_last_batch():
    ds = EvalClipDataset(entries(), ArrayReader(LENGTHS), clip_len=6, crop_size=12, mode="test",
                         short_side=16, num_crops=3)
    sampler = EvalBatchSampler(ds, 5)
    reference = collect(make_loader(ds, sampler, 0, kind="stock"), 1)
    assert len(reference[-1][0]) < 5 and len(reference[0]) == 4
    loader = make_loader(ds, sampler, 2, kind="shm")
    assert_same_batches(collect(loader, 1), reference)
    loader.close()


def test_abandoned_iteration_restarts_cleanly():
    ds = TrainClipDataset(entries(), ArrayReader(LENGTHS), clip_len=6, crop_size=12, seed=3)
    sampler = GlobalBatchSampler(len(ds), 2, seed=1)
    reference = collect(make_loader(ds, sampler, 0, kind="shm"), 1)
    loader = make_loader(ds, sampler, 2, kind="shm", prefetch_batches=3)
    for k, _ in enumerate(loader):
        if k == 1:
            break
    assert_same_batches(collect(loader, 1), reference)
    loader.close()


def test_worker_errors_and_deaths_are_reported():
    ds = TrainClipDataset(entries(), ArrayReader(LENGTHS, fail_video="C/v3"), clip_len=6,
                          crop_size=12, seed=3)
    sampler = GlobalBatchSampler(len(ds), 12, seed=1)
    loader = ShmBatchLoader(ds, sampler, 1)
    with pytest.raises(RuntimeError, match="cannot read C/v3"):
        list(loader)
    good = TrainClipDataset(entries(), ArrayReader(LENGTHS), clip_len=6, crop_size=12, seed=3)
    loader = ShmBatchLoader(good, GlobalBatchSampler(len(ds), 2, seed=1), 1, timeout_s=30)
    iterator = iter(loader)
    next(iterator)
    os.kill(loader._workers[0].pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="died"):
        list(iterator)
    assert loader._workers == []


class PlainDataset:
    """A dataset without get_into: the loader copies each item into the slot."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, key):
        return self.inner[key]


@pytest.mark.parametrize("train_crop", ["random", "multiscale_corner"])
def test_batches_stay_valid_after_their_slot_is_reused(train_crop):
    """Tensors handed out are copies: keeping every batch of an epoch (the ring has fewer
    slots) still gives the stock loader's values; with and without the dataset's get_into."""
    ds = TrainClipDataset(entries(), ArrayReader(LENGTHS), clip_len=6, crop_size=12, seed=3,
                          train_crop=train_crop)
    sampler = GlobalBatchSampler(len(ds), 2, seed=4)
    reference = collect(make_loader(ds, sampler, 0, kind="stock"), 2, sampler)
    for dataset in (ds, PlainDataset(ds)):
        loader = make_loader(dataset, sampler, 1, kind="shm", prefetch_batches=1)
        kept = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            kept.extend(loader)  # tensors only, converted after the whole run
        assert len(kept) > loader._ring.slots
        assert_same_batches([[t.numpy() for t in batch] for batch in kept], reference)
        loader.close()


class FailingReader(ArrayReader):
    def read(self, video, indices):
        if video == self.fail_video:
            raise BadSampleError(video, "unreadable (test)")
        return self.videos[video][indices]


def test_bad_samples_are_counted_once_per_epoch_like_the_stock_loader():
    """Buffers are sized from the dataset's clip_layout: no extra probe load to count."""
    counts = {}
    first_index = list(GlobalBatchSampler(len(LENGTHS), 4, seed=1))[0][0][1]
    bad_video = entries()[first_index].video  # what a probe of the first sample would read
    for kind, workers in (("stock", 0), ("shm", 0), ("shm", 1)):
        ds = TrainClipDataset(entries(), FailingReader(LENGTHS, fail_video=bad_video),
                              clip_len=6, crop_size=12, seed=3, skip_bad_samples=True)
        sampler = GlobalBatchSampler(len(ds), 4, seed=1)
        loader = make_loader(ds, sampler, workers, kind=kind)
        batches = collect(loader, 1)
        counts[(kind, workers)] = ds.reset_bad_sample_count()
        assert len(batches) == len(LENGTHS) // 4
        if hasattr(loader, "close"):
            loader.close()
    assert set(counts.values()) == {1}, counts


def test_cpu_batches_wrap_their_slot_until_released():
    """On CPU a batch tensor wraps its ring slot (no copy); the slot returns to the workers once
    the consumer drops the batch, and the values are the stock loader's."""
    ds = TrainClipDataset(entries(), ArrayReader(LENGTHS), clip_len=6, crop_size=12, seed=3,
                          train_crop="random")
    sampler = GlobalBatchSampler(len(ds), 2, seed=4)
    reference = collect(make_loader(ds, sampler, 0, kind="stock"), 3, sampler)
    loader = make_loader(ds, sampler, 1, kind="shm", prefetch_batches=1)
    got, lent = [], set()
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in loader:
            lent.add(len(loader._lent))
            got.append([t.numpy() for t in batch])
    assert_same_batches(got, reference)
    assert loader._ring.slots == 1 + 2 and lent == {1, 2}  # 2: this batch and the last one
    loader.close()

