"""Packed uint8 clip store: decoded frames in memory-mappable shard files plus a JSON index.

Layout of a store directory::

    index.json          {"format": "dist_train.packed_store", "version": 1, "short_side": 128,
                         "source": {...}, "shards": {"shard_00000.u8": <bytes>, ...},
                         "videos": {"<Class>/<video>": {"shard", "offset", "n_frames",
                                                        "height", "width", "crc32"}}}
    shard_00000.u8      raw bytes: the videos' uint8 RGB frames [n_frames, H, W, 3], back to back

Reading a clip is slicing a memory map (no decoding): this module (index + reader). Building
and verifying live in ``prepare/pack_store.py``. Building is parallel (one shard per task
and process), atomic (a shard is written under a temporary name and renamed when complete; the
index is rewritten atomically after every finished shard) and resumable (videos already in the
index are skipped; shard files the index does not know are leftovers of a crash and removed).

Resizing uses ``transforms.resize_short_side``, the same code as the evaluation path, so:

- a store built from frame folders WITHOUT resizing (``short_side`` None or equal to the frames'
  short side) gives bit-identical clips to ``FrameFolderReader`` for every draw (train and eval);
- a store built from raw videos without resizing equals ``VideoReader`` bit for bit;
- a store resized to S gives bit-identical *evaluation* clips whenever data.eval_short_side == S
  (the eval path resizes to S with the same function; resizing an S-sided frame is a no-op), but
  training crops differ from the unresized source (they are cut before, not after, resizing).
"""
import json
import os
import re

import numpy as np

from dist_train.atomic import atomic_write_text
from dist_train.data.lists import DataError
from dist_train.data.readers import BadSampleError

FORMAT = "dist_train.packed_store"
VERSION = 1
INDEX_NAME = "index.json"
SHARD_PATTERN = re.compile(r"^shard_(\d{5,})\.u8$")
ENTRY_KEYS = ("shard", "offset", "n_frames", "height", "width", "crc32")


class StoreError(DataError):
    """A damaged or inconsistent store; the message names the file and what to do."""


# ----------------------------------------------------------------------------- index

def load_index(store_dir):
    """Read and validate ``<store_dir>/index.json`` (raises StoreError naming the file)."""
    path = os.path.join(store_dir, INDEX_NAME)
    if not os.path.isfile(path):
        raise StoreError(f"{path}: missing; build the store with data_tools/pack_clips.py")
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreError(f"{path}: unreadable or corrupt index ({error}); delete it and re-run "
                         f"data_tools/pack_clips.py") from error
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise StoreError(f"{path}: not a packed clip store index (format field != {FORMAT!r})")
    if index.get("version") != VERSION:
        raise StoreError(f"{path}: store version {index.get('version')!r}, this code reads "
                         f"{VERSION}; rebuild with data_tools/pack_clips.py")
    shards, videos = index.get("shards"), index.get("videos")
    if not isinstance(shards, dict) or not isinstance(videos, dict):
        raise StoreError(f"{path}: 'shards' and 'videos' must be objects")
    for video, entry in videos.items():
        if not isinstance(entry, dict) or any(k not in entry for k in ENTRY_KEYS):
            raise StoreError(f"{path}: entry of video {video!r} lacks one of {ENTRY_KEYS}")
        if entry["shard"] not in shards:
            raise StoreError(f"{path}: video {video!r} points to unknown shard {entry['shard']!r}")
        end = entry["offset"] + video_nbytes(entry)
        if entry["offset"] < 0 or end > shards[entry["shard"]]:
            raise StoreError(f"{path}: video {video!r} lies outside its shard {entry['shard']}")
    return index


def video_nbytes(entry):
    return entry["n_frames"] * entry["height"] * entry["width"] * 3


def check_shard_sizes(store_dir, index):
    """Every shard exists with the size the index records (cheap: stat only)."""
    for name, size in index["shards"].items():
        path = os.path.join(store_dir, name)
        if not os.path.isfile(path):
            raise StoreError(f"{path}: shard file missing; re-run data_tools/pack_clips.py "
                             f"after deleting {os.path.join(store_dir, INDEX_NAME)}")
        actual = os.path.getsize(path)
        if actual != size:
            raise StoreError(f"{path}: shard is {actual} bytes, the index says {size} "
                             f"(truncated or overwritten); rebuild the store")


def _new_index(short_side, source):
    return {"format": FORMAT, "version": VERSION, "short_side": short_side, "source": source,
            "shards": {}, "videos": {}, "failed": {}}


def _write_index(store_dir, index):
    atomic_write_text(os.path.join(store_dir, INDEX_NAME), json.dumps(index, sort_keys=True))


# ----------------------------------------------------------------------------- reader

class PackedStoreReader:
    """Same interface as FrameFolderReader / VideoReader: ``read(video, indices)`` returns the
    0-based frames as one uint8 RGB array ``[T, H, W, 3]`` sliced from a memory map: a
    read-only view (no copy) when the indices are evenly spaced, a copy otherwise (loop padding).

    The index is read once; shard memory maps are opened lazily in the process that reads (after
    a fork, a DataLoader worker opens its own), and are not pickled.
    """

    def __init__(self, store_dir):
        if not store_dir:
            raise StoreError("data.source 'packed' needs data.root = the store directory built "
                             "by data_tools/pack_clips.py")
        self.root = store_dir
        index = load_index(store_dir)
        check_shard_sizes(store_dir, index)
        self.short_side = index["short_side"]
        self.shards = dict(index["shards"])
        self.videos = {video: (e["shard"], e["offset"], e["n_frames"], e["height"], e["width"])
                       for video, e in index["videos"].items()}
        self._maps, self._pid = {}, os.getpid()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_maps"], state["_pid"] = {}, None
        return state

    def close(self):
        """Drop the memory maps of this process (they reopen on the next read)."""
        self._maps = {}

    def _shard(self, name):
        if self._pid != os.getpid():
            self._maps, self._pid = {}, os.getpid()
        shard = self._maps.get(name)
        if shard is None:
            path = os.path.join(self.root, name)
            if os.path.getsize(path) != self.shards[name]:
                raise StoreError(f"{path}: shard size changed since the index was read "
                                 f"(truncated?); rebuild the store")
            # A plain ndarray view of the map: slicing a np.memmap subclass costs more per call.
            shard = np.asarray(np.memmap(path, dtype=np.uint8, mode="r"))
            self._maps[name] = shard
        return shard

    def frames(self, video):
        """All frames of a video as a read-only [n, H, W, 3] view of the memory map."""
        try:
            name, offset, n, h, w = self.videos[video]
        except KeyError:
            raise BadSampleError(os.path.join(self.root, video),
                                 f"video not in the store index {INDEX_NAME}; pack it with "
                                 f"data_tools/pack_clips.py (re-runs resume)") from None
        return self._shard(name)[offset:offset + n * h * w * 3].reshape(n, h, w, 3)

    def num_frames(self, video):
        return self.frames(video).shape[0]

    def read(self, video, indices):
        frames = self.frames(video)
        last = max(indices)
        if last >= len(frames) or min(indices) < 0:
            raise BadSampleError(os.path.join(self.root, video),
                                 f"frame {last + 1} requested, the store holds {len(frames)} "
                                 f"(the list's frame count is too large?)")
        first, count = indices[0], len(indices)
        step = indices[1] - first if count > 1 else 1
        if step > 0 and list(indices) == list(range(first, first + step * count, step)):
            # Evenly spaced (a clip without loop padding): a read-only view, no copy; the
            # transform cuts its box straight from the memory map.
            return frames[first:first + step * (count - 1) + 1:step]
        return frames[np.asarray(indices)]

    def frame_size(self, video):
        """(height, width) of a video's frames, from the index (no read)."""
        return self.frames(video).shape[1:3]


def evict_from_page_cache(store_dir):
    """Ask the kernel to drop the shards' cached pages (posix_fadvise DONTNEED).

    Pages still memory-mapped by a live reader are not dropped: close readers first. Returns
    the number of shard bytes advised.
    """
    index = load_index(store_dir)
    total = 0
    for name in index["shards"]:
        fd = os.open(os.path.join(store_dir, name), os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total
