"""Building and verifying a packed clip store (the layout is in ``store.py``'s docstring).

``pack_store`` decodes frame folders or raw videos, resizes them to the chosen short side with
``transforms.resize_short_side`` (the evaluation path's function) and writes shards in parallel
(one shard per task and process), atomically (temporary name, renamed when complete; the index
is rewritten atomically after every finished shard) and resumably (videos already in the index
are skipped; shard files the index does not know are leftovers of a crash and removed).
``verify_store`` re-checks every video's CRC.
"""
import multiprocessing
import os
import shutil
import sys
import time
import zlib

import numpy as np

from dist_train.atomic import atomic_open, is_temporary
from dist_train.data.prepare.extract import Progress, find_videos
from dist_train.data.lists import DataError
from dist_train.data.readers import (BadSampleError, FrameFolderReader, VideoReader, decode_video, open_video,
                                     read_rgb_image, scan_frame_numbers)
from dist_train.data.store import (INDEX_NAME, SHARD_PATTERN, PackedStoreReader, StoreError, _new_index,
                                   _write_index, check_shard_sizes, load_index)
from dist_train.data.transforms import resize_short_side


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
    entries, failures, offset = {}, {}, 0
    with atomic_open(os.path.join(store_dir, shard)) as f:
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
    return shard, offset, entries, failures


def _remove_leftovers(store_dir, index):
    """Delete temp shards and shards the index does not reference (a crash before the index
    was updated); return their names."""
    removed = []
    for name in os.listdir(store_dir):
        # atomic_open's temporaries, and the "shard_N.u8.tmp-<pid>" of stores packed before it
        stale_tmp = is_temporary(name, "shard_") or (name.startswith("shard_") and ".u8.tmp-" in name)
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
        problems.append(f"{store_dir}: {_size(needed_bytes)} needed, {_size(free)} free; free "
                        "some space or choose another --out")
    real = os.path.realpath(store_dir)
    if real == "/dev/shm" or real.startswith("/dev/shm/"):
        with open("/proc/meminfo") as f:
            meminfo = dict(line.split(":", 1) for line in f)
        available = int(meminfo["MemAvailable"].split()[0]) * 1024
        if needed_bytes > available:
            problems.append(f"{store_dir} is in /dev/shm (RAM): {_size(needed_bytes)} needed, "
                            f"{_size(available)} of RAM available")
    return problems


def _size(num_bytes):
    return f"{num_bytes / 1e9:.1f} GB" if num_bytes >= 1e9 else f"{num_bytes / 1e6:.1f} MB"


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
    progress = Progress(len(todo), progress_stream, "pack ", "videos")
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
    if summary["failed"]:  # each one, with its reason, is in the report: the index
        stream.write(f"{len(summary['failed'])} video(s) failed: see \"failed\" in "
                     f"{os.path.join(summary['store'], INDEX_NAME)}\n")
