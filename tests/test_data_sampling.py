"""Temporal indices, spatial transforms and readers on frames stamped with their index."""
import numpy as np
import pytest

from dist_train.data import sampling, transforms
from dist_train.data.datasets import EvalClipDataset, TrainClipDataset
from dist_train.data.lists import ListEntry
from dist_train.data.readers import BadSampleError, FrameFolderReader

from data_helpers import PNG_TEMPLATE, frame_stamp, stamped_frame, write_frame_folder

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


def test_five_frame_video_is_loop_padded():
    assert sampling.clip_indices(0, 5, 16) == [0, 1, 2, 3, 4] * 3 + [0]
    assert sampling.max_start(5, 16) == 0
    rng = np.random.default_rng(0)
    assert all(sampling.train_start(rng, 5, 16) == 0 for _ in range(20))


def test_val_starts_three_clips():
    assert sampling.val_starts(5, 16, 3) == [0, 0, 0]
    assert sampling.val_starts(100, 16, 3) == [0, 42, 84]
    assert sampling.val_starts(16, 16, 3) == [0, 0, 0]
    assert sampling.val_starts(19, 16, 3) == [0, round(1.5), 3]
    assert sampling.val_starts(100, 16, 1) == [42]
    assert sampling.val_starts(5, 16, 1) == [0]


def test_test_clips_cover_video_with_loop_padded_last_clip():
    for n in (1, 5, 15, 16, 17, 40, 48, 49):
        assert len(sampling.test_starts(n, 16)) == sampling.num_test_clips(n, 16) == -(-n // 16)
    starts = sampling.test_starts(40, 16)
    assert starts == [0, 16, 32]
    assert sampling.clip_indices(32, 40, 16) == list(range(32, 40)) * 2
    covered = sorted({i for s in starts for i in sampling.clip_indices(s, 40, 16)})
    assert covered == list(range(40))


def test_temporal_stride_two():
    assert sampling.clip_indices(0, 100, 16, 2) == list(range(0, 32, 2))
    assert sampling.test_starts(40, 16, 2) == [0, 32]
    assert sampling.clip_indices(32, 40, 16, 2) == [32, 34, 36, 38] * 4
    assert sampling.val_starts(100, 16, 3, 2) == [0, 34, 68]
    assert sampling.max_start(40, 16, 2) == 8


@pytest.fixture
def stamped_root(tmp_path):
    write_frame_folder(str(tmp_path), "Up/v_a", [stamped_frame(i) for i in range(23)])
    return str(tmp_path)


def test_reader_order_is_numeric_and_channels_rgb(stamped_root):
    reader = FrameFolderReader(stamped_root, PNG_TEMPLATE)
    frames = reader.read("Up/v_a", [8, 9, 10, 11])  # img_00009 .. img_00012
    assert [int(f[0, 0, 0]) // 5 - 1 for f in frames] == [8, 9, 10, 11]
    assert (frames[..., 2] == 200).all() and frames[0, 0, -1, 1] == 255  # B, G ramp: RGB


def test_train_clip_crop_and_flip_same_on_every_frame(stamped_root):
    entries = [ListEntry("Up/v_a", 23, 0)]
    reader = FrameFolderReader(stamped_root, PNG_TEMPLATE)
    flips = set()
    for method in ("multiscale_corner", "random_resized", "center"):
        ds = TrainClipDataset(entries, reader, clip_len=16, crop_size=32, seed=3,
                              train_crop=method)
        for epoch in range(12):
            clip, label = ds[(epoch, 0)]
            assert clip.dtype == np.uint8 and clip.shape == (3, 16, 32, 32)
            assert clip.flags["C_CONTIGUOUS"] and label == 0
            stamps = frame_stamp(clip)
            assert stamps == list(range(stamps[0], stamps[0] + 16))  # consecutive, in order
            green = clip[1]
            assert (green == green[0]).all()  # same crop on every frame
            assert (clip[2] == 200).all()
            row = green[0, 16].astype(int)
            flips.add(bool(row[0] > row[-1]))  # ramp descending = mirrored
    assert flips == {True, False}


def test_same_key_same_clip_and_keys_differ(stamped_root):
    reader = FrameFolderReader(stamped_root, PNG_TEMPLATE)
    entries = [ListEntry("Up/v_a", 23, 1)] * 4
    ds = TrainClipDataset(entries, reader, clip_len=4, crop_size=24, seed=7)
    a, _ = ds[(2, 1)]
    b, _ = TrainClipDataset(entries, reader, clip_len=4, crop_size=24, seed=7)[(2, 1)]
    assert np.array_equal(a, b)
    others = [ds[(2, 2)][0], ds[(3, 1)][0],
              TrainClipDataset(entries, reader, clip_len=4, crop_size=24, seed=8)[(2, 1)][0]]
    assert all(not np.array_equal(a, o) for o in others)


def test_reversed_video_gives_reversed_clip(tmp_path):
    frames = [stamped_frame(i) for i in range(16)]
    write_frame_folder(str(tmp_path), "A/fwd", frames)
    write_frame_folder(str(tmp_path), "A/rev", frames[::-1])
    reader = FrameFolderReader(str(tmp_path), PNG_TEMPLATE)
    entries = [ListEntry("A/fwd", 16, 0), ListEntry("A/rev", 16, 0)]
    ds = EvalClipDataset(entries, reader, clip_len=16, crop_size=32, mode="test")
    fwd, rev = ds[0][0], ds[1][0]
    assert np.array_equal(fwd[:, ::-1], rev)
    assert frame_stamp(fwd) == list(range(16))


def test_eval_three_crops_left_centre_right(stamped_root):
    reader = FrameFolderReader(stamped_root, PNG_TEMPLATE)
    ds = EvalClipDataset([ListEntry("Up/v_a", 23, 0)], reader, clip_len=16, crop_size=48,
                         mode="val", val_clips=3, short_side=48, num_crops=3)
    assert len(ds) == 9 and ds.video_clip_ranges == [(0, 9)]
    items = [ds[i] for i in range(9)]
    assert [it[3] for it in items] == list(range(9)) and {it[2] for it in items} == {0}
    left, centre, right = (items[k][0][1, 0, 0] for k in range(3))
    assert left[0] < centre[0] < right[0]  # crops move along the long (width) side
    assert frame_stamp(items[3][0])[0] == 4 and frame_stamp(items[6][0])[0] == 7


def test_missing_frame_raises_naming_path_or_is_skipped(tmp_path):
    write_frame_folder(str(tmp_path), "A/gap", [stamped_frame(i) for i in range(20)], skip={5})
    write_frame_folder(str(tmp_path), "A/ok", [stamped_frame(i) for i in range(20)])
    reader = FrameFolderReader(str(tmp_path), PNG_TEMPLATE)
    entries = [ListEntry("A/gap", 20, 0), ListEntry("A/ok", 20, 1)]
    strict = TrainClipDataset(entries, reader, clip_len=20, crop_size=32, seed=0)
    with pytest.raises(BadSampleError, match="img_00005.png"):
        strict[(0, 0)]
    lenient = TrainClipDataset(entries, reader, clip_len=20, crop_size=32, seed=0,
                               skip_bad_samples=True)
    clip, label = lenient[(0, 0)]
    assert label == 1 and np.array_equal(clip, lenient[(0, 1)][0])
    assert lenient.reset_bad_sample_count() == 1 and lenient.bad_sample_count == 0


def test_transform_rejects_unknown_method():
    frames = np.zeros((2, 20, 30, 3), np.uint8)
    with pytest.raises(ValueError, match="train_crop"):
        transforms.train_transform(np.random.default_rng(0), frames, 16, "nope")
