"""Streaming test clips of a raw video (data/video_stream.py): the same clips as decoding the
whole video first, frames counted as decoded, clip times from the decoder's timestamps."""
import cv2
import numpy as np
import pytest

from data_helpers import stamped_frame, write_avi, write_vfr_mkv
from dist_train.data import sampling
from dist_train.data.datasets import sample_video_test_clips
from dist_train.data.readers import BadSampleError
from dist_train.data.video_stream import StreamTimings, iter_test_clips

# Cheap, and leg 2 brings another OpenCV (4.11): the bit-equality must hold there too.
pytestmark = pytest.mark.paddle2


@pytest.mark.parametrize("height, width, length", [(48, 64, 37), (64, 48, 24), (40, 40, 5)])
def test_stream_clips_equal_the_whole_video_clips(tmp_path, height, width, length):
    """Bit-identical to sample_video_test_clips (decode all, then cut): resized and not
    (short side 40 / 32), strides 1-3, 1 and 3 crops, a video shorter than a clip, one ending
    on a clip boundary (24 = 3 x 8) and one inside a clip's stride gap."""
    rng = np.random.default_rng(length)
    path = str(tmp_path / "v.avi")
    write_avi(path, rng.integers(0, 256, (length, height, width, 3), dtype=np.uint8))
    for stride in (1, 2, 3):
        for crops in (1, 3):
            for short_side in (32, 40):
                expected = sample_video_test_clips(path, 8, 32, short_side, stride, crops)
                timings = StreamTimings()
                clips = list(iter_test_clips(path, 8, 32, short_side, stride, crops, timings))
                got = np.stack([c for clip in clips for c in clip.crops])
                assert got.dtype == np.uint8 and got.shape == expected.shape
                assert np.array_equal(got, expected), (stride, crops, short_side)
                starts = sampling.test_starts(length, 8, stride)
                assert [c.index for c in clips] == list(range(len(starts)))
                assert [c.first_frame for c in clips] == starts
                assert [c.last_frame for c in clips] == [
                    max(sampling.clip_indices(s, length, 8, stride)) for s in starts]
                assert timings.frames == length


def test_frames_are_sampled_in_order_and_loop_padded(tmp_path):
    path = str(tmp_path / "stamped.avi")
    write_avi(path, [stamped_frame(i, 32, 40) for i in range(21)])
    clips = list(iter_test_clips(path, 4, 32, stride=3))
    stamps = [[int(round(float(c.crops[0][0, t].mean()) / 5)) - 1 for t in range(4)]
              for c in clips]
    assert stamps == [[0, 3, 6, 9], [12, 15, 18, 12]]  # 21 frames: the second clip is looped


def test_clip_times_are_the_decoders_timestamps_not_index_over_fps(tmp_path):
    """Variable frame rate: the container says 25 fps, frames are shown at irregular times."""
    pts = [0, 1, 2, 5, 6, 10, 11, 12, 20, 21, 30, 31, 32]
    path = str(tmp_path / "vfr.mkv")
    write_vfr_mkv(path, [stamped_frame(i, 32, 40) for i in range(len(pts))], pts, fps=25)
    capture = cv2.VideoCapture(path)
    assert capture.get(cv2.CAP_PROP_FPS) == 25
    capture.release()
    clips = list(iter_test_clips(path, 4, 32))
    assert [(c.first_frame, c.last_frame) for c in clips] == [(0, 3), (4, 7), (8, 11), (12, 12)]
    expected = [t / 25 for c in clips for t in (pts[c.first_frame], pts[c.last_frame])]
    assert [t for c in clips for t in (c.start, c.end)] == pytest.approx(expected, abs=1e-6)
    assert clips[1].start == pytest.approx(0.24) and clips[2].end == pytest.approx(1.24)


def test_unreadable_videos_name_the_file(tmp_path):
    empty, garbage = tmp_path / "empty.avi", tmp_path / "garbage.avi"
    empty.write_bytes(b"")
    garbage.write_bytes(b"not a video" * 100)
    for path in (empty, garbage, tmp_path / "missing.avi"):
        with pytest.raises(BadSampleError, match=path.name):
            list(iter_test_clips(str(path), 4, 32))


def test_video_reader_goes_on_from_the_previous_clip_and_reopens_when_it_must(tmp_path,
                                                                              monkeypatch):
    """Clips read in order decode each frame once; a clip before the position, or a file
    rewritten since, reopens the file (right frames, not stale ones)."""
    from dist_train.data.readers import VideoReader

    opened = []
    real_capture = cv2.VideoCapture

    def counting_capture(path, *args):
        opened.append(path)
        return real_capture(path, *args)

    monkeypatch.setattr(cv2, "VideoCapture", counting_capture)
    write_avi(str(tmp_path / "A" / "v.avi"), [stamped_frame(i, 32, 40) for i in range(20)])
    reader = VideoReader(str(tmp_path))

    def stamps(indices):
        return [int(round(float(f[..., 0].mean()) / 5)) - 1
                for f in reader.read_frames("A/v", indices)]

    assert stamps([0, 1, 2, 3]) == [0, 1, 2, 3]
    assert stamps([4, 6, 4]) == [4, 6, 4] and len(opened) == 1  # went on
    assert stamps([2, 3]) == [2, 3] and len(opened) == 2          # behind: reopened
    write_avi(str(tmp_path / "A" / "v.avi"), [stamped_frame(i + 10, 32, 40) for i in range(21)])
    assert stamps([5, 20]) == [15, 30] and len(opened) == 3      # rewritten: reopened
    with pytest.raises(BadSampleError, match="only 21 frames decode"):
        stamps([21])
