"""Clip lists for a user's own data: ``<root>/<class>/<clip>`` with a train/val split by source.

Each class folder holds video files (``kind="video"``; list paths keep the extension, so read
them with ``data.video_ext: ""``) or frame folders (``kind="frames"``). Class names are the
folder names, sorted (any characters: spaces, parentheses, apostrophes).

Clips cut from one source (one recording, one YouTube video) share a scene; if some land in
training and others in validation, validation measures memory of the scene. So every clip gets
a *source group* and whole groups go to one split (``source_group``):

- ``group_regex`` (the user's): its first capture group, else its whole match, searched in the
  clip name (extension dropped); a clip it does not match is an error;
- otherwise UCF-101's ``..._gXX_cYY`` -> ``gXX`` (the same group number in every class, as in the
  official splits), a Kinetics ``<youtube_id>_<start>_<end>`` -> the youtube_id, else the clip
  itself.

The split is a pure function of the clip names and ``seed`` (not of listing order, machine or
run): groups are taken in the order of a SHA-256 of ``seed`` and the group key, and a group goes
to validation while every class it holds has fewer validation clips than ``val_fraction`` of
its clips (rounded) and keeps a training clip without it; the rest is training.
"""
from __future__ import annotations

import hashlib
import os
import re

from dist_train.data.lists import DataError, GeneratedLists, ListEntry
from dist_train.data.prepare.kinetics import VIDEO_EXTENSIONS, count_frames

_UCF_GROUP = re.compile(r"_g(\d+)_c\d+$")
_KINETICS_CLIP = re.compile(r"^(.+)_\d+_\d+$")


def scan_class_folders(root: str, kind: str = "video"):
    """(class names sorted, [(class name, clip path, clip name)]) of ``<root>/<class>/<clip>``."""
    if kind not in ("video", "frames"):
        raise ValueError(f"kind must be 'video' or 'frames', got {kind!r}")
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such folder (one sub-folder per class expected)")
    classes, clips = [], []
    for class_name in sorted(os.listdir(root)):
        folder = os.path.join(root, class_name)
        if class_name.startswith(".") or not os.path.isdir(folder):
            continue
        found = []
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.startswith(".") or ".tmp-" in name:  # hidden, or an extraction in progress
                continue
            stem, ext = os.path.splitext(name)
            if kind == "video" and os.path.isfile(path) and ext.lower() in VIDEO_EXTENSIONS:
                found.append((class_name, f"{class_name}/{name}", stem))
            elif kind == "frames" and os.path.isdir(path):
                found.append((class_name, f"{class_name}/{name}", name))
        if found:
            classes.append(class_name)
            clips.extend(found)
    if not clips:
        what = "video files" if kind == "video" else "frame folders"
        raise DataError(f"{root}: no class folders with {what} ({'/'.join(VIDEO_EXTENSIONS)}"
                        if kind == "video" else f"{root}: no class folders with {what}")
    return classes, clips


def source_group(class_name: str, clip_name: str, group_regex=None) -> str:
    """The key of the source a clip was cut from (see the module docstring)."""
    if group_regex is not None:
        m = group_regex.search(clip_name)
        if not m:
            raise DataError(f"{class_name}/{clip_name}: --group-regex '{group_regex.pattern}' does "
                            f"not match this clip name; every clip needs a source group")
        return "re:" + (m.group(1) if m.groups() else m.group(0))
    m = _UCF_GROUP.search(clip_name)
    if m:
        return f"ucf:g{int(m.group(1)):02d}"
    m = _KINETICS_CLIP.match(clip_name)
    if m:
        return "youtube:" + m.group(1)
    return f"clip:{class_name}/{clip_name}"


def split_by_group(clips, val_fraction: float, seed: int = 0):
    """clips [(class, path, group)] -> set of the validation groups (see module docstring)."""
    if not 0 <= val_fraction < 1:
        raise DataError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    per_class, group_classes = {}, {}
    for class_name, _, group in clips:
        per_class[class_name] = per_class.get(class_name, 0) + 1
        counts = group_classes.setdefault(group, {})
        counts[class_name] = counts.get(class_name, 0) + 1
    target = {c: round(val_fraction * n) for c, n in per_class.items()}
    in_val = dict.fromkeys(per_class, 0)

    def order(group):
        return hashlib.sha256(f"{seed}\0{group}".encode()).hexdigest(), group

    val_groups = set()
    for group in sorted(group_classes, key=order):
        counts = group_classes[group]
        if all(in_val[c] < target[c] and in_val[c] + n < per_class[c] for c, n in counts.items()):
            val_groups.add(group)
            for c, n in counts.items():
                in_val[c] += n
    return val_groups


def build_folder_lists(root: str, kind: str = "video", template: str = "img_{:05d}.jpg",
                       val_fraction: float = 0.2, group_regex: str | None = None, seed: int = 0,
                       workers: int = 1) -> GeneratedLists:
    """Train/val lists of ``<root>/<class>/<clip>``; unreadable clips are left out (missing)."""
    classes, found = scan_class_folders(root, kind)
    try:
        pattern = re.compile(group_regex) if group_regex else None
    except re.error as e:
        raise DataError(f"--group-regex {group_regex!r}: {e}") from None
    clips = [(c, path, source_group(c, name, pattern)) for c, path, name in found]
    val_groups = split_by_group(clips, val_fraction, seed)
    counts = count_frames(root, [path for _, path, _ in clips], kind, template, workers)
    label_of = {name: i for i, name in enumerate(classes)}
    lists = {"train": [], "val": []}
    missing, splits = [], {}
    for class_name, path, group in clips:
        split = "val" if group in val_groups else "train"
        num_frames, problem = counts[path]
        if problem:
            missing.append({"split": split, "path": path, "group": group, "problem": problem})
        else:
            lists[split].append(ListEntry(path, num_frames, label_of[class_name]))
    for split, entries in lists.items():
        lost = sum(m["split"] == split for m in missing)
        total = len(entries) + lost
        splits[split] = {"clips": total, "listed": len(entries), "missing": lost,
                         "missing_fraction": round(lost / max(total, 1), 6),
                         "groups": len({g for _, _, g in clips if (g in val_groups) == (split == "val")})}
    per_class = {c: {"train": 0, "val": 0} for c in classes}
    for split, entries in lists.items():
        for e in entries:
            per_class[classes[e.label]][split] += 1
    report = {"kind": kind, "root": os.path.abspath(root), "classes": len(classes),
              "val_fraction": val_fraction, "seed": seed, "group_regex": group_regex,
              "splits": splits, "per_class": per_class, "val_groups": sorted(val_groups),
              "missing": missing,
              "classes_without_val": [c for c, n in per_class.items() if not n["val"]]}
    return GeneratedLists(classes, lists, {}, report)
