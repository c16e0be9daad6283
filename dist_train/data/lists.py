"""Clip lists and dataset split files.

A clip list line is ``<Class>/<video> <num_frames> <label>`` (0-based label in classInd order).
Split files follow the official formats (REFERENCE §2):

- UCF-101: ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0N.txt`` (``Class/v_x.avi 1``),
  ``testlist0N.txt`` (``Class/v_x.avi``); Windows line endings. The class is taken from the
  folder part of the path because one folder (HandstandPushups) disagrees with its file names
  (HandStandPushups).
- HMDB-51: one file per class and split, ``<class>_test_split<N>.txt`` with lines
  ``video.avi 0|1|2`` (1 = train, 2 = test, 0 = unused).
"""
import os
import re
from typing import NamedTuple

from dist_train.atomic import atomic_write_text
from dist_train.errors import InputError

# The old name, kept for data/extract.py, data/synthetic.py and data/store.py.
write_text_atomic = atomic_write_text


class ListEntry(NamedTuple):
    video: str        # "<Class>/<video>" (no extension)
    num_frames: int
    label: int


class DataError(InputError, ValueError):
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


def read_list_numbered(path):
    """Parse a clip list into ``(line_number, ListEntry)`` pairs; line numbers are the file's
    own (1-based, blank lines counted), so messages can point at the line to fix."""
    entries = []
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 3:
            raise DataError(f"{path}:{number}: expected '<Class>/<video> <num_frames> <label>', "
                            f"got {line!r}")
        try:
            num_frames, label = int(parts[1]), int(parts[2])
        except ValueError:
            raise DataError(f"{path}:{number}: num_frames and label must be integers: {line!r}")
        if num_frames < 1 or label < 0:
            raise DataError(f"{path}:{number}: num_frames must be >= 1 and label >= 0: {line!r}")
        if "/" not in parts[0]:
            raise DataError(f"{path}:{number}: video must be '<Class>/<video>': {parts[0]!r}")
        entries.append((number, ListEntry(parts[0], num_frames, label)))
    if not entries:
        raise DataError(f"{path}: the list is empty")
    return entries


def read_list(path):
    """Parse a clip list into ListEntry items."""
    return [entry for _, entry in read_list_numbered(path)]


def write_list(path, entries):
    atomic_write_text(path, "".join(f"{video} {num_frames} {label}\n"
                                    for video, num_frames, label in entries))


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
