"""Writes that fail (issue 18): a full disk while saving a checkpoint or metrics, and a
read-only target, end in one named line (path, free space), exit 2; the last complete
checkpoint stays the resume point and a run resumed after space is freed continues from it.
A small tmpfs is the full disk where mounting is allowed (root); elsewhere DIST_TRAIN_FAULT
raises the same OSError(ENOSPC) at the write point."""
import os
import subprocess

import pytest

from helpers import child_env, run_cli
from test_train_input_errors import assert_one_named_error
from train_fixtures import make_dataset, write_config


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def fill(path, keep_bytes):
    """Fill the file system of ``path`` up to ``keep_bytes`` free; returns the filler file."""
    filler = os.path.join(path, "filler")
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - keep_bytes))
    return filler


def latest(run_dir):
    with open(os.path.join(run_dir, "checkpoints", "latest")) as f:
        return f.read().strip()


@pytest.mark.paddle2
@pytest.mark.parametrize("where", ["checkpoint", "full_at_start", "metrics_injected"])
def test_disk_full_is_named_and_the_last_checkpoint_resumes(tmp_path, where):
    root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
    mnt = tmp_path / "mnt"
    mounted = mount_tmpfs(mnt, "16m")
    run_dir = str(mnt / "run")
    try:
        cfg = write_config(str(tmp_path / "c.yaml"), root, train_list, val_list, run_dir, **{
            "data.num_workers": 0, "train.batch_size": 2, "val.every_epochs": 0,
            "log.every_steps": 1, "ckpt.every_steps": 1, "train.epochs": 2})
        # a run that stops inside step 2 (SIGKILL test hook): its checkpoint of step 1 remains
        run_cli(["dist_train/train.py", "-c", cfg], check=False,
                env=child_env(DIST_TRAIN_KILL_AT_STEP="2"))
        first = latest(run_dir)
        assert first == "step_000001"
        env, filler = child_env(), None
        if mounted and where != "metrics_injected":  # room for the logs, not a checkpoint
            filler = fill(str(mnt), 40_000 if where == "checkpoint" else 0)
        else:  # the same OSError at the write point (metrics: always, so it is covered too)
            env["DIST_TRAIN_FAULT"] = f"{where.split('_')[0]}_file:enospc"
        proc = run_cli(["dist_train/train.py", "-c", cfg, "--resume", "auto"], check=False, env=env)
        line = assert_one_named_error(proc, "No space left on device", run_dir)
        assert "free" in line, line
        assert latest(run_dir) == first  # still the complete checkpoint of epoch 1
        leftovers = [n for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.startswith(".")]
        assert leftovers == [], leftovers  # the failed save left no temporary directory
        if filler:
            os.remove(filler)
        run_cli(["dist_train/train.py", "-c", cfg, "--resume", "auto"])  # space freed
        assert latest(run_dir) != first  # continued from step 1 to the end
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
    print(f"disk full ({where}) through {'a 16 MB tmpfs' if filler else 'fault injection'}: {line}")


@pytest.mark.paddle2
def test_run_dir_under_a_regular_file_is_named(tmp_path):
    root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    cfg = write_config(str(tmp_path / "c.yaml"), root, train_list, val_list,
                       str(blocker / "run"), **{"data.num_workers": 0})
    proc = run_cli(["dist_train/train.py", "-c", cfg], check=False)
    assert_one_named_error(proc, str(blocker))


@pytest.mark.paddle2
def test_read_only_checkpoint_directory_is_named(tmp_path):
    root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
    run_dir = tmp_path / "run"
    cfg = write_config(str(tmp_path / "c.yaml"), root, train_list, val_list, str(run_dir), **{
        "data.num_workers": 0, "train.batch_size": 2, "val.every_epochs": 0})
    ckpts = run_dir / "checkpoints"
    ckpts.mkdir(parents=True)
    ro = subprocess.run(["mount", "--bind", "-o", "ro", str(ckpts), str(ckpts)], capture_output=True)
    env = child_env() if ro.returncode == 0 else child_env(DIST_TRAIN_FAULT="checkpoint_file:erofs")
    try:
        proc = run_cli(["dist_train/train.py", "-c", cfg], check=False, env=env)
        assert_one_named_error(proc, str(ckpts), "ead-only file system")
    finally:
        if ro.returncode == 0:
            subprocess.run(["umount", "-l", str(ckpts)], check=False)


@pytest.mark.parametrize("tool, args", [
    ("extract_frames.py", ["--dst", "{out}/frames", "--workers", "2"]),
    ("pack_clips.py", ["--source", "video", "--out", "{out}/store", "--no-space-check"]),
    ("prepare_jpeg_store.py", ["--ext", ".avi", "--out", "{out}/store", "--no-space-check"])])
def test_data_tools_on_a_full_disk_name_the_path_and_resume_after_space_is_freed(tmp_path, tool,
                                                                                 args):
    from data_helpers import textured, write_avi

    videos = tmp_path / "videos"
    for k in range(6):  # ~1 MB of frames or store in all
        write_avi(str(videos / f"C{k % 2}" / f"v_C{k % 2}_g{k:02d}_c01.avi"),
                  list(textured(12, 96, 128, seed=k)))
    mnt = tmp_path / "mnt"
    assert mount_tmpfs(mnt, "4m"), "needs root to mount a small tmpfs (a full disk)"
    try:
        filler = fill(str(mnt), 150_000)
        command = [os.path.join("data_tools", tool), "--src", str(videos)] + [
            a.format(out=mnt) for a in args]
        proc = run_cli(command, check=False)
        line = assert_one_named_error(proc, "No space left on device", str(mnt), tool=tool)
        assert "free" in line, line
        os.remove(filler)
        again = run_cli(command, check=False)  # the same command goes on once there is room
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        leftovers = [os.path.join(d, n) for d, _, names in os.walk(mnt) for n in names + _
                     if ".tmp" in n]
        assert leftovers == [], leftovers
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.paddle2
def test_export_to_a_full_disk_is_named_and_leaves_no_temporary_directory(tmp_path):
    import paddle

    from dist_train.models import build_model

    weights = str(tmp_path / "w.pdparams")
    paddle.save(build_model("resnet-10", 4, width_mult=0.125).state_dict(), weights)
    mnt = tmp_path / "mnt"
    assert mount_tmpfs(mnt, "4m"), "needs root to mount a small tmpfs (a full disk)"
    try:
        filler = fill(str(mnt), 20_000)
        command = ["dist_train/export.py", "--weights", weights, "--out", str(mnt / "export"),
                   "-o", "model.name=resnet-10", "-o", "model.num_classes=4",
                   "-o", "model.width_mult=0.125", "-o", f"run.dir={tmp_path / 'run'}"]
        line = assert_one_named_error(run_cli(command, check=False), "No space left on device",
                                      str(mnt / "export"), tool="export.py")
        assert "free" in line and sorted(os.listdir(mnt)) == ["filler"], line
        os.remove(filler)
        run_cli(command)
        assert os.path.isfile(mnt / "export" / "meta.json")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
