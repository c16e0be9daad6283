"""Clip lists from the official Kinetics annotation CSVs (400, 600, 700, 700-2020).

A CSV has a header with at least ``youtube_id,time_start,time_end`` and usually ``label`` and
``split`` (some releases add ``is_cc``; test CSVs may have no ``label``). A clip's file is
``<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>`` (.mp4, .webm, .mkv, ...), in one folder
per label or in one flat folder. Downloaded copies rename the label folders (spaces to
underscores, quotes dropped), so clips are matched by ``youtube_id`` and times parsed from the
file name, never by folder name. A file named ``<youtube_id>.<ext>`` (no times) matches when the
CSVs list that id once.

The root is either raw videos (``kind="video"``: list paths are the files' paths relative to the
root, extension included, so read them with ``data.video_ext: ""``) or extracted frames
(``kind="frames"``: ``<root>/<label folder>/<clip>/img_00001.jpg`` or ``<root>/<clip>/...``).

Classes are the sorted label names of every labelled CSV row (present or not), so label indices
do not depend on which clips a copy holds. Listed clips absent from the root, or whose video
decodes no frame (frame folder: gaps in the numbering), are *missing*: counted per split and
named in the report; ``check_missing`` turns too many into an error. A split without labels
(the test CSV) becomes a list of paths, for prediction only.
"""
from __future__ import annotations

import csv
import multiprocessing
import os
import re
from typing import NamedTuple

from dist_train.data.lists import DataError, GeneratedLists, ListEntry, count_video_frames
from dist_train.data.prepare.extract import Progress
from dist_train.data.readers import BadSampleError, count_decoded_frames

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg")
REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validate": "val", "validation": "val", "test": "test", "testing": "test"}
_CLIP_NAME = re.compile(r"^(?P<id>.+)_(?P<start>\d+)_(?P<end>\d+)$")


class KineticsRow(NamedTuple):
    label: str | None     # None: a row without a label (test CSVs)
    youtube_id: str
    time_start: int
    time_end: int
    split: str            # train | val | test
    where: str            # "<csv>:<line>" for messages and the report


def clip_id(youtube_id: str, time_start: int, time_end: int) -> str:
    """The canonical clip name: ``<youtube_id>_<time_start:06d>_<time_end:06d>``."""
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}"


def _split_from_file_name(path):
    name = os.path.basename(path).lower()
    found = {split for word, split in SPLIT_NAMES.items() if word in re.split(r"[^a-z]+", name)}
    return found.pop() if len(found) == 1 else None


def _seconds(text, where, column):
    try:
        value = int(text)  # the usual case; "14.0" is accepted too
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{where}: {column} must be a number of seconds, got {text!r}") from None
    if value < 0 or value != int(value):
        raise DataError(f"{where}: {column} must be a whole, non-negative number, got {text!r}")
    return int(value)


def read_kinetics_csv(path: str) -> list[KineticsRow]:
    """Rows of one annotation CSV. The split comes from the ``split`` column, else from the file
    name (``train``/``val``/``validate``/``test`` as a word); an empty label is no label."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            columns = [c.strip() for c in next(reader, [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise DataError(f"{path}:1: the header lacks {', '.join(missing)} (has "
                                f"{', '.join(columns) or 'nothing'}); expected a Kinetics "
                                f"annotation CSV 'label,youtube_id,time_start,time_end,split'")
            at = {name: i for i, name in enumerate(columns)}
            i_id, i_start, i_end = at["youtube_id"], at["time_start"], at["time_end"]
            i_label, i_split = at.get("label"), at.get("split")
            default_split = _split_from_file_name(path)
            rows = []
            for fields in reader:
                if not fields or fields == [""]:
                    continue  # a blank line
                where = f"{path}:{reader.line_num}"
                if len(fields) != len(columns):
                    raise DataError(f"{where}: {len(fields)} fields, the header has "
                                    f"{len(columns)}")
                youtube_id = fields[i_id].strip()
                if not youtube_id:
                    raise DataError(f"{where}: empty youtube_id")
                raw_split = fields[i_split].strip().lower() if i_split is not None else ""
                split = SPLIT_NAMES.get(raw_split) if raw_split else default_split
                if split is None:
                    raise DataError(f"{where}: unknown split {raw_split!r}; use train, val or test"
                                    if raw_split else f"{where}: no split column and the file "
                                    f"name does not say train, val or test")
                label = (fields[i_label].strip() or None) if i_label is not None else None
                rows.append(KineticsRow(label, youtube_id,
                                        _seconds(fields[i_start], where, "time_start"),
                                        _seconds(fields[i_end], where, "time_end"),
                                        split, where))
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable UTF-8 CSV ({e})") from e
    return rows


def _skipped(name):
    return name.startswith(".") or ".tmp-" in name  # hidden, or an extraction in progress


def scan_clips(root: str, kind: str = "video") -> list[str]:
    """Sorted clip paths under ``root``, relative, '/'-separated: video files (``kind="video"``,
    extension kept) or frame folders (``kind="frames"``), at the top level or one folder down.
    A top-level folder whose name parses as a clip name is a frame folder, otherwise a label
    folder. Hidden and temporary names are skipped."""
    if kind not in ("video", "frames"):
        raise ValueError(f"kind must be 'video' or 'frames', got {kind!r}")
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such folder (the {'video' if kind == 'video' else 'frame'} "
                        f"root)")

    def is_video(entry):
        return entry.is_file() and os.path.splitext(entry.name)[1].lower() in VIDEO_EXTENSIONS

    found = []
    with os.scandir(root) as top:
        for entry in top:
            if _skipped(entry.name):
                continue
            if kind == "video" and is_video(entry):
                found.append(entry.name)
            elif entry.is_dir() and not (kind == "frames" and _CLIP_NAME.match(entry.name)):
                with os.scandir(entry.path) as inner:
                    found.extend(f"{entry.name}/{e.name}" for e in inner if not _skipped(e.name)
                                 and (is_video(e) if kind == "video" else e.is_dir()))
            elif entry.is_dir():
                found.append(entry.name)
    return sorted(found)


def _clip_stem(path, kind):
    name = path.rpartition("/")[2]
    return os.path.splitext(name)[0] if kind == "video" else name


class ClipMatch(NamedTuple):
    path_of: dict          # canonical clip id -> the clip's path (first in sorted order)
    duplicates: list       # [(path, path kept for the same clip)]
    unmatched: list        # paths of clips no CSV row lists


def match_clips(rows, paths, kind: str = "video", keys=None) -> ClipMatch:
    """Match clip paths to CSV rows by youtube_id and times (the file name), not by folder.
    ``keys`` are the rows' clip ids when the caller has them already."""
    wanted = set(keys if keys is not None else
                 (clip_id(r.youtube_id, r.time_start, r.time_end) for r in rows))
    clip_of_id = None  # youtube_id -> its clip id, or None when the id has several clips
    path_of, duplicates, unmatched = {}, [], []
    for path in paths:
        stem = _clip_stem(path, kind)
        m = _CLIP_NAME.match(stem)
        if m is None:
            key = None
        elif len(m["start"]) == 6 and len(m["end"]) == 6:
            key = stem  # already canonical (the usual case: no re-formatting)
        else:
            key = clip_id(m["id"], int(m["start"]), int(m["end"]))
        if key not in wanted:
            if clip_of_id is None:
                clip_of_id = {}
                for r in rows:
                    one = clip_id(r.youtube_id, r.time_start, r.time_end)
                    clip_of_id[r.youtube_id] = one if clip_of_id.get(r.youtube_id, one) == one else None
            key = clip_of_id.get(stem)  # '<youtube_id>.mp4': the id's one clip
        if key is None:
            unmatched.append(path)
        elif key in path_of:
            duplicates.append((path, path_of[key]))
        else:
            path_of[key] = path
    return ClipMatch(path_of, duplicates, unmatched)


def _count_task(args):
    root, path, kind, template = args
    if kind == "frames":
        num_frames, problem = count_video_frames(root, path, template)
        return path, num_frames, problem
    try:
        num_frames = count_decoded_frames(os.path.join(root, path))
    except BadSampleError as e:
        return path, 0, str(e)
    return path, num_frames, None if num_frames else "no decodable frames"


def count_frames(root: str, paths, kind: str = "video", template: str = "img_{:05d}.jpg",
                 workers: int = 1, progress_stream=None) -> dict:
    """{path: (num_frames, problem or None)}: frame folders are listed, videos decoded and their
    frames counted (the container's count is not trusted; a full Kinetics copy takes hours, so
    extract frames first), ``workers`` processes in parallel, progress on stderr."""
    tasks = [(root, path, kind, template) for path in paths]
    progress = Progress(len(tasks), progress_stream, "count frames ")
    counts = {}
    if workers > 1 and len(tasks) > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for path, num_frames, problem in pool.imap_unordered(_count_task, tasks, chunksize=16):
                counts[path] = (num_frames, problem)
                progress.update(failed=bool(problem))
    else:
        for task in tasks:
            path, num_frames, problem = _count_task(task)
            counts[path] = (num_frames, problem)
            progress.update(failed=bool(problem))
    return counts


def kinetics_lists(rows, paths, frame_counts, kind: str = "video") -> GeneratedLists:
    """Lists of the rows whose clips are among ``paths``; ``frame_counts(matched paths)`` ->
    {path: (num_frames, problem)}. Pure apart from that call (the benchmark passes its own)."""
    classes = sorted({r.label for r in rows if r.label is not None})
    label_of = {name: i for i, name in enumerate(classes)}
    keys = [clip_id(r.youtube_id, r.time_start, r.time_end) for r in rows]
    by_split = {}
    for r, key in zip(rows, keys):
        by_split.setdefault(r.split, []).append((r, key))
    match = match_clips(rows, paths, kind, keys)
    counts = frame_counts(sorted(set(match.path_of.values())))
    lists, unlabeled, missing, splits = {}, {}, [], {}
    for split in sorted(by_split):
        split_rows = by_split[split]
        labelled = sum(r.label is not None for r, _ in split_rows)
        if labelled and labelled != len(split_rows):
            bad = next(r for r, _ in split_rows if r.label is None)
            raise DataError(f"{bad.where}: no label, but other {split} rows have one; a split is "
                            f"either labelled or not (the test split)")
        entries, seen, lost = [], set(), 0
        for r, key in split_rows:
            if key in seen:
                continue  # a clip listed twice in one split is listed once
            seen.add(key)
            path = match.path_of.get(key)
            num_frames, problem = counts[path] if path else (0, "no file")
            if problem:
                lost += 1
                missing.append({"split": split, "clip": key, "label": r.label, "csv": r.where,
                                "path": path, "problem": problem})
            elif labelled:
                entries.append(ListEntry(path, num_frames, label_of[r.label]))
            else:
                entries.append(path)
        (lists if labelled else unlabeled)[split] = entries
        splits[split] = {"rows": len(split_rows), "clips": len(seen), "listed": len(entries),
                         "missing": lost, "missing_fraction": round(lost / max(len(seen), 1), 6),
                         "labelled": bool(labelled)}
    report = {"kind": kind, "classes": len(classes), "splits": splits, "missing": missing,
              "duplicate_files": [{"path": p, "kept": k} for p, k in match.duplicates],
              "unlisted_files": len(match.unmatched), "unlisted_examples": match.unmatched[:20]}
    return GeneratedLists(classes, lists, unlabeled, report)


def build_kinetics_lists(csv_paths, root: str, kind: str = "video",
                         template: str = "img_{:05d}.jpg", workers: int = 1) -> GeneratedLists:
    """Read the CSVs, scan ``root`` and count the frames of every matched clip."""
    rows = [row for path in csv_paths for row in read_kinetics_csv(path)]
    if not rows:
        raise DataError(f"{', '.join(csv_paths)}: no rows")
    generated = kinetics_lists(rows, scan_clips(root, kind),
                               lambda paths: count_frames(root, paths, kind, template, workers),
                               kind)
    generated.report.update(csv=[os.path.abspath(p) for p in csv_paths],
                            root=os.path.abspath(root))
    return generated
