"""Packed uint8 clip store: decoded frames in memory-mappable shard files plus a JSON index.

Layout of a store directory::

    index.json          {"format": "dist_train.packed_store", "version": 1, "short_side": 128,
                         "source": {...}, "shards": {"shard_00000.u8": <bytes>, ...},
                         "videos": {"<Class>/<video>": {"shard", "offset", "n_frames",
                                                        "height", "width", "crc32"}}}
    shard_00000.u8      raw bytes: the videos' uint8 RGB frames [n_frames, H, W, 3], back to back

Reading a clip is slicing a memory map (no decoding). Building is parallel (one shard per task
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
import multiprocessing
import os
import re
import shutil
import sys
import time
import zlib

import numpy as np

from .extract import Progress, find_videos
from .lists import DataError, write_text_atomic
from .readers import (BadSampleError, FrameFolderReader, VideoReader, decode_video, open_video,
                      read_rgb_image, scan_frame_numbers)
from .transforms import resize_short_side

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
    write_text_atomic(os.path.join(store_dir, INDEX_NAME), json.dumps(index, sort_keys=True))


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


# ----------------------------------------------------------------------------- writer

def list_source_videos(source, src_root, ext=".avi"):
    """'<Class>/<video>' names found under the source root."""
    if source == "video":
        return find_videos(src_root, ext)
    if source != "frames":
        raise ValueError(f"source must be 'frames' or 'video', got {source!r}")
    videos = []
    for class_name in sorted(os.listdir(src_root)):
        folder = os.path.join(src_root, class_name)
        if os.path.isdir(folder):
            videos.extend(f"{class_name}/{v}" for v in sorted(os.listdir(folder))
                          if os.path.isdir(os.path.join(folder, v)) and ".tmp-" not in v)
    return videos


def scaled_size(height, width, short_side):
    """(H, W) after resize_short_side (same arithmetic)."""
    if not short_side or min(height, width) == short_side:
        return height, width
    if height <= width:
        return short_side, max(short_side, int(round(width * short_side / height)))
    return max(short_side, int(round(height * short_side / width))), short_side


def probe_video(source, src_root, video, template, ext):
    """(n_frames, height, width) of a source video, cheaply (video counts are as declared)."""
    if source == "frames":
        folder = os.path.join(src_root, video)
        numbers = scan_frame_numbers(folder, template)
        if not numbers:
            raise BadSampleError(folder, f"no frames named like {template!r}")
        h, w = read_rgb_image(os.path.join(folder, template.format(numbers[0]))).shape[:2]
        return len(numbers), h, w
    import cv2
    capture = open_video(os.path.join(src_root, video + ext))
    try:
        return (max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    finally:
        capture.release()


def load_source_frames(source, src_root, video, template=None, ext=".avi"):
    """All frames of one source video, decoded exactly as the matching reader decodes them."""
    if source == "frames":
        folder = os.path.join(src_root, video)
        numbers = scan_frame_numbers(folder, template)
        if not numbers:
            raise BadSampleError(folder, f"no frames named like {template!r}")
        if numbers != list(range(1, len(numbers) + 1)):
            raise BadSampleError(folder, f"frame numbers are not 1..{len(numbers)} (gaps)")
        return FrameFolderReader(src_root, template).read(video, list(range(len(numbers))))
    return decode_video(VideoReader(src_root, ext).video_path(video))


def _pack_task(args):
    """Write one shard (temp name, then rename); return (shard, size, entries, failures)."""
    store_dir, shard, videos, source, src_root, template, ext, short_side = args
    import cv2
    cv2.setNumThreads(1)  # parallelism comes from the worker processes
    path = os.path.join(store_dir, shard)
    tmp = f"{path}.tmp-{os.getpid()}"
    entries, failures, offset = {}, {}, 0
    try:
        with open(tmp, "wb") as f:
            for video in videos:
                try:
                    frames = load_source_frames(source, src_root, video, template, ext)
                    frames = np.ascontiguousarray(resize_short_side(frames, short_side)
                                                  if short_side else frames)
                except (BadSampleError, OSError, cv2.error, ValueError) as error:
                    failures[video] = str(error)
                    continue
                data = memoryview(frames).cast("B")
                f.write(data)
                n, h, w = frames.shape[:3]
                entries[video] = {"shard": shard, "offset": offset, "n_frames": n, "height": h,
                                  "width": w, "crc32": zlib.crc32(data)}
                offset += len(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return shard, offset, entries, failures


def _remove_leftovers(store_dir, index):
    """Delete temp shards and shards the index does not reference (a crash before the index
    was updated); return their names."""
    removed = []
    for name in os.listdir(store_dir):
        stale_tmp = name.startswith("shard_") and ".u8.tmp-" in name
        orphan = SHARD_PATTERN.match(name) and name not in index["shards"]
        if stale_tmp or orphan:
            os.remove(os.path.join(store_dir, name))
            removed.append(name)
    return removed


def plan_shards(videos, sizes, shard_bytes, min_tasks):
    """Group videos into consecutive shards of about shard_bytes (at least min_tasks groups
    when there are enough videos, so every worker gets work)."""
    total = sum(sizes[v] for v in videos)
    target = max(1, min(shard_bytes, total // max(1, min_tasks) + 1))
    groups, current, current_bytes = [], [], 0
    for video in videos:
        current.append(video)
        current_bytes += sizes[video]
        if current_bytes >= target:
            groups.append(current)
            current, current_bytes = [], 0
    if current:
        groups.append(current)
    return groups


def free_space_problems(store_dir, needed_bytes):
    """Messages about too little space for ``needed_bytes`` (disk, and RAM for tmpfs)."""
    problems = []
    free = shutil.disk_usage(store_dir).free
    if needed_bytes > free:
        problems.append(f"{store_dir}: {needed_bytes / 1e9:.1f} GB needed, {free / 1e9:.1f} GB "
                        f"free")
    real = os.path.realpath(store_dir)
    if real == "/dev/shm" or real.startswith("/dev/shm/"):
        with open("/proc/meminfo") as f:
            meminfo = dict(line.split(":", 1) for line in f)
        available = int(meminfo["MemAvailable"].split()[0]) * 1024
        if needed_bytes > available:
            problems.append(f"{store_dir} is in /dev/shm (RAM): {needed_bytes / 1e9:.1f} GB "
                            f"needed, {available / 1e9:.1f} GB of RAM available")
    return problems


def pack_store(source, src_root, store_dir, short_side=None, template="img_{:05d}.jpg",
               ext=".avi", videos=None, workers=1, shard_gb=1.0, check_space=True,
               log=print, progress_stream=None):
    """Build or resume a store; return a summary dict (sizes, time, failures).

    ``videos``: '<Class>/<video>' names to pack (default: everything under src_root).
    """
    start = time.time()
    os.makedirs(store_dir, exist_ok=True)
    source_desc = {"kind": source, "root": os.path.abspath(src_root),
                   "template" if source == "frames" else "ext": template if source == "frames"
                   else ext}
    if os.path.exists(os.path.join(store_dir, INDEX_NAME)):
        index = load_index(store_dir)
        if index["short_side"] != short_side or index["source"]["kind"] != source:
            raise StoreError(f"{os.path.join(store_dir, INDEX_NAME)}: existing store has "
                             f"source {index['source']['kind']!r}, short side "
                             f"{index['short_side']}; asked for {source!r}, {short_side}: use "
                             f"another directory or delete this one")
    else:
        index = _new_index(short_side, source_desc)
    removed = _remove_leftovers(store_dir, index)
    if removed:
        log(f"removed {len(removed)} incomplete shard(s) of an interrupted run: {removed}")
    videos = list_source_videos(source, src_root, ext) if videos is None else list(videos)
    if not videos:
        raise DataError(f"{src_root}: no {source} found in class folders")
    todo = [v for v in videos if v not in index["videos"]]
    sizes = {}
    for video in todo:
        try:
            n, h, w = probe_video(source, src_root, video, template, ext)
        except BadSampleError:
            n, h, w = 0, 0, 0  # fails again (and is reported) when packed
        sh, sw = scaled_size(h, w, short_side)
        sizes[video] = n * sh * sw * 3
    estimate = sum(sizes.values())
    log(f"{len(videos)} videos, {len(videos) - len(todo)} already packed; "
        f"estimated size of the remaining {len(todo)}: {estimate / 1e9:.2f} GB")
    if check_space:
        problems = free_space_problems(store_dir, int(estimate * 1.02))
        if problems:
            raise StoreError("not enough space: " + "; ".join(problems))
    numbers = [int(SHARD_PATTERN.match(s).group(1)) for s in index["shards"]]
    first = max(numbers) + 1 if numbers else 0
    groups = plan_shards(todo, sizes, int(shard_gb * 1e9), 4 * max(1, workers))
    tasks = [(store_dir, f"shard_{first + k:05d}.u8", group, source, src_root, template, ext,
              short_side) for k, group in enumerate(groups)]
    index["failed"] = {}
    progress = Progress(len(todo), progress_stream, "pack ")
    if tasks:
        # spawn, not fork: a child forked from a process that already ran OpenCV can hang in
        # cv2.setNumThreads (inherited thread-pool state); packing pays ~1 s of start-up.
        context = multiprocessing.get_context("spawn")
        with context.Pool(max(1, min(workers, len(tasks)))) as pool:
            for shard, size, entries, failures in pool.imap_unordered(_pack_task, tasks):
                index["shards"][shard] = size
                index["videos"].update(entries)
                index["failed"].update(failures)
                _write_index(store_dir, index)
                for failed in [False] * len(entries) + [True] * len(failures):
                    progress.update(failed)
    else:
        _write_index(store_dir, index)
    total = sum(index["shards"].values())
    return {"store": os.path.abspath(store_dir), "videos": len(index["videos"]),
            "packed_now": len(todo) - len(index["failed"]), "failed": dict(index["failed"]),
            "estimated_bytes": estimate, "store_bytes": total, "seconds": time.time() - start}


def verify_store(store_dir, log=None):
    """Re-read every video and compare sizes and CRC32s with the index; return problems."""
    index = load_index(store_dir)
    problems = []
    try:
        check_shard_sizes(store_dir, index)
    except StoreError as error:
        return [str(error)]
    reader = PackedStoreReader(store_dir)
    for video, entry in sorted(index["videos"].items()):
        data = memoryview(np.ascontiguousarray(reader.frames(video))).cast("B")
        if zlib.crc32(data) != entry["crc32"]:
            problems.append(f"{os.path.join(store_dir, entry['shard'])}: checksum mismatch for "
                            f"{video} (offset {entry['offset']}); rebuild the store")
    reader.close()
    if log:
        log(f"verified {len(index['videos'])} videos in {len(index['shards'])} shards: "
            f"{len(problems)} problem(s)")
    return problems


def print_summary(summary, stream=None):
    stream = stream or sys.stdout
    stream.write(f"store {summary['store']}: {summary['videos']} videos, "
                 f"{summary['store_bytes'] / 1e9:.2f} GB on disk (estimated "
                 f"{summary['estimated_bytes'] / 1e9:.2f} GB for this run), "
                 f"{summary['seconds']:.1f} s\n")
    for video, error in sorted(summary["failed"].items()):
        stream.write(f"  FAILED {video}: {error}\n")
