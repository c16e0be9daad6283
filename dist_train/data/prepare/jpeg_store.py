"""Preparing the compressed clip store (layout in ``data/jpeg_store.py``): videos or frame folders
-> JPEG shards, with no folder of small files in between.

- The plan (``jpeg_store_index.py``: settings and the sorted videos cut into fixed shards) is
  the same for every run and part of a store, so a resumed run, N machines with
  ``part=(k, n)`` and a one-shot run write the same shards.
- A shard is the unit of work, atomicity and resumption: its JPEG bytes are written under a
  temporary name and renamed when complete, then its fragment (frame sizes, failures) is
  written atomically. A shard with a fragment is done; anything else is redone.
- Part k of n prepares the shards whose number is k-1 modulo n. When every shard has a fragment,
  ``merge_store`` writes the one index (also from parts prepared in other directories).
- Videos are decoded with OpenCV (mp4/webm/avi..., H.264 included), resampled to ``fps`` (output
  frame j is source frame floor(j * source_fps / fps)), resized with
  ``transforms.resize_short_side`` and encoded at ``quality``. Frame folders keep their JPEG
  bytes as they are unless a short side is asked for (then decoded, resized, re-encoded).
- Before starting: a size estimate from fully preparing a sample of the videos. During: a
  progress line with rate and ETA. After: ``prepare_report.json`` (or ``.partKofN.json``) lists
  every failed video with its error; the CLI exits 1 when any video failed.
"""
import json
import math
import multiprocessing
import os
import queue as queue_module
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cv2
import numpy as np

from dist_train.atomic import atomic_open, atomic_write_text, is_temporary
from dist_train.data.jpeg_store import shard_name
from dist_train.data.lists import DataError
from dist_train.data.prepare.extract import Progress
from dist_train.data.prepare.jpeg_store_index import (fragment_name, load_or_write_plan,
                                                      make_plan, merge_store, read_fragment)
from dist_train.data.prepare.pack_store import free_space_problems, list_source_videos
from dist_train.data.readers import BadSampleError, open_video, scan_frame_numbers
from dist_train.data.store import StoreError
from dist_train.data.transforms import resize_short_side

VIDEO_EXTS = (".mp4", ".webm", ".avi", ".mkv", ".mov")
MAX_VIDEO_BYTES = 2 ** 32 - 1  # frame ends are uint32, relative to the video's offset


# ----------------------------------------------------------------------------- sources

def find_videos(src_root, ext):
    """Sorted list paths of the video files under src_root (any depth): the extension is dropped
    when ``ext`` is given (data.video_ext), kept when ``ext`` is '' (any of VIDEO_EXTS)."""
    found = []
    for folder, dirs, files in os.walk(src_root):
        dirs.sort()
        for name in files:
            if (name.endswith(ext) if ext else name.lower().endswith(VIDEO_EXTS)):
                path = os.path.relpath(os.path.join(folder, name), src_root).replace(os.sep, "/")
                found.append(path[:-len(ext)] if ext else path)
    return sorted(found)


def source_frame(j, source_fps, fps):
    """The source frame shown as output frame j at ``fps`` (None: every frame, j itself)."""
    return j if fps is None else int(math.floor(j * source_fps / fps + 1e-9))


def encode_jpeg(bgr, quality):
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode a frame as JPEG")
    return data.tobytes()


def _resized(bgr, short_side):
    return resize_short_side([bgr], short_side)[0] if short_side else bgr


def video_jpegs(path, settings):
    """JPEG bytes of every output frame of one video file, and (height, width)."""
    fps, short_side, quality = settings["fps"], settings["short_side"], settings["quality"]
    capture = open_video(path)
    jpegs, j, size = [], 0, None
    try:
        declared = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        source_fps = capture.get(cv2.CAP_PROP_FPS)
        if fps is not None and not (math.isfinite(source_fps) and source_fps > 0):
            raise BadSampleError(path, f"the container declares no frame rate ({source_fps}), so "
                                       f"it cannot be resampled to {fps} fps; leave fps unset")
        count, wanted = 0, source_frame(0, source_fps, fps)
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if wanted == count:
                frame = _resized(bgr, short_side)
                if size is not None and frame.shape[:2] != size:
                    raise BadSampleError(path, f"frame {count + 1} is {frame.shape[1]}x"
                                               f"{frame.shape[0]}, earlier frames {size[1]}x"
                                               f"{size[0]}: the resolution changes mid-video")
                size = frame.shape[:2]
                data = encode_jpeg(frame, quality)
                while wanted == count:  # up-sampling repeats a frame
                    jpegs.append(data)
                    j += 1
                    wanted = source_frame(j, source_fps, fps)
            count += 1
    finally:
        capture.release()
    if not jpegs:
        raise BadSampleError(path, "no decodable frames")
    missing = settings["max_missing_frames"]
    if math.isfinite(declared) and declared > 0 and count < declared - missing:
        raise BadSampleError(path, f"truncated: the container declares {int(declared)} frames, "
                                   f"only {count} decode (allow a shortfall with "
                                   f"--max-missing-frames)")
    return jpegs, size


def folder_jpegs(folder, settings):
    """JPEG bytes of a frame folder's frames (kept as they are when no resize is asked for and
    they are JPEG files; otherwise decoded, resized, encoded), and (height, width)."""
    template, short_side = settings["template"], settings["short_side"]
    numbers = scan_frame_numbers(folder, template) if os.path.isdir(folder) else []
    if not numbers:
        raise BadSampleError(folder, f"no frames named like {template!r}")
    if numbers != list(range(1, len(numbers) + 1)):
        raise BadSampleError(folder, f"frame numbers are not 1..{len(numbers)} (gaps)")
    jpegs, size = [], None
    for number in numbers:
        path = os.path.join(folder, template.format(number))
        with open(path, "rb") as f:
            data = f.read()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise BadSampleError(path, "unreadable or empty image")
        if (short_side and min(bgr.shape[:2]) != short_side) or not data.startswith(b"\xff\xd8"):
            bgr = _resized(bgr, short_side)
            data = encode_jpeg(bgr, settings["quality"])
        if size is not None and bgr.shape[:2] != size:
            raise BadSampleError(folder, f"frames of different sizes ({size} and "
                                         f"{bgr.shape[:2]} at {path})")
        size = bgr.shape[:2]
        jpegs.append(data)
    return jpegs, size


def load_jpegs(src_root, video, settings):
    if settings["source"] == "frames":
        return folder_jpegs(os.path.join(src_root, video), settings)
    return video_jpegs(os.path.join(src_root, video + settings["ext"]), settings)


# ----------------------------------------------------------------------------- shards

def write_shard(store_dir, src_root, number, videos, settings, report=None):
    """Prepare one shard (bytes, then fragment; both atomic); return (prepared, failed) counts.
    ``report(failed: bool)`` is called after every video (progress)."""
    entries, failed, offset = [], {}, 0
    with atomic_open(os.path.join(store_dir, shard_name(number))) as f:
        for video in videos:
            try:
                jpegs, (height, width) = load_jpegs(src_root, video, settings)
                sizes = [len(data) for data in jpegs]
                if sum(sizes) > MAX_VIDEO_BYTES:
                    raise BadSampleError(video, f"{sum(sizes)} bytes of JPEG frames, more than "
                                                f"this store holds per video (4 GiB); lower "
                                                f"--fps or --short-side")
            except (BadSampleError, OSError, cv2.error, ValueError) as error:
                failed[video] = str(error)
            else:
                f.write(b"".join(jpegs))
                entries.append({"video": video, "offset": offset, "height": height,
                                "width": width, "frame_sizes": sizes})
                offset += sum(sizes)
            if report is not None:
                report(video in failed)
    fragment = {"shard": shard_name(number), "size": offset, "videos": entries, "failed": failed}
    atomic_write_text(os.path.join(store_dir, fragment_name(number)), json.dumps(fragment))
    return len(entries), len(failed)


_events = None  # a worker's progress queue (set by the pool initializer)


def _init_worker(events):
    global _events
    _events = events
    cv2.setNumThreads(1)


def _shard_task(args):
    return write_shard(*args, report=_events.put)


def _remove_leftovers(store_dir, numbers):
    """Delete temporary files of interrupted writes of these shards (not other parts')."""
    names = {shard_name(n) for n in numbers} | {fragment_name(n) for n in numbers}
    for name in os.listdir(store_dir):
        if any(is_temporary(name, target) for target in names):
            os.remove(os.path.join(store_dir, name))


# ----------------------------------------------------------------------------- estimate

def estimate_size(src_root, videos, settings, sample):
    """Prepare ``sample`` evenly spaced videos in memory -> dict with the mean bytes per video
    and per frame and the estimate for ``videos`` (None when no sampled video prepared)."""
    if not videos or sample <= 0:
        return None
    picks = sorted({videos[int(k * len(videos) / min(sample, len(videos)))]
                    for k in range(min(sample, len(videos)))})
    total_bytes, total_frames, ok = 0, 0, 0
    for video in picks:
        try:
            jpegs, _ = load_jpegs(src_root, video, settings)
        except (BadSampleError, OSError, cv2.error, ValueError):
            continue
        total_bytes += sum(len(data) for data in jpegs)
        total_frames += len(jpegs)
        ok += 1
    if not ok:
        return None
    per_video = total_bytes / ok
    return {"sampled_videos": ok, "bytes_per_video": per_video,
            "bytes_per_frame": total_bytes / max(total_frames, 1),
            "frames_per_video": total_frames / ok, "estimated_bytes": int(per_video * len(videos))}


# ----------------------------------------------------------------------------- prepare

def prepare_store(source, src_root, store_dir, videos=None, fps=None, short_side=None, quality=90,
                  template="img_{:05d}.jpg", ext=".mp4", workers=1, videos_per_shard=500,
                  part=(1, 1), estimate_sample=8, check_space=True, max_missing_frames=0,
                  log=print, progress_stream=None):
    """Prepare (or resume) part ``part = (k, n)`` of a store; merge when every shard is done.

    Returns a summary dict; its ``failed`` maps every failed video of this part to its error.
    """
    start = time.time()
    if source not in ("video", "frames"):
        raise ValueError(f"source must be 'video' or 'frames', got {source!r}")
    if not 1 <= int(quality) <= 100:
        raise DataError(f"JPEG quality {quality} must be between 1 and 100")
    if source == "frames" and fps is not None:
        raise DataError("--fps applies to videos only: frame folders keep their frames")
    k, n = part
    settings = {"source": source, "fps": None if fps is None else float(fps),
                "short_side": None if short_side is None else int(short_side), "quality": int(quality),
                "videos_per_shard": int(videos_per_shard), "max_missing_frames": max_missing_frames,
                "template" if source == "frames" else "ext": template if source == "frames" else ext}
    if not os.path.isdir(src_root):
        raise DataError(f"{src_root}: source directory not found")
    if videos is None:
        videos = (list_source_videos("frames", src_root) if source == "frames"
                  else find_videos(src_root, ext))
    videos = sorted(set(videos))
    if not videos:
        raise DataError(f"{src_root}: no {'frame folders' if source == 'frames' else 'videos'} "
                        f"found")
    plan = load_or_write_plan(store_dir, make_plan(videos, settings))
    mine = [s for s in range(len(plan["shards"])) if s % n == k - 1]
    _remove_leftovers(store_dir, mine)
    todo = [s for s in mine if read_fragment(store_dir, s) is None]
    todo_videos = [v for s in todo for v in plan["shards"][s]]
    log(f"part {k}/{n}: {len(mine)} of {len(plan['shards'])} shards, {len(mine) - len(todo)} "
        f"already done; {len(todo_videos)} videos to prepare")
    estimate = estimate_size(src_root, todo_videos, settings, estimate_sample)
    if estimate:
        log(f"estimated size: {estimate['estimated_bytes'] / 1e9:.3f} GB for {len(todo_videos)} "
            f"videos ({estimate['bytes_per_video'] / 1e6:.2f} MB per video, "
            f"{estimate['bytes_per_frame']:.0f} bytes per frame, from "
            f"{estimate['sampled_videos']} sampled videos)")
        if check_space:
            problems = free_space_problems(store_dir, int(estimate["estimated_bytes"] * 1.05))
            if problems:
                raise StoreError("not enough space: " + "; ".join(problems))
    tasks = [(store_dir, src_root, s, plan["shards"][s], settings) for s in todo]
    progress = Progress(len(todo_videos), progress_stream, "prepare ", "videos")
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            write_shard(*task, report=progress.update)
    else:
        _run_pool(tasks, workers, len(todo_videos), progress)
    failed = {}
    for s in mine:
        fragment = read_fragment(store_dir, s)
        if fragment is None:
            raise StoreError(f"{os.path.join(store_dir, shard_name(s))}: missing or changed "
                             f"while preparing (another run writing the same part?)")
        failed.update(fragment["failed"])
    seconds = time.time() - start
    summary = {"store": os.path.abspath(store_dir), "source": os.path.abspath(src_root),
               "part": f"{k}/{n}", "settings": settings, "videos_in_part":
               sum(len(plan["shards"][s]) for s in mine), "prepared_now": len(todo_videos),
               "seconds": round(seconds, 3),
               "videos_per_s": round(len(todo_videos) / seconds, 3) if todo_videos else None,
               "estimate": estimate, "failed_count": len(failed),
               "failed": [{"video": v, "error": e} for v, e in sorted(failed.items())]}
    name = "prepare_report.json" if n == 1 else f"prepare_report.part{k}of{n}.json"
    atomic_write_text(os.path.join(store_dir, name), json.dumps(summary, indent=1))
    missing = [s for s in range(len(plan["shards"])) if read_fragment(store_dir, s) is None]
    if missing:
        log(f"{len(missing)} shard(s) of other parts not done yet; when every part has "
            f"finished, run the merge step")
        summary["merged"] = False
    else:
        merge_store(store_dir, log=log)
        summary["merged"] = True
    return summary


def _run_pool(tasks, workers, total_videos, progress):
    """Shards in worker processes; per-video progress comes back through a queue. A worker that
    dies (killed, out of memory) stops the run with an error instead of a hang; re-running
    resumes."""
    # spawn, not fork: a child forked after OpenCV ran can hang in cv2 (see pack_store.py).
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    received = 0
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context,
                             initializer=_init_worker, initargs=(events,)) as pool:
        futures = [pool.submit(_shard_task, task) for task in tasks]
        try:
            while received < total_videos:
                try:
                    failed = events.get(timeout=0.5)
                except queue_module.Empty:
                    if all(f.done() for f in futures):
                        for f in futures:
                            f.result()  # a worker's error surfaces here with its traceback
                        if events.empty():
                            break
                    continue
                progress.update(failed)
                received += 1
            for f in futures:
                f.result()
        except BrokenProcessPool as error:
            raise RuntimeError("a preparation worker process died (killed, or out of memory?); "
                               "completed shards are kept: re-run the same command to resume "
                               "(fewer --workers if memory is short)") from error
