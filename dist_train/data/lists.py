"""Clip lists, class index files and dataset split files.

A clip list line is ``<path> <num_frames> <label>``: the path is everything before the last two
fields, so it may hold spaces (Kinetics class names do); it names the clip under ``data.root``
(``<Class>/<video>`` for UCF-101, a Kinetics file or frame folder in a flat or per-label layout).
Labels are 0-based in class index order. A path cannot start or end with whitespace nor hold a
line break (``write_list`` refuses them). Lines written before paths could hold spaces read the
same.

Class names travel with the lists: ``classes.txt`` (``CLASS_INDEX_FILE``) beside generated lists
holds one name per line, line 1 = label 0 (names may hold any character but a line break).
``class_names_for_lists`` resolves them: that file, else the class folder of each list path
(UCF-101 and HMDB-51 lists, whose folders are the ``classInd.txt`` names).

API for builders and later stores: ``read_list`` / ``write_list`` (``ListEntry`` items),
``read_class_names`` / ``write_class_names``, ``write_path_list`` / ``read_path_list`` (a split
without labels: paths only, for prediction), and ``GeneratedLists`` + ``write_generated_lists``
(what ``prepare/kinetics.py`` and ``prepare/own_folders.py`` return and how it is written:
``<name>_<split>.txt``, ``classes.txt``, ``<name>_report.json``, the missing-clip threshold).

Split files follow the official formats (REFERENCE §2):

- UCF-101: ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0N.txt`` (``Class/v_x.avi 1``),
  ``testlist0N.txt`` (``Class/v_x.avi``); Windows line endings. The class is taken from the
  folder part of the path because one folder (HandstandPushups) disagrees with its file names
  (HandStandPushups).
- HMDB-51: one file per class and split, ``<class>_test_split<N>.txt`` with lines
  ``video.avi 0|1|2`` (1 = train, 2 = test, 0 = unused).
"""
import json
import os
import re
from collections import Counter
from typing import NamedTuple

from dist_train.atomic import atomic_write_text

# The old name, kept for data/extract.py, data/synthetic.py and data/store.py.
write_text_atomic = atomic_write_text


CLASS_INDEX_FILE = "classes.txt"


class ListEntry(NamedTuple):
    video: str        # the clip's path under data.root ("<Class>/<video>" for UCF-101)
    num_frames: int
    label: int


class DataError(ValueError):
    """Bad dataset input; the message names the file (and line) and what to do."""


def _lines(path):
    """(line_number, stripped_text) for non-blank lines; tolerant of CRLF and a BOM."""
    try:
        with open(path, "r", encoding="utf-8-sig", newline=None) as f:
            text = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from e
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            yield number, line


def parse_list_line(line: str, path: str = "<list>", number: int = 0) -> ListEntry:
    """One stripped list line -> ListEntry; errors name ``path:number``."""
    parts = line.rsplit(None, 2)
    try:
        entry = ListEntry(parts[0], int(parts[1]), int(parts[2]))
    except (IndexError, ValueError):
        if len(parts) != 3:
            raise DataError(f"{path}:{number}: expected '<path> <num_frames> <label>', "
                            f"got {line!r}") from None
        raise DataError(f"{path}:{number}: num_frames and label must be integers: "
                        f"{line!r}") from None
    if entry.num_frames < 1 or entry.label < 0:
        raise DataError(f"{path}:{number}: num_frames must be >= 1 and label >= 0: {line!r}")
    return entry


def read_list_numbered(path):
    """Parse a clip list into ``(line_number, ListEntry)`` pairs; line numbers are the file's
    own (1-based, blank lines counted), so messages can point at the line to fix."""
    entries = [(number, parse_list_line(line, path, number)) for number, line in _lines(path)]
    if not entries:
        raise DataError(f"{path}: the list is empty")
    return entries


def read_list(path):
    """Parse a clip list into ListEntry items."""
    return [entry for _, entry in read_list_numbered(path)]


def check_list_path(path: str, where: str = "") -> str:
    """``path`` if a list line can hold it (non-empty, no surrounding whitespace, no line
    break); DataError otherwise."""
    if not path or path != path.strip() or "\n" in path or "\r" in path:
        raise DataError(f"{where or 'list path'}: {path!r} cannot be written to a list (empty, "
                        f"leading/trailing whitespace or a line break); rename the file or folder")
    return path


def write_list(path, entries):
    """Write ``<path> <num_frames> <label>`` lines atomically."""
    atomic_write_text(path, "".join(f"{check_list_path(video, path)} {num_frames} {label}\n"
                                    for video, num_frames, label in entries))


def write_path_list(path, paths):
    """A list of clip paths without frame counts or labels (a test split: prediction only)."""
    atomic_write_text(path, "".join(check_list_path(p, path) + "\n" for p in paths))


def read_path_list(path):
    """The clip paths of a ``write_path_list`` file."""
    return [line for _, line in _lines(path)]


def write_class_names(path, names):
    """``classes.txt``: one class name per line, line 1 = label 0."""
    for name in names:
        check_list_path(name, path)
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names must be unique")
    atomic_write_text(path, "".join(name + "\n" for name in names))


def read_class_names(path):
    """``classes.txt`` -> class names in label order (blank lines are an error: they would
    shift every later label)."""
    try:
        with open(path, "r", encoding="utf-8-sig", newline=None) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DataError(f"cannot read class index {path}: {e.strerror}") from e
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    for number, name in enumerate(names, start=1):
        if not name:
            raise DataError(f"{path}:{number}: blank line in a class index (line n = label n-1)")
    if not names:
        raise DataError(f"{path}: the class index is empty")
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise DataError(f"{path}: class names listed twice: {duplicates[:5]}")
    return names


def class_names_for_lists(list_paths, num_classes, class_index=None):
    """The name of every label ``0..num_classes-1`` for these lists.

    With ``class_index`` (a ``classes.txt``) its names, which must number ``num_classes``.
    Otherwise each label's class folder (the path's first part) from every existing list; a
    label mapped to two folders is an error, a label without a folder is ``class_<i>``.
    Every list label must be below ``num_classes``.
    """
    names = read_class_names(class_index) if class_index else None
    if names is not None and len(names) != num_classes:
        raise DataError(f"{class_index}: {len(names)} classes, but model.num_classes="
                        f"{num_classes}; set model.num_classes={len(names)}")
    folders: dict[int, tuple[str, str]] = {}
    for path in list_paths:
        if path is None or not os.path.isfile(path):
            continue
        for entry in read_list(path):
            if entry.label >= num_classes:
                raise DataError(f"{path}: label {entry.label} of {entry.video} is not below "
                                f"model.num_classes={num_classes}")
            folder, slash, _ = entry.video.partition("/")
            if names is not None or not slash:
                continue
            seen = folders.setdefault(entry.label, (folder, path))
            if seen[0] != folder:
                raise DataError(f"label {entry.label} is class {seen[0]!r} in {seen[1]} but "
                                f"{folder!r} in {path}; the lists disagree (a class index file "
                                f"{CLASS_INDEX_FILE} beside the lists names the classes instead)")
    if names is not None:
        return names
    return [folders[i][0] if i in folders else f"class_{i}" for i in range(num_classes)]


def read_class_ind(path):
    """classInd.txt -> class names in index order (index 1 first)."""
    by_index = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{path}:{number}: expected '<index> <ClassName>', got {line!r}")
        by_index[int(parts[0])] = parts[1]
    if sorted(by_index) != list(range(1, len(by_index) + 1)):
        raise DataError(f"{path}: class indices must be 1..N without gaps")
    return [by_index[i] for i in range(1, len(by_index) + 1)]


def split_video_name(path):
    """'Class/v_x.avi' -> ('Class', 'v_x'): class from the folder part, extension dropped."""
    path = path.replace("\\", "/")
    folder, _, filename = path.rpartition("/")
    return folder.split("/")[-1] if folder else "", os.path.splitext(filename)[0]


def read_ucf_split(path, class_names):
    """A UCF-101 train/test list -> [(class_name, video_name)]; every class must be known."""
    known = set(class_names)
    videos = []
    for number, line in _lines(path):
        class_name, video = split_video_name(line.split()[0])
        if not class_name:
            raise DataError(f"{path}:{number}: expected '<Class>/<video>.avi', got {line!r}")
        if class_name not in known:
            raise DataError(f"{path}:{number}: class {class_name!r} is not in classInd.txt; "
                            f"fix the split file or classInd.txt")
        videos.append((class_name, video))
    return videos


_HMDB_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[123])\.txt$")


def read_hmdb_splits(split_dir, split):
    """HMDB-51 split files -> (class_names sorted, train [(cls, video)], test [(cls, video)])."""
    names = sorted(os.listdir(split_dir))
    per_class = {}
    for name in names:
        m = _HMDB_FILE.match(name)
        if m and int(m.group("split")) == split:
            per_class[m.group("cls")] = os.path.join(split_dir, name)
    if not per_class:
        raise DataError(f"{split_dir}: no '<class>_test_split{split}.txt' files found")
    train, test = [], []
    for class_name in sorted(per_class):
        path = per_class[class_name]
        for number, line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{path}:{number}: expected '<video>.avi 0|1|2', got {line!r}")
            video = os.path.splitext(parts[0])[0]
            if parts[1] == "1":
                train.append((class_name, video))
            elif parts[1] == "2":
                test.append((class_name, video))
    return sorted(per_class), train, test


def ucf_split_files(split_dir, split):
    return (os.path.join(split_dir, "classInd.txt"),
            os.path.join(split_dir, f"trainlist0{split}.txt"),
            os.path.join(split_dir, f"testlist0{split}.txt"))


def count_video_frames(frames_root, video, template):
    """Frames of '<Class>/<video>' on disk -> (num_frames, problem or None).

    num_frames is the highest frame number; a problem is 'missing' (no folder or no frames)
    or a description of the gaps in the numbering.
    """
    from dist_train.data.readers import scan_frame_numbers  # readers does not import lists: no cycle

    folder = os.path.join(frames_root, video)
    if not os.path.isdir(folder):
        return 0, "missing"
    numbers = scan_frame_numbers(folder, template)
    if not numbers:
        return 0, "missing"
    if numbers != list(range(1, numbers[-1] + 1)):
        absent = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        shown = ", ".join(template.format(n) for n in absent[:5])
        return numbers[-1], f"{len(absent)} frame(s) missing in the numbering: {shown}"
    return numbers[-1], None


def build_split_lists(frames_root, split_dir, split, dataset="ucf101",
                      template="img_{:05d}.jpg", allow_missing=False):
    """Clip lists of one official split -> (train entries, val entries, class names, problems).

    UCF-101 has no validation split: the test list serves as validation (as in the paper).
    A video without frames on disk (or with gaps in its frame numbering) is an error naming it;
    with ``allow_missing`` it is left out and listed in ``problems``.
    """
    if dataset == "ucf101":
        class_ind, train_file, test_file = ucf_split_files(split_dir, split)
        classes = read_class_ind(class_ind)
        train, test = read_ucf_split(train_file, classes), read_ucf_split(test_file, classes)
    elif dataset == "hmdb51":
        classes, train, test = read_hmdb_splits(split_dir, split)
    else:
        raise DataError(f"unknown dataset {dataset!r}: use ucf101 or hmdb51")
    label_of = {name: i for i, name in enumerate(classes)}
    problems, lists = [], []
    for videos in (train, test):
        entries = []
        for class_name, video in videos:
            path = f"{class_name}/{video}"
            num_frames, problem = count_video_frames(frames_root, path, template)
            if problem:
                problems.append(f"{os.path.join(frames_root, path)}: {problem}")
            else:
                entries.append(ListEntry(path, num_frames, label_of[class_name]))
        lists.append(entries)
    if problems and not allow_missing:
        shown = "\n  ".join(problems[:20])
        raise DataError(f"{len(problems)} video(s) of split {split} have no usable frames under "
                        f"{frames_root} (extract them, or pass --allow-missing):\n  {shown}")
    return lists[0], lists[1], classes, problems


def list_file_names(dataset, split):
    return f"{dataset}_train_split{split}.txt", f"{dataset}_val_split{split}.txt"


class GeneratedLists(NamedTuple):
    """What a list builder (prepare/kinetics.py, prepare/own_folders.py) produces."""
    classes: list      # class names in label order
    lists: dict        # split -> [ListEntry]
    unlabeled: dict    # split -> [clip path]: splits without labels (prediction only)
    report: dict       # JSON-able; report["splits"][split]["missing_fraction"] is checked


def generated_file_names(name):
    """{split or 'classes' or 'report': file name} of ``write_generated_lists``'s files."""
    return {"classes": CLASS_INDEX_FILE, "report": f"{name}_report.json",
            **{split: f"{name}_{split}.txt" for split in ("train", "val", "test")}}


def write_generated_lists(out_dir, name, generated, max_missing=None):
    """Write ``<name>_report.json``, then the lists ``<name>_<split>.txt`` (empty ones are not
    written) and ``classes.txt`` into ``out_dir``; return {split, 'classes', 'report': path}.

    When a split misses more than ``max_missing`` (a fraction) of its clips, only the report is
    written and a DataError names it. A ``classes.txt`` of other lists is never overwritten.
    """
    files = {k: os.path.join(out_dir, v) for k, v in generated_file_names(name).items()}
    atomic_write_text(files["report"], json.dumps(generated.report, indent=1) + "\n")
    if max_missing is not None:
        over = {s: v["missing_fraction"] for s, v in generated.report["splits"].items()
                if v["missing_fraction"] > max_missing}
        if over:
            shown = ", ".join(f"{s} {f:.1%}" for s, f in sorted(over.items()))
            raise DataError(f"too many clips missing ({shown} > {max_missing:.0%}); no list "
                            f"written. The missing clips are named in {files['report']}; "
                            f"download or repair them, or raise the threshold (--max-missing)")
    if os.path.exists(files["classes"]) and read_class_names(files["classes"]) != generated.classes:
        raise DataError(f"{files['classes']} holds the classes of other lists; write these lists "
                        f"into another folder (--out) or delete that file")
    written = {"report": files["report"]}
    for split, entries in generated.lists.items():
        if entries:  # an empty list would only fail later, when read
            write_list(files[split], entries)
            written[split] = files[split]
    for split, paths in generated.unlabeled.items():
        if paths:
            write_path_list(files[split], paths)
            written[split] = files[split]
    write_class_names(files["classes"], generated.classes)
    written["classes"] = files["classes"]
    return written
