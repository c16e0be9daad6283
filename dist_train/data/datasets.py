"""Clip datasets over a clip list and a reader (CONTRACTS.md, Data).

- ``TrainClipDataset[(epoch, index)] -> (clip, label)``. All randomness of a sample comes from
  ``numpy.random.default_rng([seed, epoch, index])``, drawn in this order: temporal start, crop,
  flip. It never depends on rank, worker or process state.
- ``EvalClipDataset[i] -> (clip, label, video_index, clip_index)``: ``i`` enumerates
  (video, clip, crop) in that nesting; ``video_clip_ranges[v] = (begin, end)`` are the items of
  video v, so evaluation can shard whole videos. ``clip_index = clip * num_crops + crop``.
- ``clip`` is uint8 RGB ``[3, T, H, W]``; conversion to float happens in the model.

Bad samples: by default a ``BadSampleError`` naming the file propagates. With
``skip_bad_samples=True`` a training sample is replaced by the next index (same epoch, its own
draws), an evaluation clip by the next clip of the same video (so video-level averaging stays
correct); each replacement is counted in ``bad_sample_count``, shared with loader workers
(forked processes), and logged with the path.

``get_into(key, out)`` writes the clip into a caller's uint8 buffer (a loader's shared batch
slot) instead of a new array and returns the other fields; the clip is the same as ``ds[key]``'s.

The plain classes need no Paddle: ``paddle.io.DataLoader(dataset, batch_sampler=...)`` accepts
them, passes tuple keys through unchanged (0 and N workers) and its default collate stacks the
items into tensors (clip uint8, label int64).
"""
import logging
import multiprocessing
import os

import numpy as np

from dist_train.data import sampling, transforms
from dist_train.data.readers import BadSampleError, decode_video

log = logging.getLogger(__name__)


class _BadSampleCounter:
    """A counter visible across forked DataLoader workers (multiprocessing shared memory)."""

    def __init__(self):
        self._value = multiprocessing.Value("q", 0)

    def add(self):
        with self._value.get_lock():
            self._value.value += 1

    @property
    def value(self):
        return self._value.value

    def reset(self):
        with self._value.get_lock():
            count, self._value.value = self._value.value, 0
        return count


class _ListDataset:
    def __init__(self, entries, reader, clip_len, stride, skip_bad_samples):
        if not entries:
            raise ValueError("empty clip list")
        self.entries = list(entries)
        self.reader = reader
        self.clip_len = int(clip_len)
        self.stride = int(stride)
        self.skip_bad_samples = bool(skip_bad_samples)
        self._bad = _BadSampleCounter()

    def _read(self, video, indices):
        # A reader's read_frames (frame list, not stacked) is cheaper for decoded frames.
        read = getattr(self.reader, "read_frames", None) or self.reader.read
        return read(video, indices)

    @property
    def clip_layout(self):
        """(shape, dtype) of every clip: what a loader sizes its buffers by."""
        return (3, self.clip_len, self.crop_size, self.crop_size), np.uint8

    @property
    def labels(self):
        return [e.label for e in self.entries]

    @property
    def video_names(self):
        return [e.video for e in self.entries]

    @property
    def num_videos(self):
        return len(self.entries)

    @property
    def bad_sample_count(self):
        """Bad samples replaced since the last reset (all processes)."""
        return self._bad.value

    def reset_bad_sample_count(self):
        """Return the count and set it to zero (call once per epoch)."""
        return self._bad.reset()

    def _replace_or_raise(self, error, what):
        if not self.skip_bad_samples:
            raise error
        self._bad.add()
        log.warning("bad sample replaced (%s): %s", what, error)


class TrainClipDataset(_ListDataset):
    def __init__(self, entries, reader, clip_len, crop_size, seed, stride=1,
                 train_crop="multiscale_corner", scales=transforms.PAPER_SCALES, hflip=True,
                 skip_bad_samples=False):
        super().__init__(entries, reader, clip_len, stride, skip_bad_samples)
        self.crop_size = int(crop_size)
        self.seed = int(seed)
        self.train_crop = train_crop
        self.scales = tuple(scales)
        self.hflip = bool(hflip)
        if train_crop == "random":
            self._check_frame_sizes()

    def _check_frame_sizes(self):
        """A store knows every frame size: refuse a too large 'random' crop before training."""
        frame_size = getattr(self.reader, "frame_size", None)
        if frame_size is None:
            return  # frame folders and videos: checked per clip
        for entry in self.entries:
            try:
                height, width = frame_size(entry.video)
            except BadSampleError:
                continue  # reported (or skipped) when the sample is read
            transforms.check_random_crop_fits(height, width, self.crop_size,
                                              self._source(entry))

    def _source(self, entry):
        root = getattr(self.reader, "root", None)
        return os.path.join(root, entry.video) if root else entry.video

    def __len__(self):
        return len(self.entries)

    def load(self, epoch, index, out=None):
        """The sample (clip, label) for this key, without bad-sample replacement; the clip is
        written into ``out`` when given."""
        entry = self.entries[index]
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        start = sampling.train_start(rng, entry.num_frames, self.clip_len, self.stride)
        indices = sampling.clip_indices(start, entry.num_frames, self.clip_len, self.stride)
        frames = self._read(entry.video, indices)
        clip = transforms.train_transform(rng, frames, self.crop_size, self.train_crop,
                                          self.scales, self.hflip, out, self._source(entry))
        return clip, entry.label

    def get_into(self, key, out):
        """Write the clip of ``ds[key]`` into ``out``; return the other fields (label,)."""
        return self._get(key, out)[1:]

    def __getitem__(self, key):
        return self._get(key, None)

    def _get(self, key, out):
        epoch, index = key
        for step in range(len(self.entries)):
            candidate = (int(index) + step) % len(self.entries)
            try:
                return self.load(epoch, candidate, out)
            except BadSampleError as error:
                self._replace_or_raise(error, f"epoch {epoch} index {candidate}")
        raise RuntimeError("every sample of the training list is unreadable")


def eval_clip_starts(num_frames, clip_len, stride, mode, val_clips, protocol="paper"):
    if mode == "val":
        return sampling.val_starts(num_frames, clip_len, val_clips, stride)
    if mode == "test":
        return sampling.test_clip_starts(num_frames, clip_len, stride, protocol)
    raise ValueError(f"eval mode must be 'val' or 'test', got {mode!r}")


class EvalClipDataset(_ListDataset):
    def __init__(self, entries, reader, clip_len, crop_size, mode="val", val_clips=3,
                 stride=1, short_side=None, num_crops=1, skip_bad_samples=False,
                 protocol="paper"):
        super().__init__(entries, reader, clip_len, stride, skip_bad_samples)
        self.mode = mode
        self.protocol = protocol  # test mode: which clips (sampling.TEST_PROTOCOLS)
        self.crop_size = int(crop_size)
        self.short_side = int(short_side or crop_size)
        self.num_crops = int(num_crops)
        if self.num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        self.starts = [eval_clip_starts(e.num_frames, self.clip_len, self.stride, mode, val_clips,
                                        protocol) for e in self.entries]
        self.video_clip_ranges = []
        self._items = []  # (video, clip) per item index, crops innermost
        for video, starts in enumerate(self.starts):
            begin = len(self._items)
            self._items.extend((video, clip, crop) for clip in range(len(starts))
                               for crop in range(self.num_crops))
            self.video_clip_ranges.append((begin, len(self._items)))
        self._cache_key, self._cache = None, None

    def __len__(self):
        return len(self._items)

    def _crops(self, video, clip):
        # The crops of one clip share its frames: read them once (per process).
        if self._cache_key != (video, clip):
            entry = self.entries[video]
            indices = sampling.clip_indices(self.starts[video][clip], entry.num_frames,
                                            self.clip_len, self.stride)
            frames = self._read(entry.video, indices)
            self._cache = transforms.eval_clips(frames, self.short_side, self.crop_size,
                                                self.num_crops)
            self._cache_key = (video, clip)
        return self._cache

    def load(self, index, out=None):
        video, clip, crop = self._items[index]
        cached = self._crops(video, clip)[crop]
        if out is None:
            clip_array = cached.copy()  # the cache is reused for the next crop
        else:
            if out.shape != cached.shape or out.dtype != cached.dtype:
                raise ValueError(f"output buffer is {out.shape} {out.dtype}, the clip is "
                                 f"{cached.shape} {cached.dtype}")
            np.copyto(out, cached)
            clip_array = out
        return clip_array, self.entries[video].label, video, clip * self.num_crops + crop

    def get_into(self, index, out):
        """Write the clip of ``ds[index]`` into ``out``; return (label, video, clip_index)."""
        return self._get(index, out)[1:]

    def __getitem__(self, index):
        return self._get(index, None)

    def _get(self, index, out):
        index = int(index)
        video = self._items[index][0]
        begin, end = self.video_clip_ranges[video]
        for step in range(end - begin):
            candidate = begin + (index - begin + step) % (end - begin)
            try:
                return self.load(candidate, out)
            except BadSampleError as error:
                self._replace_or_raise(error, f"item {candidate} of video {video}")
        raise BadSampleError(self.entries[video].video, "no clip of this video is readable")


def sample_video_test_clips(path, clip_len, crop_size, short_side=None, stride=1, num_crops=1,
                            protocol="paper"):
    """All test clips of ONE raw video file: uint8 [num_clips * num_crops, 3, T, H, W].

    Same sampling and crops as ``EvalClipDataset(mode='test')`` (clip-major, crops innermost),
    on frames decoded and counted from the file. Holds every decoded frame: long videos go
    through ``data.video_stream`` (same clips, one pass, bounded memory).
    """
    frames = decode_video(path)
    short_side = int(short_side or crop_size)
    clips = []
    for start in sampling.test_clip_starts(len(frames), clip_len, stride, protocol):
        indices = sampling.clip_indices(start, len(frames), clip_len, stride)
        clips.extend(transforms.eval_clips(frames[indices], short_side, crop_size, num_crops))
    return np.stack(clips)
