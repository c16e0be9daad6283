"""List format (paths with spaces, old lists), the class index file and where class names come
from (data.class_index, classes.txt beside the lists, class folders)."""
import pytest

from dist_train.config import load_config
from dist_train.data import factory
from dist_train.data.lists import (CLASS_INDEX_FILE, DataError, GeneratedLists, ListEntry,
                                   read_class_names, read_list, read_list_numbered,
                                   write_class_names, write_generated_lists, write_list)

AWKWARD = ["jumping 'high' (in place)", "passing American football (in game)",
           'tying bow tie, "fast"']


def test_paths_with_spaces_round_trip_and_old_lists_read(tmp_path):
    entries = [ListEntry("passing American football (in game)/x_000001_000011.mp4", 250, 1),
               ListEntry("flat_clip_000003_000013", 12, 0),  # no class folder: flat layout
               ListEntry("a  b\tc/v 1", 7, 2)]                 # inner runs of whitespace kept
    path = tmp_path / "list.txt"
    write_list(str(path), entries)
    assert read_list(str(path)) == entries
    # a list written before paths could hold spaces (CRLF, blank lines) reads as before
    old = tmp_path / "old.txt"
    old.write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01 120 0\r\n\r\nArchery/v_x 9 1\r\n")
    assert read_list_numbered(str(old)) == [
        (1, ListEntry("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 120, 0)),
        (3, ListEntry("Archery/v_x", 9, 1))]


@pytest.mark.parametrize("line, message", [
    ("onlypath 12", "expected '<path> <num_frames> <label>'"),
    ("a b c 12 x", "num_frames and label must be integers"),
    ("a b c 0 1", "num_frames must be >= 1"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"ok/clip 3 0\n{line}\n")
    with pytest.raises(DataError, match=rf"bad\.txt:2: {message}"):
        read_list(str(path))


@pytest.mark.parametrize("bad", [" leading", "trailing ", "two\nlines", ""])
def test_write_list_refuses_paths_a_line_cannot_hold(tmp_path, bad):
    with pytest.raises(DataError, match="cannot be written to a list"):
        write_list(str(tmp_path / "l.txt"), [ListEntry(bad, 3, 0)])
    assert not (tmp_path / "l.txt").exists()


def test_class_index_round_trip_and_errors(tmp_path):
    path = tmp_path / CLASS_INDEX_FILE
    write_class_names(str(path), AWKWARD)
    assert path.read_text() == "".join(n + "\n" for n in AWKWARD)
    assert read_class_names(str(path)) == AWKWARD
    path.write_text("a\n\nb\n")
    with pytest.raises(DataError, match=r"classes\.txt:2: blank line"):
        read_class_names(str(path))
    path.write_text("a\nb\na\n")
    with pytest.raises(DataError, match="listed twice"):
        read_class_names(str(path))


def _cfg(tmp_path, **overrides):
    return load_config(None, [f"run.dir={tmp_path / 'run'}",
                              *(f"{k}={v}" for k, v in overrides.items())])


def test_class_names_from_the_index_beside_the_lists(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    write_list(str(lists / "train.txt"), [ListEntry("passing_American_football_(in_game)/a.mp4", 9, 1),
                                          ListEntry("flat_000001_000002.mp4", 9, 2)])
    write_list(str(lists / "val.txt"), [ListEntry("b.mp4", 9, 0)])
    base = {"data.train_list": lists / "train.txt", "data.val_list": lists / "val.txt",
            "model.num_classes": 3}
    # without a class index: the class folder where there is one, class_<i> otherwise
    assert factory.class_names(_cfg(tmp_path, **base)) == [
        "class_0", "passing_American_football_(in_game)", "class_2"]
    write_class_names(str(lists / CLASS_INDEX_FILE), AWKWARD)
    assert factory.class_names(_cfg(tmp_path, **base)) == AWKWARD
    # with a class index, folders need not name classes (two labels in one folder are fine)
    write_list(str(lists / "test.txt"), [ListEntry("downloads/a.mp4", 9, 0),
                                         ListEntry("downloads/b.mp4", 9, 1)])
    assert factory.class_names(_cfg(tmp_path, **base, **{"data.test_list": lists / "test.txt"})) == AWKWARD
    # data.class_index wins over the discovered file
    other = tmp_path / "other.txt"
    write_class_names(str(other), ["x y", "z", "w"])
    assert factory.class_names(_cfg(tmp_path, **base, **{"data.class_index": other})) == ["x y", "z", "w"]
    with pytest.raises(DataError, match=r"classes\.txt: 3 classes, but model.num_classes=4"):
        factory.class_names(_cfg(tmp_path, **{**base, "model.num_classes": 4}))
    two = tmp_path / "two.txt"
    two.write_text("a\nb\n")
    with pytest.raises(DataError, match="label 2 of flat_000001_000002.mp4 is not below "
                                        "model.num_classes=2"):
        factory.class_names(_cfg(tmp_path, **{**base, "model.num_classes": 2,
                                              "data.class_index": two}))


def test_generated_lists_threshold_and_foreign_class_index(tmp_path):
    report = {"splits": {"train": {"missing_fraction": 0.25}, "val": {"missing_fraction": 0.0}}}
    generated = GeneratedLists(["a b", "c"], {"train": [ListEntry("a b/x.mp4", 5, 0)],
                                              "val": [ListEntry("c/y.mp4", 5, 1)]},
                               {"test": ["z.mp4"]}, report)
    with pytest.raises(DataError, match=r"train 25\.0% > 20%.*name_report\.json"):
        write_generated_lists(str(tmp_path), "name", generated, max_missing=0.2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["name_report.json"]  # report only
    with_empty = generated._replace(lists={**generated.lists, "val": []})
    assert "val" not in write_generated_lists(str(tmp_path), "name", with_empty)
    assert not (tmp_path / "name_val.txt").exists()  # an empty list is not written
    written = write_generated_lists(str(tmp_path), "name", generated, max_missing=0.3)
    assert read_list(written["train"]) == generated.lists["train"]
    assert (tmp_path / "name_test.txt").read_text() == "z.mp4\n"
    assert read_class_names(written["classes"]) == ["a b", "c"]
    with pytest.raises(DataError, match="holds the classes of other lists"):
        write_generated_lists(str(tmp_path), "other", generated._replace(classes=["q", "r"]))
