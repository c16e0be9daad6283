"""The fast clip cutting (views, resize into a reused buffer, one cv2.split, cv2.flip) equals a
straightforward reference (per-frame cv2.resize, np.stack, numpy transpose and [..., ::-1])
bit for bit; the 'random' training crop and its error."""
import cv2
import numpy as np
import pytest

from dist_train.data import sampling, transforms
from dist_train.data.datasets import TrainClipDataset
from dist_train.data.lists import ListEntry
from data_helpers import textured

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


def reference_clip(frames, box, size, flip):
    """The obvious implementation: cut, per-frame resize (always), transpose, mirror."""
    cut = frames[:, box.y:box.y + box.h, box.x:box.x + box.w]
    resized = np.stack([cv2.resize(np.ascontiguousarray(f), (size, size),
                                   interpolation=cv2.INTER_LINEAR) for f in cut])
    if flip:
        resized = resized[:, :, ::-1]
    return np.ascontiguousarray(resized.transpose(3, 0, 1, 2))


def reference_train(rng, frames, size, method, scales, hflip):
    height, width = frames.shape[1:3]
    if method == "multiscale_corner":  # written out (tests/test_multiscale_crop.py checks the draw)
        side = int(min(height, width) * scales[int(rng.integers(len(scales)))])
        x, y = {"center": ((width - side) // 2, (height - side) // 2), "top_left": (0, 0),
                "top_right": (width - side, 0), "bottom_left": (0, height - side),
                "bottom_right": (width - side, height - side)}[
            ["center", "top_left", "top_right", "bottom_left", "bottom_right"][int(rng.integers(5))]]
        box = transforms.Box(x, y, side, side)
    elif method == "random_resized":
        box = transforms.draw_random_resized_crop(rng, height, width)
    elif method == "random":
        x = int(rng.integers(0, width - size + 1))
        y = int(rng.integers(0, height - size + 1))
        box = transforms.Box(x, y, size, size)
    else:
        side = min(height, width)
        box = transforms.corner_box(height, width, side, side, "center")
    return reference_clip(frames, box, size, hflip and rng.random() < 0.5)


def read_only(frames):
    view = frames[:]
    view.flags.writeable = False
    return view


BOXES = [transforms.Box(0, 0, 48, 48), transforms.Box(5, 3, 20, 20), transforms.Box(30, 10, 33, 38),
         transforms.Box(11, 7, 24, 24), transforms.Box(0, 0, 64, 48)]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("box", BOXES)
def test_clip_from_box_equals_reference(box, flip):
    store = textured(12, 48, 64)
    frames = read_only(store[2:10])  # a read-only view, as the packed store returns
    expected = reference_clip(frames, box, 24, flip)
    clip = transforms.clip_from_box(frames, box, 24, flip)
    assert clip.dtype == np.uint8 and clip.flags.c_contiguous and clip.shape == (3, 8, 24, 24)
    np.testing.assert_array_equal(clip, expected)
    out = np.full((3, 8, 24, 24), 7, np.uint8)
    assert transforms.clip_from_box(frames, box, 24, flip, out) is out
    np.testing.assert_array_equal(out, expected)
    strided = store[1:12:3]  # every third frame: a non-contiguous view
    np.testing.assert_array_equal(transforms.clip_from_box(strided, box, 24, flip),
                                  reference_clip(strided, box, 24, flip))


def test_clip_from_box_rejects_a_wrong_buffer():
    frames = textured(4, 32, 40)
    with pytest.raises(ValueError, match=r"output buffer is \(3, 4, 16, 17\)"):
        transforms.clip_from_box(frames, transforms.Box(0, 0, 16, 16), 16,
                                 out=np.empty((3, 4, 16, 17), np.uint8))


@pytest.mark.parametrize("method", transforms.TRAIN_CROPS)
@pytest.mark.parametrize("hflip", [False, True])
def test_train_transform_equals_reference_and_keeps_draw_order(method, hflip):
    frames = read_only(textured(6, 40, 56, seed=1))
    scales = transforms.PAPER_SCALES
    for seed in range(12):
        clip = transforms.train_transform(np.random.default_rng(seed), frames, 24, method,
                                          scales, hflip)
        expected = reference_train(np.random.default_rng(seed), frames, 24, method, scales,
                                   hflip)
        np.testing.assert_array_equal(clip, expected)


@pytest.mark.parametrize("num_crops", [1, 3])
@pytest.mark.parametrize("short_side", [32, 40])
def test_eval_clips_equal_reference(num_crops, short_side):
    frames = textured(5, 40, 56, seed=2)  # short side 40: resized to 32, or kept
    clips = transforms.eval_clips(frames, short_side, 24, num_crops)
    if short_side == 40:
        scaled = frames
    else:
        scaled = np.stack([cv2.resize(f, (45, 32), interpolation=cv2.INTER_LINEAR)
                           for f in frames])
    height, width = scaled.shape[1:3]
    y = (height - 24) // 2
    xs = [(width - 24) // 2] if num_crops == 1 else [0, (width - 24) // 2, width - 24]
    assert len(clips) == num_crops
    for clip, x in zip(clips, xs):
        np.testing.assert_array_equal(
            clip, reference_clip(scaled, transforms.Box(x, y, 24, 24), 24, False))


def test_random_crop_cuts_without_resizing_and_covers_the_frame():
    frames = textured(4, 30, 40, seed=3)
    corners = set()
    for seed in range(300):
        rng = np.random.default_rng(seed)
        box = transforms.draw_random_crop(rng, 30, 40, 24)
        check = np.random.default_rng(seed)
        assert (box.x, box.y) == (int(check.integers(0, 17)), int(check.integers(0, 7)))
        assert box.w == box.h == 24 and 0 <= box.x <= 16 and 0 <= box.y <= 6
        corners.add((box.x in (0, 16), box.y in (0, 6)))
        clip = transforms.clip_from_box(frames, box, 24)
        np.testing.assert_array_equal(
            clip, frames[:, box.y:box.y + 24, box.x:box.x + 24].transpose(3, 0, 1, 2))
    assert (True, True) in corners  # extreme positions are reachable
    exact = transforms.draw_random_crop(np.random.default_rng(0), 24, 24, 24)
    assert exact == transforms.Box(0, 0, 24, 24)


def test_random_crop_too_large_names_the_video_and_the_remedy():
    frames = textured(2, 20, 30)
    with pytest.raises(transforms.CropSizeError) as error:
        transforms.train_transform(np.random.default_rng(0), frames, 24, "random",
                                   source="store/A/v_1")
    message = str(error.value)
    for part in ("store/A/v_1", "20x30", "24x24", "--short-side", "another data.train_crop"):
        assert part in message, message


class SizedReader:
    """A reader that knows frame sizes without reading (like PackedStoreReader)."""

    root = "/stores/s64"

    def __init__(self, sizes):
        self.sizes = sizes

    def frame_size(self, video):
        return self.sizes[video]

    def read(self, video, indices):
        height, width = self.sizes[video]
        return textured(len(indices), height, width, seed=len(video))


def test_dataset_refuses_a_random_crop_larger_than_stored_frames_before_training():
    reader = SizedReader({"A/v_big": (64, 85), "A/v_small": (20, 26)})
    entries = [ListEntry("A/v_big", 10, 0), ListEntry("A/v_small", 10, 0)]
    with pytest.raises(transforms.CropSizeError, match="/stores/s64/A/v_small: frames are 20x26"):
        TrainClipDataset(entries, reader, clip_len=4, crop_size=24, seed=0, train_crop="random")
    ok = TrainClipDataset(entries[:1], reader, clip_len=4, crop_size=24, seed=0,
                          train_crop="random")
    clip, label = ok[(0, 0)]
    assert clip.shape == (3, 4, 24, 24) and label == 0


def test_dataset_get_into_writes_the_same_clip_into_the_buffer():
    reader = SizedReader({"A/v_big": (40, 52)})
    entries = [ListEntry("A/v_big", 30, 1)]
    for method in transforms.TRAIN_CROPS:
        ds = TrainClipDataset(entries, reader, clip_len=5, crop_size=24, seed=9, train_crop=method)
        for epoch in range(4):
            out = np.zeros((3, 5, 24, 24), np.uint8)
            assert ds.get_into((epoch, 0), out) == (1,)
            clip, _ = ds[(epoch, 0)]
            np.testing.assert_array_equal(out, clip)
            # and the dataset's draw order: start, crop, flip from one rng
            rng = np.random.default_rng([9, epoch, 0])
            start = sampling.train_start(rng, 30, 5)
            frames = reader.read("A/v_big", sampling.clip_indices(start, 30, 5))
            np.testing.assert_array_equal(
                clip, reference_train(rng, frames, 24, method, transforms.PAPER_SCALES, True))
