"""Compressed clip store (data.source: jpeg_store): JPEG frames packed into large shard files.

For datasets too large for frame folders (hundreds of millions of small files) or for the raw
uint8 store (terabytes). Reading a clip is ONE contiguous read (``os.pread``) of the byte range
from its first to its last frame, then a JPEG decode per frame; no per-frame file is opened.
Layout of a store directory::

    index.json           {"format": "dist_train.jpeg_store", "version": 1, "settings": {...},
                          "shards": {"shard_00000.jpgs": <bytes>, ...}, "num_videos", "num_frames"}
    index_videos.json    ["<list path of video 0>", ...]           (row order of the arrays)
    index_videos.npy     int64 [V, 6]: shard number, byte offset of the video in its shard,
                         first row in index_frames.npy, n_frames, height, width
    index_frames.npy     uint32 [F]: end of each frame's JPEG bytes, relative to its video's offset
    shard_00000.jpgs     the videos' JPEG frames back to back
    shard_00000.json     the shard's fragment (what preparation wrote; merged into the index)
    prepare_plan.json    settings and the planned shards (checked by resumed and sharded runs)

``index.json`` is written last (atomically): a store with it is complete. The arrays are memory
mapped, so an index of 300,000 videos loads in well under a second (benchmarks/jpeg_store.json).
Videos are addressed by their list paths. A frame is decoded exactly as ``FrameFolderReader``
decodes a JPEG file (OpenCV, RGB), so a clip equals the frame-folder reader's clip for the same
JPEG bytes. Building, merging and the preparation's failure report live in
``prepare/jpeg_store.py``.
"""
import json
import os
import re

import cv2
import numpy as np

from dist_train.data.readers import _IMREAD_RGB, BadSampleError, _in_order
from dist_train.data.store import StoreError  # one error class for both stores

FORMAT = "dist_train.jpeg_store"
VERSION = 1
INDEX_NAME = "index.json"
VIDEO_NAMES = "index_videos.json"
VIDEO_TABLE = "index_videos.npy"
FRAME_ENDS = "index_frames.npy"
SHARD_PATTERN = re.compile(r"^shard_(\d{5,})\.jpgs$")
COLUMNS = ("shard", "offset", "frame_row", "n_frames", "height", "width")
PREPARE_TOOL = "data_tools/prepare_jpeg_store.py"


def shard_name(number):
    return f"shard_{number:05d}.jpgs"


def decode_jpeg(data):
    """JPEG bytes (a uint8 array or bytes) -> uint8 RGB [H, W, 3], or None if they do not decode.

    The same OpenCV decode as ``readers.read_rgb_image`` (grey images become three channels).
    """
    buffer = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    if _IMREAD_RGB is not None:
        return cv2.imdecode(buffer, _IMREAD_RGB)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _load_json(path, what):
    if not os.path.isfile(path):
        raise StoreError(f"{path}: missing; the store is incomplete: run {PREPARE_TOOL} (it "
                         f"resumes), or its 'merge' step after sharded runs")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreError(f"{path}: unreadable {what} ({error}); re-run the 'merge' step of "
                         f"{PREPARE_TOOL}") from error


def load_index(store_dir):
    """(index dict, video names, video table [V, 6] int64, frame ends uint32 memory map).

    Checks the format, the shapes and that every shard file has the recorded size.
    """
    path = os.path.join(store_dir, INDEX_NAME)
    index = _load_json(path, "index")
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise StoreError(f"{path}: not a compressed clip store index (format != {FORMAT!r})")
    if index.get("version") != VERSION:
        raise StoreError(f"{path}: store version {index.get('version')!r}, this code reads "
                         f"{VERSION}; rebuild it with {PREPARE_TOOL}")
    names = _load_json(os.path.join(store_dir, VIDEO_NAMES), "video list")
    try:
        table = np.load(os.path.join(store_dir, VIDEO_TABLE))
        # A plain ndarray view of the map: slicing a np.memmap subclass costs more per call.
        ends = np.asarray(np.load(os.path.join(store_dir, FRAME_ENDS), mmap_mode="r"))
    except (OSError, ValueError) as error:
        raise StoreError(f"{store_dir}: index arrays unreadable ({error}); re-run the 'merge' "
                         f"step of {PREPARE_TOOL}") from error
    if (table.ndim != 2 or table.shape != (len(names), len(COLUMNS))
            or len(names) != index.get("num_videos") or len(ends) != index.get("num_frames")
            or ends.dtype != np.uint32 or table.dtype != np.int64):
        raise StoreError(f"{store_dir}: index files disagree (videos {len(names)}, table "
                         f"{table.shape} {table.dtype}, frames {ends.shape} {ends.dtype}); "
                         f"re-run the 'merge' step of {PREPARE_TOOL}")
    for name, size in index["shards"].items():
        shard = os.path.join(store_dir, name)
        actual = os.path.getsize(shard) if os.path.isfile(shard) else None
        if actual != size:
            raise StoreError(f"{shard}: {'missing' if actual is None else f'{actual} bytes'}, "
                             f"the index says {size} bytes; re-run {PREPARE_TOOL} (it redoes "
                             f"shards without a fragment) and its 'merge' step")
    return index, names, table, ends


class JpegStoreReader:
    """Same interface as FrameFolderReader: ``read_frames(video, indices)`` -> list of uint8 RGB
    ``[H, W, 3]`` frames (repeats share one array), ``read`` -> stacked ``[T, H, W, 3]``.

    Shard files are opened lazily in the process that reads (a forked loader worker opens its
    own), at most ``max_open_files`` at a time (a large dataset has more shards than a
    process's default limit of 1,024 descriptors), and are not pickled.
    """

    max_open_files = 128

    def __init__(self, store_dir):
        if not store_dir:
            raise StoreError(f"data.source 'jpeg_store' needs data.root = the store directory "
                             f"built by {PREPARE_TOOL}")
        self.root = store_dir
        index, names, table, self._ends = load_index(store_dir)
        self.settings = index.get("settings", {})
        self._rows = {name: row for row, name in enumerate(names)}
        self._table = table
        self._shard_names = {int(SHARD_PATTERN.match(name).group(1)): name
                             for name in index["shards"]}
        self._fds, self._pid = {}, os.getpid()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fds"], state["_pid"] = {}, None
        return state

    def __len__(self):
        return len(self._rows)

    def close(self):
        """Close this process's shard files (they reopen on the next read)."""
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}

    def __del__(self):
        try:
            self.close()
        except (OSError, AttributeError, TypeError):
            pass  # interpreter shutdown: nothing left to release

    def _fd(self, shard):
        if self._pid != os.getpid():  # after fork: the parent's descriptors are not ours
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            if len(self._fds) >= self.max_open_files:  # close the least recently opened
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = self._fds[shard] = os.open(os.path.join(self.root, self._shard_names[shard]),
                                            os.O_RDONLY)
        return fd

    def _entry(self, video):
        """[shard, offset, frame_row, n_frames, height, width] of a video (Python ints)."""
        row = self._rows.get(video)
        if row is None:
            raise BadSampleError(os.path.join(self.root, video),
                                 f"video not in the store index ({len(self._rows)} videos); "
                                 f"prepare it with {PREPARE_TOOL} (failed videos are listed "
                                 f"in its prepare_report.json)")
        return self._table[row].tolist()

    def num_frames(self, video):
        return self._entry(video)[3]

    def frame_size(self, video):
        """(height, width) of a video's frames, from the index (no read)."""
        return tuple(self._entry(video)[4:])

    def frame_bytes(self, video):
        """Every frame's JPEG bytes of a video, in order (one read)."""
        entry = self._entry(video)
        data, bounds = self._read_range(video, entry, 0, entry[3] - 1)
        return [data[bounds[i]:bounds[i + 1]] for i in range(entry[3])]

    def _read_range(self, video, entry, first, last):
        """Bytes of frames first..last (ONE pread) and the frames' bounds within them: frame
        first + j is ``data[bounds[j]:bounds[j + 1]]``."""
        shard, offset, frame_row, n = entry[:4]
        if first < 0 or last >= n:
            raise BadSampleError(os.path.join(self.root, video),
                                 f"frame {last + 1} requested, the store holds {n} (the list's "
                                 f"frame count is too large?)")
        if first:
            ends = self._ends[frame_row + first - 1:frame_row + last + 1].tolist()
        else:
            ends = [0] + self._ends[frame_row:frame_row + last + 1].tolist()
        begin = ends[0]
        size = ends[-1] - begin
        data = os.pread(self._fd(shard), size, offset + begin)
        if len(data) != size:
            raise BadSampleError(os.path.join(self.root, self._shard_names[shard]),
                                 f"short read for {video} ({len(data)} of {size} bytes): the "
                                 f"shard is truncated; rebuild the store")
        return data, [end - begin for end in ends]

    def read_frames(self, video, indices):
        unique = sorted(set(indices))
        entry = self._entry(video)
        data, bounds = self._read_range(video, entry, unique[0], unique[-1])
        buffer = np.frombuffer(data, np.uint8)
        shape = (entry[4], entry[5], 3)
        frames = {}
        for i in unique:
            j = i - unique[0]
            image = decode_jpeg(buffer[bounds[j]:bounds[j + 1]])
            if image is None or image.shape != shape:
                what = "does not decode" if image is None else f"decodes to {image.shape}"
                raise BadSampleError(os.path.join(self.root, video),
                                     f"frame {i + 1} {what} (the index says {shape}); the store "
                                     f"is damaged: rebuild it")
            frames[i] = image
        return _in_order(frames, indices, os.path.join(self.root, video))

    def read(self, video, indices):
        return np.stack(self.read_frames(video, indices))
