"""Kinetics lists from annotation CSVs: a synthetic copy (awkward class names, renamed label
folders or one flat folder, missing clips, a duplicate, an unlisted file, mp4 and mkv)."""
import json
import os
import shlex

import pytest

from dist_train.config import load_config
from dist_train.data.lists import DataError, ListEntry, read_class_names, read_list, read_path_list
from dist_train.data.prepare.extract import extract_all
from dist_train.data.prepare.kinetics import KineticsRow, clip_id, match_clips, read_kinetics_csv
from dist_train.data.prepare.verify import verify_dataset

from helpers import run_cli
from kinetics_fixtures import CLASSES, MISSING, TEST, TRAIN, VAL, make_kinetics

LAYOUTS = ("folders", "flat")


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    base = tmp_path_factory.mktemp("kinetics")
    return {layout: make_kinetics(str(base / layout), layout) for layout in LAYOUTS}


def _build(fx, out, *extra, check=True):
    csvs = [fx["csv"][s] for s in ("train", "validate", "test")]
    return run_cli(["data_tools/build_lists.py", "--dataset", "kinetics", "--csv", *csvs,
                    "--out", str(out), "--name", "k", *extra], check=check)


def _expected(fx, rows, strip_ext=False):
    entries = []
    for label, youtube_id, start, end in rows:
        if youtube_id not in MISSING:
            path, frames = fx["paths"][clip_id(youtube_id, start, end)]
            path = os.path.splitext(path)[0] if strip_ext else path
            entries.append(ListEntry(path, frames, sorted(CLASSES).index(label)) if label else path)
    return entries


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lists_hold_exactly_the_present_clips(copies, tmp_path, layout):
    fx = copies[layout]
    proc = _build(fx, tmp_path, "--videos", fx["root"], "--workers", "2")
    assert read_class_names(str(tmp_path / "classes.txt")) == sorted(CLASSES)
    assert read_list(str(tmp_path / "k_train.txt")) == _expected(fx, TRAIN)
    assert read_list(str(tmp_path / "k_val.txt")) == _expected(fx, VAL)
    assert read_path_list(str(tmp_path / "k_test.txt")) == _expected(fx, TEST)  # no labels
    if layout == "folders":  # matched by id and times: folders lost spaces and quotes
        assert all("/" in e.video and " " not in e.video for e in read_list(str(tmp_path / "k_train.txt")))
    report = json.loads((tmp_path / "k_report.json").read_text())
    missing = {m["clip"]: m for m in report["missing"]}
    assert set(missing) == {clip_id(i, s, e) for _, i, s, e in TRAIN + VAL + TEST if i in MISSING}
    train_missing = [m for m in missing.values() if m["split"] == "train"]
    assert [m["csv"] for m in train_missing] == [f"{fx['csv']['train']}:{k + 2}"
                                                 for k, row in enumerate(TRAIN) if row[1] in MISSING]
    assert all(m["problem"] == "no file" for m in missing.values())
    assert report["splits"]["train"] == {"rows": 12, "clips": 12, "listed": 10, "missing": 2,
                                         "missing_fraction": pytest.approx(2 / 12, abs=1e-6),
                                         "labelled": True}
    assert report["splits"]["test"]["labelled"] is False
    assert [d["kept"] for d in report["duplicate_files"]] == [fx["paths"][clip_id(*TRAIN[0][1:])][0]]
    assert report["unlisted_files"] == 1
    assert "train: 10 clips listed, 2 missing" in proc.stdout
    # the printed overrides load as a config that trains on these lists
    hint = proc.stdout.splitlines()[-1]
    assert hint.startswith("train with: ")
    args = shlex.split(hint[len("train with: "):])
    assert args[::2] == ["-o"] * (len(args) // 2)
    cfg = load_config(None, args[1::2] + [f"run.dir={tmp_path / 'run'}"])
    assert (cfg["data.source"], cfg["data.video_ext"], cfg["model.num_classes"]) == ("video", "", 3)
    assert (cfg["data.root"], cfg["data.train_list"]) == (fx["root"], str(tmp_path / "k_train.txt"))


def test_too_many_missing_is_an_error_naming_the_report(copies, tmp_path):
    fx = copies["flat"]
    proc = _build(fx, tmp_path, "--videos", fx["root"], "--max-missing", "0.1", check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "error" in line]  # not the progress
    assert len(lines) == 1 and lines[0].startswith("error: ") and "too many clips missing (test 16.7%, train 16.7%, val 16.7% > 10%)" \
        in lines[0] and str(tmp_path / "k_report.json") in lines[0], proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["k_report.json"]  # no list written
    proc = _build(fx, tmp_path, "--videos", fx["root"], "--max-missing", "0.17")
    assert (tmp_path / "k_train.txt").exists()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_extracted_frames_give_the_same_lists(copies, tmp_path, layout):
    """Extraction takes flat and per-folder copies with several extensions; lists built on the
    frames hold the same clips (paths without extension) and pass the dataset doctor."""
    fx = copies[layout]
    frames = str(tmp_path / "frames")
    report = extract_all(fx["root"], frames, workers=1, ext=".mp4,.mkv")
    assert report["failed_count"] == 0
    assert [d["file"] for d in report["duplicates"]] == [
        os.path.splitext(fx["paths"][clip_id(*TRAIN[0][1:])][0])[0] + ".mp4"]
    _build(fx, tmp_path / "lists", "--frames", frames)
    train = read_list(str(tmp_path / "lists" / "k_train.txt"))
    assert train == _expected(fx, TRAIN, strip_ext=True)
    checked = verify_dataset(frames, [str(tmp_path / "lists" / f"k_{s}.txt") for s in ("train", "val")],
                             num_classes=3, decode=False)
    assert checked["problems"] == [] and checked["videos"] == 15


def test_csv_problems_name_the_file_and_line(tmp_path):
    path = tmp_path / "kinetics_train.csv"
    path.write_text("label,youtube_id,time_start\nx,abc,1\n")
    with pytest.raises(DataError, match=r"kinetics_train\.csv:1: the header lacks time_end"):
        read_kinetics_csv(str(path))
    path.write_text('label,youtube_id,time_start,time_end\n"a, b",abc,1,11\n"a, b",abd,x,11\n')
    with pytest.raises(DataError, match=r"kinetics_train\.csv:3: time_start must be a number"):
        read_kinetics_csv(str(path))
    for bad, message in (("-1", "time_start must be a whole, non-negative number"),
                         ("1.5", "time_start must be a whole, non-negative number"),
                         ("1,extra", "5 fields, the header has 4")):
        path.write_text(f'label,youtube_id,time_start,time_end\n\n"a, b",abc,{bad},11\n')
        with pytest.raises(DataError, match=rf"kinetics_train\.csv:3: {message}"):
            read_kinetics_csv(str(path))
    path.write_text('label,youtube_id,time_start,time_end\n"a, b",abc,1.0,11\n')
    row, = read_kinetics_csv(str(path))  # split from the file name; "1.0" is 1 second
    assert (row.label, row.youtube_id, row.time_start, row.time_end, row.split) == ("a, b", "abc", 1, 11, "train")
    other = tmp_path / "annotations.csv"
    other.write_text("youtube_id,time_start,time_end\nabc,1,11\n")
    with pytest.raises(DataError, match=r"annotations\.csv:2: no split column"):
        read_kinetics_csv(str(other))


def test_clips_match_by_id_and_times_whatever_the_folder():
    rows = [KineticsRow("a b", "a_b-c00000", 1, 11, "train", "t.csv:2"),
            KineticsRow("a b", "solo_id-xyz", 5, 15, "train", "t.csv:3"),
            KineticsRow("c", "two_clips00", 0, 10, "train", "t.csv:4"),
            KineticsRow("c", "two_clips00", 20, 30, "val", "v.csv:2")]
    paths = ["x/a_b-c00000_1_11.mp4",      # times not zero-padded: still the clip
             "y/a_b-c00000_000001_000011.mkv",  # the same clip again: a duplicate
             "solo_id-xyz.webm",            # no times: the id's only clip
             "two_clips00.mp4",             # no times and two clips: ambiguous
             "z/other_000000_000010.mp4"]   # in no CSV
    match = match_clips(rows, paths)
    assert match.path_of == {"a_b-c00000_000001_000011": "x/a_b-c00000_1_11.mp4",
                             "solo_id-xyz_000005_000015": "solo_id-xyz.webm"}
    assert match.duplicates == [("y/a_b-c00000_000001_000011.mkv", "x/a_b-c00000_1_11.mp4")]
    assert match.unmatched == ["two_clips00.mp4", "z/other_000000_000010.mp4"]
