"""GlobalBatchSampler, whole-video eval sharding and Paddle's DataLoader with tuple keys."""
import numpy as np
import pytest

from dist_train.data.lists import ListEntry
from dist_train.data.datasets import EvalClipDataset
from dist_train.data.sampler import EvalBatchSampler, GlobalBatchSampler, shard_videos

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


def keys(sampler):
    return [list(batch) for batch in sampler]


def test_rank_slices_are_disjoint_and_cover_each_global_batch():
    one = keys(GlobalBatchSampler(50, 8, 0, 1, seed=3, epoch=2))
    assert len(one) == 6 and all(len(b) == 8 for b in one)
    for world in (2, 4, 8):
        per_rank = [keys(GlobalBatchSampler(50, 8, r, world, seed=3, epoch=2))
                    for r in range(world)]
        for step in range(6):
            joined = [k for r in range(world) for k in per_rank[r][step]]
            assert joined == one[step]  # rank r holds slice r, in order
    flat = [k for b in one for k in b]
    assert len(set(flat)) == 48 and all(e == 2 for e, _ in flat)


def test_permutation_depends_on_seed_and_epoch_only():
    a = GlobalBatchSampler(100, 10, seed=1, epoch=0)
    assert keys(a) == keys(GlobalBatchSampler(100, 10, seed=1, epoch=0))
    assert keys(a) != keys(GlobalBatchSampler(100, 10, seed=1, epoch=1))
    assert keys(a) != keys(GlobalBatchSampler(100, 10, seed=2, epoch=0))
    a.set_epoch(1)
    assert keys(a) == keys(GlobalBatchSampler(100, 10, seed=1, epoch=1))


def test_resume_mid_epoch():
    full = keys(GlobalBatchSampler(100, 10, 1, 2, seed=5, epoch=3))
    resumed = GlobalBatchSampler(100, 10, 1, 2, seed=5, epoch=3, start_step=4)
    assert len(resumed) == 6 and keys(resumed) == full[4:]
    resumed.set_epoch(4)
    assert len(resumed) == 10


def test_drop_last_and_errors():
    assert len(GlobalBatchSampler(25, 8)) == 3
    keep = GlobalBatchSampler(25, 8, drop_last=False)
    assert len(keep) == 4 and len(keys(keep)[-1]) == 1
    two = [keys(GlobalBatchSampler(26, 8, r, 2, drop_last=False)) for r in range(2)]
    assert [len(b) for b in two] == [4, 4] and [len(b[-1]) for b in two] == [1, 1]
    everything = [k for r in range(2) for b in two[r] for k in b]
    assert sorted(i for _, i in everything) == list(range(26))  # nothing dropped, no duplicate
    for samples, world in ((27, 2), (30, 4), (5, 2)):  # last batch 3, 6, 5: no equal split
        with pytest.raises(ValueError, match=f"holds {samples % 8}, which {world} ranks cannot share"):
            GlobalBatchSampler(samples, 8, 0, world, drop_last=False)
    assert len(GlobalBatchSampler(27, 8, 1, 2)) == 3  # drop_last=True: no such constraint
    with pytest.raises(ValueError, match="not divisible"):
        GlobalBatchSampler(100, 10, 0, 3)
    with pytest.raises(ValueError, match="start_step"):
        GlobalBatchSampler(100, 10, start_step=11)


def test_shard_videos_cover_every_video_once():
    for n in (0, 1, 5, 7, 101):
        for world in (1, 2, 3, 8):
            shards = [list(shard_videos(n, r, world)) for r in range(world)]
            assert sorted(v for s in shards for v in s) == list(range(n))


class _FakeEval:
    video_clip_ranges = [(0, 3), (3, 4), (4, 9), (9, 11), (11, 12)]


def test_eval_batch_sampler_shards_whole_videos():
    samplers = [EvalBatchSampler(_FakeEval(), 2, r, 2) for r in range(2)]
    items = [[i for b in s for i in b] for s in samplers]
    assert items[0] == [0, 1, 2, 3] and items[1] == list(range(4, 12))
    assert len(samplers[1]) == 4 and all(len(b) <= 2 for b in samplers[1])


def test_paddle_dataloader_passes_tuple_keys_and_collates(tmp_path):
    paddle = pytest.importorskip("paddle")
    from dist_train.data.datasets import TrainClipDataset
    from dist_train.data.readers import FrameFolderReader
    from data_helpers import PNG_TEMPLATE, stamped_frame, write_frame_folder

    entries = []
    for v in range(6):
        write_frame_folder(str(tmp_path), f"C{v % 2}/v{v}", [stamped_frame(i) for i in range(6)])
        entries.append(ListEntry(f"C{v % 2}/v{v}", 6, v % 2))
    reader = FrameFolderReader(str(tmp_path), PNG_TEMPLATE)
    ds = TrainClipDataset(entries, reader, clip_len=4, crop_size=16, seed=0)
    expected = [(np.stack([ds[k][0] for k in b]), [ds[k][1] for k in b])
                for b in GlobalBatchSampler(6, 2, seed=1, epoch=1)]
    # Loaders with workers first: Paddle's 0-worker iterator runs a thread that may still be in
    # Paddle's allocator (holding its lock) when a later loader forks, and the fork then hangs.
    eval_ds = EvalClipDataset(entries, reader, clip_len=4, crop_size=16, mode="test")
    loader = paddle.io.DataLoader(eval_ds, batch_sampler=EvalBatchSampler(eval_ds, 3, 1, 2),
                                  num_workers=2)
    videos = [int(v) for batch in loader for v in batch[2].numpy()]
    assert videos == [3, 3, 4, 4, 5, 5]
    for workers in (2, 0):
        loader = paddle.io.DataLoader(ds, batch_sampler=GlobalBatchSampler(6, 2, seed=1, epoch=1),
                                      num_workers=workers)
        got = [(c.numpy(), l.numpy().tolist()) for c, l in loader]
        assert len(got) == 3
        for (clip, label), (want_clip, want_label) in zip(got, expected):
            assert clip.dtype == np.uint8 and clip.shape == (2, 3, 4, 16, 16)
            assert np.array_equal(clip, want_clip) and label == want_label
