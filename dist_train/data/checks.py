"""Checks of the clip lists before training starts: cheap enough for every run, so that a list
naming a video that does not exist, a label the network has no output for, or a malformed line
stops the run with one named line at once instead of inside a loader worker hours later.

What is checked, per list entry: the line parses (``lists.read_list_numbered`` names the line);
``0 <= label < model.num_classes``; the video exists: a frame folder holds frames 1..num_frames
(one directory listing), the index of a packed or compressed (JPEG) store has the video with at
least num_frames frames,
a raw video file exists and its container declares a positive frame count (one open of the
file, no decoding). Decoding every frame stays ``data_tools/verify_dataset.py``'s job.
``data.check_lists: false`` turns the checks off.

Cost (warm page cache, local disk, this 2-vCPU VM): frame folders of 180 frames 0.33-0.41 ms per
entry, raw 320x240 XVID videos 0.3-0.6 ms per entry; so about 4-8 s for UCF-101's 13,320 videos
and 1.5-3 min for 300,000 (Kinetics-size) lists. A cold cache or a network file system costs
one directory listing or file open per entry more: turn the checks off for repeated runs there.
"""
from __future__ import annotations

import functools
import math
import os

from dist_train.data.lists import DataError, read_list_numbered
from dist_train.data.readers import frame_name_regex

SHOWN = 10  # problems named in the message (the count says how many there are)
_EXPECTED_NAMES = {}  # (template, num_frames) -> the frame file names: formatted once per count


def _frames_problem(root, template, video, num_frames):
    folder = os.path.join(root, video)
    try:
        names = set(os.listdir(folder))
    except OSError as e:
        return f"{folder}: {e.strerror.lower() if e.strerror else 'cannot be listed'}"
    expected = _EXPECTED_NAMES.get((template, num_frames))
    if expected is None:  # the frame names of a count, formatted once per count (C-speed test)
        expected = _EXPECTED_NAMES[template, num_frames] = frozenset(
            template.format(n) for n in range(1, num_frames + 1))
    if names.issuperset(expected):
        return None
    missing = [n for n in range(1, num_frames + 1) if template.format(n) not in names]
    if missing:
        return (f"{folder}: {len(missing)} of the list's {num_frames} frames missing "
                f"(first {template.format(missing[0])})")
    return None


def _video_problem(root, ext, video, num_frames):
    import cv2

    path = os.path.join(root, video + ext)
    if not os.path.isfile(path):
        return f"{path}: missing video file"
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            return f"{path}: OpenCV cannot open the video"
        declared = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()
    if not math.isfinite(declared) or declared <= 0:
        return f"{path}: the container declares {declared} frames (damaged header?)"
    return None


def _store_problem(index, store_dir, video, num_frames):
    entry = index["videos"].get(video)
    if entry is None:
        return f"{store_dir}: the store has no video {video} (pack it, or fix the list)"
    if entry["n_frames"] < num_frames:
        return f"{store_dir}: video {video} has {entry['n_frames']} frames, the list says {num_frames}"
    return None


def _jpeg_store_problem(reader, store_dir, video, num_frames):
    """The compressed store's index (memory-mapped) has the video with enough frames."""
    if video not in reader:
        return f"{store_dir}: the store has no video {video} (prepare it, or fix the list)"
    stored = reader.num_frames(video)
    if stored < num_frames:
        return f"{store_dir}: video {video} has {stored} frames, the list says {num_frames}"
    return None


def list_problems(cfg, list_path: str) -> list[str]:
    """Problems of one clip list under ``cfg``'s data source and class count (empty: fine)."""
    source, root = cfg["data.source"], cfg["data.root"]
    num_classes = cfg["model.num_classes"]
    if source == "packed":
        from dist_train.data.store import load_index

        index = load_index(root)
        check = lambda video, n: _store_problem(index, root, video, n)  # noqa: E731
    elif source == "jpeg_store":
        from dist_train.data.jpeg_store import JpegStoreReader

        check = functools.partial(_jpeg_store_problem, JpegStoreReader(root), root)
    elif source == "video":
        check = lambda video, n: _video_problem(root, cfg["data.video_ext"], video, n)  # noqa: E731
    else:
        template = cfg["data.frame_template"]
        frame_name_regex(template)
        check = lambda video, n: _frames_problem(root, template, video, n)  # noqa: E731
    problems = []
    for line, entry in read_list_numbered(list_path):  # raises on a malformed line, naming it
        if not 0 <= entry.label < num_classes:
            problems.append(f"{list_path}:{line}: label {entry.label} is outside 0..{num_classes - 1} "
                            f"(model.num_classes {num_classes}): fix the list or model.num_classes")
        problem = check(entry.video, entry.num_frames)
        if problem:
            problems.append(f"{list_path}:{line}: {problem}")
    return problems


def check_lists(cfg, list_paths) -> None:
    """Raise DataError naming the first problems of the lists (see the module docstring)."""
    problems = []
    for path in dict.fromkeys(p for p in list_paths if p):
        problems.extend(list_problems(cfg, path))
    if problems:
        more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        raise DataError(f"{len(problems)} problem(s) in the clip lists, checked before training "
                        f"(data.check_lists): " + "; ".join(problems[:SHOWN]) + more)
