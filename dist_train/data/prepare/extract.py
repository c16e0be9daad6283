"""Frame extraction: ``<src>/<Class>/<video><ext>`` -> ``<dst>/<Class>/<video>/img_00001.jpg``.

Videos directly under ``<src>`` (a flat Kinetics copy) go to ``<dst>/<video>/``; ``ext`` may list
several extensions (``.mp4,.webm,.mkv``); of two files differing only in extension the first
in sorted order is extracted and the other named in the report (``duplicates``).

- Frames are decoded with OpenCV and counted; JPEGs hold the RGB content (written via BGR as
  OpenCV expects), optionally resized to a given short side.
- Atomic per video: frames go to ``<video>.tmp-<pid>`` and the folder is renamed when complete,
  so an existing ``<video>`` folder is always complete and re-runs skip it (resumable).
- A video is failed (and listed in ``<dst>/extract_report.json``) when it is missing, empty,
  cannot be opened, decodes no frame, declares a non-positive frame count (garbage header), or
  decodes fewer frames than the container declares (truncated; ``max_missing_frames`` allows a
  small shortfall). The other videos still finish.
"""
import json
import math
import multiprocessing
import os
import shutil
import sys
import time

import cv2

from dist_train.atomic import atomic_write_text
from dist_train.errors import OUTPUT_ERRNOS, progress_line, write_error
from dist_train.data.lists import DataError
from dist_train.data.readers import DEFAULT_FRAME_TEMPLATE, BadSampleError, open_video


def find_videos(src_root, ext=".avi"):
    """Sorted '<Class>/<video>' names (extension dropped) of the videos under src_root."""
    videos = []
    for class_name in sorted(os.listdir(src_root)):
        folder = os.path.join(src_root, class_name)
        if os.path.isdir(folder):
            videos.extend(f"{class_name}/{name[:-len(ext)]}" for name in sorted(os.listdir(folder))
                          if name.endswith(ext))
    return videos


def find_video_files(src_root, ext=".avi"):
    """([(name, file)], [(file, kept file)]): sorted videos with an extension of ``ext`` (one,
    or several separated by commas) in class folders or directly under src_root; ``name`` is
    the file's path relative to src_root without extension, ``file`` with it."""
    exts = tuple(e.strip() for e in ext.split(",") if e.strip())
    files = []
    for entry in sorted(os.listdir(src_root)):
        path = os.path.join(src_root, entry)
        if os.path.isdir(path):
            files.extend(f"{entry}/{name}" for name in sorted(os.listdir(path))
                         if name.endswith(exts) and not name.startswith("."))
        elif entry.endswith(exts) and not entry.startswith("."):
            files.append(entry)
    videos, duplicates, kept = [], [], {}
    for file in sorted(files):
        name = os.path.splitext(file)[0]
        if name in kept:
            duplicates.append((file, kept[name]))
        else:
            kept[name] = file
            videos.append((name, file))
    return videos, duplicates


def _remove_stale_temps(dst_dir):
    parent, base = os.path.split(dst_dir)
    if os.path.isdir(parent):
        for name in os.listdir(parent):
            if name.startswith(base + ".tmp-"):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _resize_short_side(bgr, short_side):
    height, width = bgr.shape[:2]
    if not short_side or min(height, width) == short_side:
        return bgr
    f = short_side / min(height, width)
    size = (max(short_side, round(width * f)), max(short_side, round(height * f)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)


def extract_video(src_path, dst_dir, template=DEFAULT_FRAME_TEMPLATE, short_side=None,
                  max_missing_frames=0, jpeg_quality=95):
    """Extract one video atomically; return the number of frames written.

    Raises BadSampleError naming ``src_path`` when the video is damaged (see module doc).
    """
    _remove_stale_temps(dst_dir)
    capture = open_video(src_path)
    tmp = f"{dst_dir}.tmp-{os.getpid()}"
    os.makedirs(tmp)
    count = 0
    try:
        declared = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        if not math.isfinite(declared) or declared <= 0:
            raise BadSampleError(src_path, f"garbage header: container declares {declared} frames")
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            count += 1
            name = os.path.join(tmp, template.format(count))
            ok, jpeg = cv2.imencode(".jpg", _resize_short_side(bgr, short_side),
                                    [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                raise BadSampleError(src_path, f"cannot encode frame {count} as JPEG")
            with open(name, "wb") as f:  # an OSError names a full or read-only disk (imwrite
                f.write(jpeg)            # would only return False)
        if count == 0:
            raise BadSampleError(src_path, "no decodable frames")
        if count < declared - max_missing_frames:
            raise BadSampleError(src_path, f"truncated: container declares {int(declared)} "
                                           f"frames, only {count} decode")
        os.replace(tmp, dst_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        capture.release()
    return count


def _extract_task(args):
    """(video, frames, item error or None, output error as (errno, strerror, path) or None)."""
    video, src_path, dst_dir, template, short_side, max_missing = args
    try:
        return video, extract_video(src_path, dst_dir, template, short_side, max_missing), None, None
    except OSError as error:
        if error.errno in OUTPUT_ERRNOS:  # the disk, not this video: every later item would fail
            return video, 0, None, (error.errno, error.strerror, error.filename or dst_dir)
        return video, 0, str(error), None
    except (BadSampleError, cv2.error) as error:
        return video, 0, str(error), None


class Progress:
    """One progress line on a stream (every 0.2 s at most): a bar, done/total (in ``unit``),
    failures, the rate and the time left. Used by every batch tool."""

    def __init__(self, total, stream=None, label="", unit=""):
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream if stream is not None else sys.stderr
        self.label, self.unit, self._last, self._start = label, unit, 0.0, time.time()

    def update(self, failed=False):
        self.done += 1
        self.failed += bool(failed)
        now = time.time()
        if now - self._last > 0.2 or self.done == self.total:
            self._last = now
            width = 30
            filled = width * self.done // max(self.total, 1)
            rate = self.done / max(now - self._start, 1e-9)
            self.stream.write(f"\r{self.label}[{'#' * filled}{'.' * (width - filled)}] "
                              f"{self.done}/{self.total}{' ' + self.unit if self.unit else ''}, "
                              f"{self.failed} failed, {rate:.2f}/s, ETA "
                              f"{duration_text((self.total - self.done) / rate)} ")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()
            progress_line(self.stream, self.done < self.total)


def duration_text(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def extract_all(src_root, dst_root, workers=1, short_side=None, template=DEFAULT_FRAME_TEMPLATE,
                ext=".avi", max_missing_frames=0, progress_stream=None):
    """Extract every video under src_root; write and return the report dict."""
    videos, duplicates = find_video_files(src_root, ext)
    if not videos:
        raise DataError(f"{src_root}: no '*{ext}' videos in class folders; check --src and --ext")
    todo, skipped = [], 0
    for video, file in videos:
        dst_dir = os.path.join(dst_root, video)
        if os.path.isdir(dst_dir):
            skipped += 1
        else:
            todo.append((video, os.path.join(src_root, file), dst_dir, template,
                         short_side, max_missing_frames))
    progress = Progress(len(todo), progress_stream, "extract ", "videos")
    frames, failed, output_error = {}, [], None
    if todo:
        with multiprocessing.get_context("fork").Pool(max(1, workers)) as pool:
            for video, count, error, output_error in pool.imap_unordered(_extract_task, todo):
                if output_error:  # leaving the with-block stops the other workers
                    break
                if error:
                    failed.append({"video": video, "error": error})
                else:
                    frames[video] = count
                progress.update(failed=bool(error))
    if output_error:
        for task in todo:  # the stopped workers' half-written folders
            _remove_stale_temps(task[2])
        raise write_error(OSError(*output_error), output_error[2], "extracting frames to")
    report = {"source": os.path.abspath(src_root), "total": len(videos),
              "extracted": len(frames), "skipped_complete": skipped,
              "failed_count": len(failed), "failed": sorted(failed, key=lambda f: f["video"]),
              "frames": dict(sorted(frames.items())),
              "duplicates": [{"file": f, "extracted": k} for f, k in duplicates]}
    atomic_write_text(os.path.join(dst_root, "extract_report.json"), json.dumps(report, indent=1))
    return report
