"""The test clips of one raw video, decoded once and in order, in bounded memory (prediction).

``iter_test_clips`` yields the clips of ``EvalClipDataset(mode='test')`` and of
``sample_video_test_clips`` (non-overlapping clips from frame 0, the last one loop-padded inside
its own frames; 1 or 3 crops, clip-major) for a video of any length. Frames are decoded one by
one (``grab``); only a frame some clip samples is converted (``retrieve``) and resized to the
short side as it arrives, and only the current clip's small frames are kept. Memory: one source
frame plus the decoder's own buffers and ``clip_len`` small frames, whatever the length. The
frame count is the decoded one, as for ``decode_video``; the container's frame count and frame
rate are never used. Under eval.protocol '10x3' (10 evenly spaced clips, whose starts depend on
the frame count) a grab-only pass counts the frames first, then one pass cuts the clips, keeping
each sampled frame until the last clip using it is cut.

Each clip carries the decoder's timestamps (``CAP_PROP_POS_MSEC``: a frame's presentation time
from the start of the stream) of its first and last frame, right for variable-frame-rate video.
The BGR frame is resized and then converted to RGB: bit-identical to converting first (bilinear
resize treats the channels alike) and a full-resolution conversion cheaper.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2

from dist_train.data import sampling, transforms
from dist_train.data.readers import BadSampleError, count_decoded_frames, open_video


@dataclass
class StreamTimings:
    """Seconds per stage, summed over the videos streamed with this object."""
    decode: float = 0.0  # grab + retrieve: the codec and OpenCV's conversion to BGR
    resize: float = 0.0  # short-side resize and BGR -> RGB of the sampled frames
    crop: float = 0.0    # cutting the crops into [3, T, S, S] clips
    frames: int = 0      # frames decoded


@dataclass
class StreamClip:
    index: int           # clip number in the video, from 0
    first_frame: int     # 0-based decoded index of the clip's first frame
    last_frame: int      # ... of its last sampled frame (loop padding repeats earlier ones)
    start: float         # decoder timestamp of the first frame, seconds
    end: float           # decoder timestamp of the last frame, seconds
    crops: list = field(repr=False)  # num_crops uint8 [3, T, S, S] (start, centre, end)


def iter_test_clips(path, clip_len, crop_size, short_side=None, stride=1, num_crops=1,
                    timings: StreamTimings | None = None, protocol="paper"):
    """Yield every ``StreamClip`` of the video at ``path`` in order: the clips of evaluation
    protocol ``protocol`` (data/sampling.py; 'paper' is the one pass described above, the
    others go through ``_iter_clips_at``).

    Raises ``BadSampleError`` naming the file when it cannot be opened, no frame decodes or a
    sampled frame does not convert.
    """
    short_side = int(short_side or crop_size)
    if crop_size > short_side:
        raise ValueError(f"crop size {crop_size} is larger than the short side {short_side}")
    timings = StreamTimings() if timings is None else timings
    if protocol != "paper":
        yield from _iter_clips_at(path, clip_len, crop_size, short_side, stride, num_crops,
                                  timings, protocol)
        return
    span, last_offset = clip_len * stride, (clip_len - 1) * stride
    capture = open_video(path)
    frames, times, start, index, source = [], [], 0, 0, None
    try:
        while True:
            tick = time.perf_counter()
            if not capture.grab():
                timings.decode += time.perf_counter() - tick
                break
            offset = index - start
            if offset % stride == 0 and offset <= last_offset:
                ok, source = capture.retrieve(source)  # into the previous source frame's memory
                tock = time.perf_counter()
                timings.decode += tock - tick
                if not ok:
                    raise BadSampleError(path, f"frame {index + 1} does not decode")
                times.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
                small = transforms.resize_short_side([source], short_side)[0]
                frames.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
                timings.resize += time.perf_counter() - tock
            else:
                timings.decode += time.perf_counter() - tick
            index += 1
            if offset == last_offset:  # every frame of this clip has arrived
                yield _clip(start, stride, frames, times, clip_len, short_side, crop_size,
                            num_crops, timings)
                frames, times = [], []
            if offset == span - 1:
                start += span
    finally:
        capture.release()
        timings.frames += index
    if index == 0:
        raise BadSampleError(path, "no decodable frames")
    if frames:  # the video ended inside this clip: loop-padded with its own frames
        yield _clip(start, stride, frames, times, clip_len, short_side, crop_size, num_crops,
                    timings)


def _clip(start, stride, frames, times, clip_len, short_side, crop_size, num_crops, timings):
    tick = time.perf_counter()
    looped = [frames[k] for k in sampling.loop_pad(list(range(len(frames))), clip_len)]
    # The frames already have the short side: eval_clips only cuts the crops.
    crops = transforms.eval_clips(looped, short_side, crop_size, num_crops)
    timings.crop += time.perf_counter() - tick
    return StreamClip(index=start // (clip_len * stride), first_frame=start,
                      last_frame=start + (len(frames) - 1) * stride, start=times[0],
                      end=times[-1], crops=crops)


def _iter_clips_at(path, clip_len, crop_size, short_side, stride, num_crops, timings, protocol):
    """The clips of a protocol whose starts depend on the frame count (10x3: evenly spaced,
    possibly overlapping): a grab-only pass counts the decoded frames, then one decoding pass
    keeps each sampled frame (resized) until the last clip using it has been cut."""
    tick = time.perf_counter()
    num_frames = count_decoded_frames(path)
    timings.decode += time.perf_counter() - tick
    if num_frames == 0:
        raise BadSampleError(path, "no decodable frames")
    clips = [sampling.clip_indices(start, num_frames, clip_len, stride)
             for start in sampling.test_clip_starts(num_frames, clip_len, stride, protocol)]
    last_use = {}
    for number, indices in enumerate(clips):
        for i in indices:
            last_use[i] = number
    kept, times, next_clip, index, source = {}, {}, 0, 0, None
    capture = open_video(path)
    try:
        while next_clip < len(clips) and index < num_frames:
            tick = time.perf_counter()
            if not capture.grab():
                break
            if index in last_use:
                ok, source = capture.retrieve(source)
                tock = time.perf_counter()
                timings.decode += tock - tick
                if not ok:
                    raise BadSampleError(path, f"frame {index + 1} does not decode")
                times[index] = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                small = transforms.resize_short_side([source], short_side)[0]
                kept[index] = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
                timings.resize += time.perf_counter() - tock
            else:
                timings.decode += time.perf_counter() - tick
            while next_clip < len(clips) and max(clips[next_clip]) <= index:
                indices = clips[next_clip]
                tick = time.perf_counter()
                crops = transforms.eval_clips([kept[i] for i in indices], short_side, crop_size,
                                              num_crops)
                timings.crop += time.perf_counter() - tick
                yield StreamClip(index=next_clip, first_frame=indices[0],
                                 last_frame=max(indices), start=times[indices[0]],
                                 end=times[max(indices)], crops=crops)
                for i in set(indices):
                    if last_use[i] == next_clip:
                        del kept[i]
                next_clip += 1
            index += 1
    finally:
        capture.release()
        timings.frames += index
    if next_clip < len(clips):
        raise BadSampleError(path, f"decoded {index} frames on the second pass, {num_frames} on "
                             "the first")
