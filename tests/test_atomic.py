"""dist_train.atomic: the one atomic-write implementation (text and bytes) and its old names."""
import os

import pytest

from dist_train import atomic

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


def test_text_and_bytes_replace_the_target_and_leave_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.txt"  # the directory is created
    atomic.atomic_write_text(str(target), "héllo\nworld\n")
    assert target.read_bytes() == "héllo\nworld\n".encode("utf-8")  # "\n" not translated
    atomic.atomic_write_bytes(str(target), b"\x00\x01binary")
    assert target.read_bytes() == b"\x00\x01binary"
    assert os.listdir(target.parent) == ["out.txt"]


def test_permissions_follow_the_umask_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.atomic_write_text(str(tmp_path / "a.txt"), "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "keep.json"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write_text(str(target), "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["keep.json"]


def test_old_names_are_the_same_function():
    from dist_train import rundir
    from dist_train.data import lists

    assert rundir.atomic_write_text is atomic.atomic_write_text
    assert lists.write_text_atomic is atomic.atomic_write_text


def test_an_interrupted_atomic_open_leaves_the_target_alone(tmp_path):
    target = tmp_path / "shard_00001.u8"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic.atomic_open(str(target)) as f:
            f.write(b"partial")
            names = os.listdir(tmp_path)
            temporaries = [n for n in names if atomic.is_temporary(n, "shard_")]
            assert len(temporaries) == 1 and not atomic.is_temporary("shard_00001.u8", "shard_")
            raise RuntimeError("crash")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["shard_00001.u8"]
