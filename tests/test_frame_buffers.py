"""FrameFolderReader decodes into reused buffers: results equal a plain cv2.imread, and a
missing or damaged frame is still reported after the buffers held a good clip."""
import os

import cv2
import numpy as np
import pytest

from dist_train.data import readers
from dist_train.data.readers import BadSampleError, FrameFolderReader
from data_helpers import textured

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 / OpenCV 4.11 (leg 2)

PNG = "img_{:05d}.png"  # lossless: exact pixel values, e.g. corners equal to the canary


def write_video(root, video, frames):
    folder = os.path.join(root, video)
    os.makedirs(folder, exist_ok=True)
    for i, rgb in enumerate(frames):
        assert cv2.imwrite(os.path.join(folder, PNG.format(i + 1)), rgb[..., ::-1])


@pytest.fixture()
def root(tmp_path):
    root = str(tmp_path)
    write_video(root, "C/a", textured(6, 24, 32, 0))
    write_video(root, "C/b", textured(5, 24, 32, 1))
    write_video(root, "C/wide", textured(4, 20, 40, 2))
    return root


def plain(root, video, indices):
    return [cv2.imread(os.path.join(root, video, PNG.format(i + 1)))[..., ::-1] for i in indices]


def test_frames_equal_plain_decode_across_clips_and_sizes(root):
    reader = FrameFolderReader(root, PNG)
    for video, indices in [("C/a", [0, 1, 2, 3]), ("C/b", [4, 0, 0, 2, 3]), ("C/wide", [1, 2, 3, 0]),
                           ("C/a", [0, 1, 2, 3, 4, 5, 5]), ("C/b", [1])]:
        got = reader.read_frames(video, indices)
        for frame, expected in zip(got, plain(root, video, indices), strict=True):
            np.testing.assert_array_equal(frame, expected)
        np.testing.assert_array_equal(reader.read(video, indices), np.stack(plain(root, video, indices)))
    # the second clip of a size reuses the first one's buffer (both legs pin an OpenCV >= 4.10,
    # which decodes into buffers: asserted, not assumed)
    assert readers._DECODES_INTO, cv2.__version__
    first = reader.read_frames("C/a", [0, 1])
    second = reader.read_frames("C/b", [2, 3])
    assert np.shares_memory(first[0], second[0])


def test_corners_equal_to_the_canary_still_decode(root):
    frames = textured(3, 24, 32, 3)
    frames[1, 0, 0], frames[1, -1, -1] = readers._CANARY_FIRST, readers._CANARY_LAST
    write_video(root, "C/canary", frames)
    reader = FrameFolderReader(root, PNG)
    reader.read_frames("C/a", [0, 1, 2])  # buffers of this size exist now
    for got, expected in zip(reader.read_frames("C/canary", [0, 1, 2]), frames):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(reader.read("C/canary", [0, 1, 2]), frames)


@pytest.mark.parametrize("damage, reason", [("missing", "missing"), ("empty", "unreadable"),
                                            ("garbage", "unreadable"), ("truncated", "unreadable")])
def test_bad_frame_after_a_good_clip_is_reported(root, damage, reason):
    path = os.path.join(root, "C/b", PNG.format(3))
    if damage == "missing":
        os.remove(path)
    elif damage == "truncated":  # the top rows decode, then the data ends
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
    else:
        with open(path, "wb") as f:
            f.write(b"" if damage == "empty" else b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50)
    reader = FrameFolderReader(root, PNG)
    reader.read_frames("C/a", [0, 1, 2, 3])  # the buffers hold good frames of the same size
    for read in (reader.read_frames, reader.read):
        with pytest.raises(BadSampleError, match=reason) as error:
            read("C/b", [0, 1, 2, 3])
        assert path in str(error.value)


def test_frames_of_different_sizes_in_one_video_are_reported(root):
    folder = os.path.join(root, "C/a")
    os.replace(os.path.join(root, "C/wide", PNG.format(1)), os.path.join(folder, PNG.format(3)))
    reader = FrameFolderReader(root, PNG)
    for read in (reader.read_frames, reader.read):
        with pytest.raises(BadSampleError, match="frames of different sizes"):
            read("C/a", [0, 1, 2, 3])
