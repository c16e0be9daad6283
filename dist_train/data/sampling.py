"""Temporal sampling: which 0-based frame indices form a clip (REFERENCE §1).

A clip of ``clip_len`` T frames with temporal stride s spans T*s frames: start, start+s, ...
Indices that would fall at or beyond the end of the video are dropped and the remaining ones
are repeated cyclically until there are T of them ("loop padding", as the reference does for
short videos and for the last test clip).
"""
import math


def loop_pad(indices, length):
    """Repeat ``indices`` cyclically to ``length`` items: [0,1,2] -> [0,1,2,0,1] for 5."""
    if not indices:
        raise ValueError("cannot loop-pad an empty index list")
    return [indices[k % len(indices)] for k in range(length)]


def clip_indices(start, num_frames, clip_len, stride=1):
    """Frame indices of the clip starting at ``start``, loop-padded inside its own frames."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not 0 <= start < num_frames:
        raise ValueError(f"clip start {start} outside a video of {num_frames} frames")
    indices = list(range(start, min(start + clip_len * stride, num_frames), stride))
    return loop_pad(indices, clip_len)


def max_start(num_frames, clip_len, stride=1):
    """Last start at which a whole clip fits (0 when the video is shorter than a clip)."""
    return max(0, num_frames - clip_len * stride)


def train_start(rng, num_frames, clip_len, stride=1):
    """Uniform random start in [0, max_start] (one rng draw)."""
    return int(rng.integers(0, max_start(num_frames, clip_len, stride) + 1))


def val_starts(num_frames, clip_len, num_clips, stride=1):
    """K evenly spaced starts: round(i * (n - span) / (K - 1)); one centred clip when K = 1.

    Python's round() is used as written in the contract (halves round to even).
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    last = max_start(num_frames, clip_len, stride)
    if num_clips == 1:
        return [last // 2]
    return [round(i * last / (num_clips - 1)) for i in range(num_clips)]


def test_starts(num_frames, clip_len, stride=1):
    """Non-overlapping clips covering the whole video: 0, span, 2*span, ... below n."""
    span = clip_len * stride
    return list(range(0, num_frames, span))


def num_test_clips(num_frames, clip_len, stride=1):
    return math.ceil(num_frames / (clip_len * stride))


# Video-level evaluation protocols: "paper" cuts every video into non-overlapping clips (Hara et
# al.; the crop count is data.test_crops); "10x3" takes 10 evenly spaced clips with 3 crops each
# (the protocol most later Kinetics results use).
TEST_PROTOCOLS = ("paper", "10x3")
TEN_CLIPS, THREE_CROPS = 10, 3


def test_clip_starts(num_frames, clip_len, stride=1, protocol="paper"):
    """Clip starts of video-level evaluation under ``protocol`` (see TEST_PROTOCOLS)."""
    if protocol == "paper":
        return test_starts(num_frames, clip_len, stride)
    if protocol == "10x3":
        return val_starts(num_frames, clip_len, TEN_CLIPS, stride)
    raise ValueError(f"unknown evaluation protocol {protocol!r}; use one of {', '.join(TEST_PROTOCOLS)}")


def test_protocol_crops(protocol, paper_crops):
    """Spatial crops per clip under ``protocol``: ``paper_crops`` for paper, 3 for 10x3."""
    if protocol not in TEST_PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; use one of {', '.join(TEST_PROTOCOLS)}")
    return THREE_CROPS if protocol == "10x3" else int(paper_crops)
