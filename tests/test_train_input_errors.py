"""The error policy on training input (issue 18): every input problem ends in exactly one
'train.py: error:' line naming the file, exit code 2, no traceback; a bug keeps its traceback
and exits 1. Loader faults are checked for both loaders and 0 / 2 workers at the loader (fast),
and end to end through train.py and launch.sh."""
import os
import shutil

import numpy as np
import pytest

from data_helpers import write_avi
from helpers import REPO, child_env, run_cli, run_in_own_group
from train_fixtures import make_dataset, write_config

WORKERS_STARTED = "worker processes started"  # the shm loader's log line when it forks workers


def error_lines(text, tool="train.py"):
    return [line for line in text.splitlines() if line.startswith(f"{tool}: error:")]


def assert_one_named_error(proc, *names, tool="train.py"):
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    lines = error_lines(output, tool)
    assert len(lines) == 1, lines
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def first_video(list_path, index=0):
    with open(list_path) as f:
        return f.read().split("\n")[index].split()[0]


def damage(folder, how):
    """Every frame of a video folder made unreadable: 'empty' (0 bytes) or 'truncated' (the
    first 100 bytes of the JPEG kept)."""
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(b"" if how == "empty" else data[:100])


def make_avi_dataset(base):
    """Two classes of small MJPG videos and a list for data.source=video; returns (root, list)."""
    rng = np.random.default_rng(0)
    root, lines = os.path.join(base, "videos"), []
    for label, name in enumerate(["A", "B"]):
        for k in range(3):
            video = f"{name}/v_{name}_{k}"
            frames = [rng.integers(0, 255, (32, 40, 3), dtype=np.uint8) for _ in range(10)]
            write_avi(os.path.join(root, video + ".avi"), frames)
            lines.append(f"{video} 10 {label}")
    list_path = os.path.join(base, "videos.txt")
    with open(list_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return root, list_path


def corrupt_avi(path):
    """Zero the last two thirds of an AVI: the header survives, most frames do not decode."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 3)
        f.write(b"\0" * (size - size // 3))
    return path


# ------------------------------------------------------------------ loaders (both kinds, 0/2 workers)
@pytest.mark.parametrize("loader_kind", ["shm", "stock"])
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("fault", ["empty", "truncated", "deleted", "avi"])
def test_loader_raises_one_named_input_error(tmp_path, loader_kind, workers, fault):
    from dist_train.data.datasets import TrainClipDataset
    from dist_train.data.lists import read_list
    from dist_train.data.loader import make_loader
    from dist_train.data.readers import FrameFolderReader, VideoReader
    from dist_train.data.sampler import GlobalBatchSampler
    from dist_train.errors import InputError

    if fault == "avi":
        root, list_path = make_avi_dataset(str(tmp_path))
        video = first_video(list_path, 1)
        bad = corrupt_avi(os.path.join(root, video + ".avi"))
        reader = VideoReader(root)
    else:
        root, list_path, _ = make_dataset(str(tmp_path / "data"), videos_per_class=3)
        video = first_video(list_path, 1)
        folder = os.path.join(root, video)
        if fault == "deleted":
            bad = os.path.join(folder, "img_00002.jpg")
            os.remove(bad)
        else:
            damage(folder, fault)
            bad = folder
        reader = FrameFolderReader(root)
    entries = read_list(list_path)
    dataset = TrainClipDataset(entries, reader, clip_len=16, crop_size=16, seed=0,
                               train_crop="center", num_classes=4)
    loader = make_loader(dataset, GlobalBatchSampler(len(entries), 2, seed=0), workers, loader_kind)
    with pytest.raises(InputError) as caught:
        for _ in loader:
            pass
    message = str(caught.value)
    assert bad in message and "\n" not in message and "Traceback" not in message, message
    if hasattr(loader, "close"):
        loader.close()


# ------------------------------------------------------------------ train.py end to end
def _config(tmp_path, root, train_list, val_list, **extra):
    settings = {"data.num_workers": 2, "train.batch_size": 4, "data.clip_len": 16,
                "val.every_epochs": 0, "ckpt.every_epochs": 0, **extra}
    return write_config(str(tmp_path / "c.yaml"), root, train_list, val_list,
                        str(tmp_path / "run"), **settings)


@pytest.mark.paddle2
@pytest.mark.parametrize("fault, loader_kind, workers", [
    ("empty", "shm", 2), ("truncated", "stock", 2), ("deleted_after_checks", "shm", 0),
    ("avi", "stock", 0), ("validation", "shm", 2)])
def test_content_fault_is_one_line_exit_2(tmp_path, fault, loader_kind, workers):
    env = child_env()
    if fault == "avi":
        root, train_list = make_avi_dataset(str(tmp_path))
        bad = corrupt_avi(os.path.join(root, first_video(train_list, 2) + ".avi"))
        cfg = _config(tmp_path, root, train_list, train_list, **{
            "data.source": "video", "data.loader": loader_kind, "data.num_workers": workers,
            "model.num_classes": 2, "train.batch_size": 6,
            "data.check_lists": False})  # the header is intact: the checks would pass anyway
    elif fault == "validation":  # a frame only the validation list reads, removed after the checks
        root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
        bad = os.path.join(root, first_video(val_list, 1), "img_00002.jpg")
        env["DIST_TRAIN_DELETE_AFTER_CHECKS"] = bad
        cfg = _config(tmp_path, root, train_list, val_list, **{"val.every_epochs": 1})
    else:
        root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
        folder = os.path.join(root, first_video(train_list, 1))
        if fault == "deleted_after_checks":
            bad = os.path.join(folder, "img_00003.jpg")
            env["DIST_TRAIN_DELETE_AFTER_CHECKS"] = bad  # removed once the checks passed
        else:
            damage(folder, fault)
            bad = folder
        cfg = _config(tmp_path, root, train_list, val_list,
                      **{"data.loader": loader_kind, "data.num_workers": workers})
    proc = run_cli(["dist_train/train.py", "-c", cfg], check=False, env=env)
    assert_one_named_error(proc, bad)
    if loader_kind == "shm" and workers:  # the error came from a worker process
        assert WORKERS_STARTED in proc.stdout


@pytest.mark.paddle2
@pytest.mark.parametrize("fault", ["missing_video", "label", "malformed"])
def test_list_fault_stops_before_any_loader_worker(tmp_path, fault):
    root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
    with open(train_list) as f:
        lines = f.read().splitlines()
    if fault == "missing_video":
        shutil.rmtree(os.path.join(root, lines[1].split()[0]))
        expected = [f"{train_list}:2", lines[1].split()[0]]
    elif fault == "label":
        lines[2] = lines[2].rsplit(" ", 1)[0] + " 4"  # 4 classes: labels 0..3
        expected = [f"{train_list}:3", "label 4", "model.num_classes"]
    else:
        lines[3] = lines[3].replace(" ", "\t", 1) + " extra"
        expected = [f"{train_list}:4"]
    with open(train_list, "w") as f:
        f.write("\n".join(lines) + "\n")
    cfg = _config(tmp_path, root, train_list, val_list)
    proc = run_cli(["dist_train/train.py", "-c", cfg], check=False)
    assert_one_named_error(proc, *expected)
    assert WORKERS_STARTED not in proc.stdout + proc.stderr


@pytest.mark.paddle2
@pytest.mark.parametrize("loader_kind", ["shm", "stock"])
def test_label_out_of_range_is_caught_per_sample_when_checks_are_off(tmp_path, loader_kind):
    from dist_train.data.datasets import TrainClipDataset
    from dist_train.data.lists import read_list
    from dist_train.data.loader import make_loader
    from dist_train.data.readers import FrameFolderReader
    from dist_train.data.sampler import GlobalBatchSampler
    from dist_train.errors import InputError

    root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
    with open(train_list) as f:
        lines = f.read().splitlines()
    lines = [line.rsplit(" ", 1)[0] + " 7" for line in lines]  # every label outside 0..3
    with open(train_list, "w") as f:
        f.write("\n".join(lines) + "\n")
    # Through train.py, reading the class names already names the bad label (before workers).
    cfg = _config(tmp_path, root, train_list, val_list, **{"data.check_lists": False})
    proc = run_cli(["dist_train/train.py", "-c", cfg], check=False)
    assert_one_named_error(proc, "label 7", "model.num_classes")
    # The per-sample check in the loader workers is the last line before the loss.
    entries = read_list(train_list)
    dataset = TrainClipDataset(entries, FrameFolderReader(root), clip_len=16, crop_size=16,
                               seed=0, train_crop="center", num_classes=4)
    loader = make_loader(dataset, GlobalBatchSampler(len(entries), 2, seed=0), 2, loader_kind)
    with pytest.raises(InputError, match="label 7 is outside 0..3"):
        for _ in loader:
            pass
    if hasattr(loader, "close"):
        loader.close()


@pytest.mark.paddle2
def test_injected_bug_in_the_trainer_keeps_its_traceback(tmp_path):
    root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
    cfg = _config(tmp_path, root, train_list, val_list)
    proc = run_cli(["dist_train/train.py", "-c", cfg], check=False,
                   env=child_env(DIST_TRAIN_FAULT="train_step"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" in proc.stderr and "InjectedFault" in proc.stderr
    assert not error_lines(proc.stderr)


# ------------------------------------------------------------------ launch.sh: 2 ranks
def _launch_sh(args, env_extra, timeout=240):
    env = child_env(DIST_TRAIN_VENV=os.path.dirname(os.path.dirname(child_env_python())),
                    DIST_TRAIN_SKIP_SETUP="1", **env_extra)
    return run_in_own_group([os.path.join(REPO, "launch.sh"), *args], timeout, REPO, env)


def child_env_python():
    import sys
    return sys.executable


def rank1_video(train_list, batch_size, seed=5):
    """A video of rank 1's share of the first global batch (2 ranks): only rank 1 reads it."""
    from dist_train.data.sampler import GlobalBatchSampler

    with open(train_list) as f:
        lines = f.read().splitlines()
    sampler = GlobalBatchSampler(len(lines), batch_size, 1, 2, seed)
    sampler.set_epoch(0, 0)
    return lines[int(sampler.rank_slice(sampler.global_batch(0))[0])].split()[0]


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_bad_video_on_rank_1_stops_both_ranks_once_named_no_retry(tmp_path):
    import time

    root, train_list, val_list = make_dataset(str(tmp_path / "data"))
    folder = os.path.join(root, rank1_video(train_list, 4))
    damage(folder, "empty")
    cfg = _config(tmp_path, root, train_list, val_list)
    start = time.monotonic()
    proc = _launch_sh([cfg, "--cpu", "--nproc", "2", "--max-restarts", "2"],
                      {"DIST_TRAIN_SHM_TIMEOUT_S": "120"})
    took = time.monotonic() - start
    line = assert_one_named_error(proc, folder, "rank 1 of 2")
    output = proc.stdout + proc.stderr
    assert output.count("launch.sh: attempt") == 1, output[-3000:]
    assert "not restarting" in output
    assert not os.path.exists(tmp_path / "run" / "PREEMPTED")
    assert "No ccache found. Please" not in output  # neither the launcher process nor the trainers
    assert took < 120, took  # long before the lowered communication timeout
    print(f"2 ranks, one launcher: stopped in {took:.1f} s: {line}")


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_injected_bug_in_a_loader_worker_is_retried_by_launch_sh(tmp_path):
    root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
    cfg = _config(tmp_path, root, train_list, val_list)
    proc = _launch_sh([cfg, "--cpu", "--nproc", "1", "--max-restarts", "1"],
                      {"DIST_TRAIN_FAULT": "load_sample"})
    output = proc.stdout + proc.stderr
    assert proc.returncode not in (0, 2), output[-3000:]
    assert output.count("launch.sh: attempt") == 2, output[-3000:]
    assert "InjectedFault" in output and "Traceback" in output
    assert not error_lines(output)


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_bad_video_on_rank_1_across_two_launchers(tmp_path):
    """2 nodes on loopback: two launch.sh, one process each; rank 1 (on one of them) reads the
    bad video. Both launchers end with exit 2 and no retry; the file is named once in all."""
    import subprocess
    import time

    from helpers import free_port

    root, train_list, val_list = make_dataset(str(tmp_path / "data"))
    folder = os.path.join(root, rank1_video(train_list, 4))
    damage(folder, "empty")
    cfg = _config(tmp_path, root, train_list, val_list)
    master = f"127.0.0.1:{free_port()}"
    env = child_env(DIST_TRAIN_VENV=os.path.dirname(os.path.dirname(child_env_python())),
                    DIST_TRAIN_SKIP_SETUP="1", DIST_TRAIN_SHM_TIMEOUT_S="120")
    start = time.monotonic()
    nodes = [subprocess.Popen([os.path.join(REPO, "launch.sh"), cfg, "--cpu", "--nproc", "1",
                               "--nnodes", "2", "--master", master, "--max-restarts", "2",
                               "--log_dir", str(tmp_path / f"logs{node}")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                              env=env, start_new_session=True) for node in range(2)]
    outputs = []
    try:
        for proc in nodes:
            outputs.append(proc.communicate(timeout=180)[0])
    finally:
        for proc in nodes:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
    took = time.monotonic() - start
    assert [proc.returncode for proc in nodes] == [2, 2], "\n=====\n".join(o[-3000:] for o in outputs)
    both = "\n".join(outputs)
    assert "Traceback" not in both
    assert [line for line in error_lines(both) if folder in line] == error_lines(both)
    assert len(error_lines(both)) == 1, error_lines(both)
    assert both.count("launch.sh: attempt") == 2  # one per node: no retry
    assert not os.path.exists(tmp_path / "run" / "PREEMPTED")
    assert took < 120, took
    print(f"2 ranks, two launchers: stopped in {took:.1f} s")


@pytest.mark.paddle2
def test_skip_bad_samples_names_the_skipped_files(tmp_path):
    import json

    root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
    folder = os.path.join(root, first_video(train_list, 1))
    damage(folder, "empty")
    cfg = _config(tmp_path, root, train_list, val_list, **{"data.skip_bad_samples": True,
                                                          "train.epochs": 2})
    proc = run_cli(["dist_train/train.py", "-c", cfg])
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        epochs = [row for row in map(json.loads, f) if row["kind"] == "epoch"]
    assert [row["bad_samples"] for row in epochs] == [1, 1]  # that video, once per epoch
    for row in epochs:
        assert len(row["bad_sample_files"]) == 1 and row["bad_sample_files"][0].startswith(folder)
    assert "2 bad sample(s) replaced in this run, from 1 file(s): " + folder in proc.stdout


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_input_error_of_one_rank_outside_the_agreement_is_not_retried(tmp_path):
    """Rank 1 fails in its step (after the agreement): rank 0 waits in the step's collectives
    until the launcher SIGKILLs it, so the launcher reports -9; rank 1's exit record
    (<run.dir>/logs/exit.rank1.json) still makes launch.sh exit 2 without a retry."""
    root, train_list, val_list = make_dataset(str(tmp_path / "data"))
    cfg = _config(tmp_path, root, train_list, val_list)
    proc = _launch_sh([cfg, "--cpu", "--nproc", "2", "--max-restarts", "2"],
                      {"DIST_TRAIN_FAULT": "train_step:input@1"})
    assert_one_named_error(proc, "injected input error")
    output = proc.stdout + proc.stderr
    assert output.count("launch.sh: attempt") == 1, output[-3000:]
    assert "after a rank recorded an input error" in output
    assert not os.path.exists(tmp_path / "run" / "PREEMPTED")
