"""Exact resume after kill -9 inside a step (test hook DIST_TRAIN_KILL_AT_STEP), on another
world size, after faults in a save, and the restricted --weights loader, all through train.py;
restarts and SIGTERM under launch.sh.

Runs: 2 epochs x 2 optimizer steps of global batch 8 (augmentation on, 2 loader workers, sync
BN), a checkpoint after every step."""
import json
import os
import pickle
import shutil
import signal
import time

import psutil
import pytest

from dist_train.training.preempt import PREEMPTED_EXIT_CODE
from helpers import PYTHON, REPO, launch, popen_in_own_group, run_cli, worker_logs
from resume_helpers import (assert_bitwise_equal_weights, assert_close_losses,
                            assert_delivered_clips_match_keys,
                            assert_equivalent_runs, assert_no_tagged_processes, latest_tag,
                            sample_ids, tagged_env, tiny_config, train_losses)
from train_fixtures import make_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume_data")
    return base, make_dataset(str(base))


@pytest.fixture(scope="module")
def straight(data):
    """The uninterrupted one-process run."""
    base, dataset = data
    run = base / "straight"
    cfg = tiny_config(base, "straight", dataset, run)
    env, tag = tagged_env()
    run_cli(["dist_train/train.py", "-c", cfg], env=env)
    assert_no_tagged_processes(tag)
    return cfg, str(run)


@pytest.fixture(scope="module")
def straight_two_ranks(data):
    base, dataset = data
    run = base / "straight2"
    cfg = tiny_config(base, "straight2", dataset, run)
    env, _ = tagged_env()
    launch(["dist_train/train.py", "-c", cfg], str(base / "straight2_logs"), env=env)
    return cfg, str(run)


def cut_back(run_dir, tag):
    """Drop the checkpoints after ``tag`` and point latest at it (as if the run had died there)."""
    ckpts = os.path.join(run_dir, "checkpoints")
    keep = int(tag.split("_")[1])
    for name in os.listdir(ckpts):
        if name.startswith("step_") and int(name.split("_")[1]) > keep:
            shutil.rmtree(os.path.join(ckpts, name))
    with open(os.path.join(ckpts, "latest"), "w") as f:
        f.write(tag + "\n")


@pytest.mark.paddle2
def test_kill_9_inside_a_step_then_resume_is_bitwise_exact(straight, tmp_path):
    cfg, run_straight = straight
    run = str(tmp_path / "run")
    env, tag = tagged_env(DIST_TRAIN_KILL_AT_STEP="3")
    killed = run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}"], env=env, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "SIGKILL rank 0 inside the step" in killed.stderr
    assert latest_tag(run) == "step_000002"
    assert_no_tagged_processes(tag)  # the loader workers died with their trainer
    env, tag = tagged_env()
    resumed = run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}", "--resume", "auto"],
                      env=env)
    assert "resumed at epoch 1 step 0 (global step 2)" in resumed.stdout
    assert_no_tagged_processes(tag)
    assert_bitwise_equal_weights(run_straight, run)
    assert train_losses(run) == train_losses(run_straight)
    assert [s for s, _ in train_losses(run)] == [1, 2, 3, 4]
    assert sample_ids(run) == sample_ids(run_straight)
    assert len(sample_ids(run)) == 4 and all(len(ids) == 8 for _, _, ids in sample_ids(run))
    assert_delivered_clips_match_keys(cfg, run)


@pytest.mark.multiproc
@pytest.mark.paddle2
def test_two_rank_checkpoint_resumes_on_one_rank(straight_two_ranks, tmp_path):
    cfg, run_two = straight_two_ranks
    run = str(tmp_path / "run")
    shutil.copytree(run_two, run)
    cut_back(run, "step_000001")  # the middle of epoch 0
    proc = run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}", "--resume", "auto",
                    "--accept-config-change"], env=tagged_env()[0])
    assert "resumed at epoch 0 step 1 (global step 1)" in proc.stdout
    assert "saved by 2 rank(s), this job has 1" in proc.stdout
    assert_equivalent_runs(run_two, run, first_step=2)  # resumed after step 1
    assert_close_losses(train_losses(run_two), train_losses(run), first_step=2)
    # after the resume, the one rank consumed both ranks' shares of each step, in rank order
    merged = {}
    for rank in (0, 1):
        for step, epoch, ids in sample_ids(run_two, rank):
            merged.setdefault((step, epoch), []).extend(ids)
    resumed = {(s, e): ids for s, e, ids in sample_ids(run) if s > 1}
    assert resumed == {key: ids for key, ids in merged.items() if key[0] > 1}
    assert sorted(resumed) == [(2, 0), (3, 1), (4, 1)] and all(len(v) == 8 for v in resumed.values())


@pytest.mark.multiproc
@pytest.mark.paddle2
def test_one_rank_checkpoint_resumes_on_two_ranks_over_gloo(straight, tmp_path):
    """1 -> 2 ranks through train.py, mid-epoch, with the shared-memory transport off: the
    cross-host path (gloo sums for the CPU sync BN, DataParallel's all-reduce of gradients)."""
    cfg, run_one = straight
    run = str(tmp_path / "run")
    shutil.copytree(run_one, run)
    cut_back(run, "step_000001")  # the middle of epoch 0
    env, tag = tagged_env(DIST_TRAIN_SHM_ALLREDUCE="0")
    launch(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}", "--resume", "auto",
            "--accept-config-change"], str(tmp_path / "log"), env=env)
    assert_no_tagged_processes(tag)
    with open(os.path.join(run, "train.log")) as f:
        log = f.read()
    assert "resumed at epoch 0 step 1 (global step 1)" in log
    assert "saved by 1 rank(s), this job has 2" in log
    assert "CpuSyncBatchNorm" in log and "through the backend's all-reduce" in log
    assert "through shared memory" not in log
    assert_equivalent_runs(run_one, run, first_step=2)  # resumed after step 1
    assert_close_losses(train_losses(run_one), train_losses(run), first_step=2)
    # after the resume the two ranks consumed the one rank's batches, split in rank order
    one = {(s, e): ids for s, e, ids in sample_ids(run_one)}
    merged = {}
    for rank in (0, 1):
        for step, epoch, ids in sample_ids(run, rank):
            merged.setdefault((step, epoch), []).extend(ids)
    assert sorted(merged) == [(1, 0), (2, 0), (3, 1), (4, 1)]  # step 1 from rank 0's copy
    assert {k: v for k, v in merged.items() if k[0] > 1} == {k: v for k, v in one.items() if k[0] > 1}


@pytest.mark.paddle2
def test_faults_in_a_save_and_a_truncated_file_fall_back(straight, tmp_path):
    cfg, run_straight = straight
    run = str(tmp_path / "run")
    shutil.copytree(run_straight, run)
    cut_back(run, "step_000002")
    args = ["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}", "--resume", "auto",
            "--accept-config-change"]
    died = run_cli(args, env=tagged_env(DIST_TRAIN_FAULT="before_rename:kill")[0], check=False)
    assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
    assert latest_tag(run) == "step_000002"  # the save of step 3 died before its rename
    ckpts = os.path.join(run, "checkpoints")
    assert [n for n in os.listdir(ckpts) if n.startswith(".tmp-step_000003")]
    model_file = os.path.join(ckpts, "step_000002", "model.pdparams")
    with open(model_file, "r+b") as f:
        f.truncate(os.path.getsize(model_file) // 2)
    resumed = run_cli(args, env=tagged_env()[0])
    assert "interrupted save (never renamed into place)" in resumed.stdout
    assert "step_000002/model.pdparams" in resumed.stdout and "truncated" in resumed.stdout
    assert "resumed at epoch 0 step 1 (global step 1)" in resumed.stdout
    assert_bitwise_equal_weights(run_straight, run)


@pytest.mark.paddle2
def test_resume_from_a_sigterm_checkpoint_is_bitwise_exact(data, tmp_path):
    """SIGTERM to a one-process trainer after its first step: it saves where it stops (no
    periodic checkpoints here); resuming from that save and stopping 2 steps later ends where
    an uninterrupted run of the same length ends."""
    base, dataset = data
    run = tmp_path / "run"
    cfg = tiny_config(tmp_path, "long", dataset, run, **{"train.epochs": 500, "ckpt.every_steps": 0,
                                                         "ckpt.every_epochs": 0})
    env, tag = tagged_env()
    with popen_in_own_group([PYTHON, "dist_train/train.py", "-c", cfg], env=env) as proc:
        wait_for_log_line(proc, run / "train.log", "epoch 0 step 1/2")
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
        assert_no_tagged_processes(tag)
    assert proc.returncode == PREEMPTED_EXIT_CODE, out[-4000:]
    with open(run / "PREEMPTED") as f:
        step = json.load(f)["global_step"]
    assert step >= 1 and latest_tag(str(run)) == f"step_{step:06d}"
    stop = f"train.max_steps={step + 2}"
    resumed = run_cli(["dist_train/train.py", "-c", cfg, "-o", stop, "--resume", "auto",
                       "--accept-config-change"], env=tagged_env()[0])
    assert f"(global step {step})" in resumed.stdout
    reference = str(tmp_path / "reference")
    run_cli(["dist_train/train.py", "-c", cfg, "-o", stop, "-o", f"run.dir={reference}"],
            env=tagged_env()[0])
    assert latest_tag(str(run)) == latest_tag(reference) == f"step_{step + 2:06d}"
    assert_bitwise_equal_weights(reference, str(run))
    assert train_losses(str(run)) == train_losses(reference)
    assert sample_ids(str(run)) == sample_ids(reference)


@pytest.mark.paddle2
def test_malicious_weights_pickle_is_refused_without_running_it(straight, tmp_path):
    cfg, _ = straight
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pdparams"
    evil.write_bytes(pickle.dumps({"conv1.weight": Exploit()}, protocol=2))
    proc = run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={tmp_path / 'run'}",
                    "--weights", str(evil)], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"train.py: error: --weights {evil}" in proc.stderr
    assert "os" in proc.stderr and "system" in proc.stderr  # names the refused global
    assert not marker.exists()


# ----------------------------------------------------------------------------- launch.sh
def launch_sh(cfg, run, env, *overrides):
    """launch.sh on 2 CPU ranks with up to 2 restarts, in its own process group (see
    helpers.popen_in_own_group)."""
    return popen_in_own_group([os.path.join(REPO, "launch.sh"), "--cpu", "--nproc", "2",
                               "--max-restarts", "2", cfg, f"run.dir={run}", *overrides],
                              env={**env, "DIST_TRAIN_SKIP_SETUP": "1"})


def wait_for_log_line(proc, log, text, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while not (log.exists() and text in log.read_text()):  # train.log is flushed per line
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-4000:]
        time.sleep(0.05)


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_launch_sh_restarts_after_kill_9_of_rank_1(straight_two_ranks, tmp_path):
    cfg, run_two = straight_two_ranks
    run = str(tmp_path / "run")
    env, tag = tagged_env(DIST_TRAIN_KILL_AT_STEP="4", DIST_TRAIN_KILL_RANK="1")
    with launch_sh(cfg, run, env) as proc:
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, out[-4000:] + worker_logs(os.path.join(run, "launch_logs"))
        assert_no_tagged_processes(tag)  # no trainer or loader worker outlives the job
    assert "restart 1 of 2, resuming" in out and "attempt 3" not in out
    with open(os.path.join(run, "train.log")) as f:
        log = f.read()
    assert "resumed at epoch 1 step 1 (global step 3)" in log  # in the middle of an epoch
    assert latest_tag(run) == "step_000004" and [s for s, _ in train_losses(run)] == [1, 2, 3, 4]
    # 2 -> 2 ranks is bitwise: the shared-memory sums add the ranks in rank order every time
    assert_bitwise_equal_weights(run_two, run)
    assert train_losses(run) == train_losses(run_two)
    for rank in (0, 1):
        assert sample_ids(run, rank) == sample_ids(run_two, rank)


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_launch_sh_does_not_retry_an_input_error(straight_two_ranks, tmp_path):
    """A missing train list passes launch.sh's config check and fails in the trainer (exit 2):
    the same failure would repeat, so there is no second attempt."""
    cfg, _ = straight_two_ranks
    run, missing = str(tmp_path / "run"), str(tmp_path / "no_such_list.txt")
    env, tag = tagged_env()
    with launch_sh(cfg, run, env, f"data.train_list={missing}") as proc:
        out = proc.communicate(timeout=300)[0]
        assert_no_tagged_processes(tag)
    assert proc.returncode == 2, out[-4000:]
    assert "stopped on an input error (exit code 2" in out and "attempt 2" not in out
    logs = worker_logs(os.path.join(run, "launch_logs"))
    assert missing in out + logs  # the trainer's message names the file


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_sigterm_to_the_launcher_saves_at_the_agreed_step(data, tmp_path):
    base, dataset = data
    run = tmp_path / "run"
    cfg = tiny_config(tmp_path, "long", dataset, run, **{"train.epochs": 500, "ckpt.every_steps": 0,
                                                         "ckpt.every_epochs": 0})
    env, tag = tagged_env()
    with launch_sh(cfg, str(run), env) as proc:
        wait_for_log_line(proc, run / "train.log", "epoch 1 step 1/2")
        launcher = [p for p in psutil.Process(proc.pid).children()  # the CPU launch's launcher
                    if "dist_train.dist.cpu_launch" in " ".join(p.cmdline())]
        assert len(launcher) == 1
        launcher[0].send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
        assert_no_tagged_processes(tag)
    # (no time bound: the exit code and the marker show the agreed save, not the launcher's
    # SIGKILL after its grace period, happened)
    assert proc.returncode == PREEMPTED_EXIT_CODE, out[-4000:]
    assert "attempt 2" not in out
    with open(run / "PREEMPTED") as f:
        marker = json.load(f)
    step = marker["global_step"]
    assert 3 <= step < 1000 and marker["signal"] == "SIGTERM"
    assert latest_tag(str(run)) == f"step_{step:06d}"
    with open(run / "checkpoints" / f"step_{step:06d}" / "state.json") as f:
        assert json.load(f)["train_state"]["global_step"] == step
    # Both ranks stopped after the same step (the launcher signals rank 0's process group
    # first; rank 1 may learn of the stop from the all-reduced flag before its own signal).
    assert [sample_ids(str(run), rank)[-1][0] for rank in (0, 1)] == [step, step]
    assert "received SIGTERM: will save a checkpoint" in worker_logs(str(run / "launch_logs"))
    assert f"stopped on a signal after global step {step}; checkpoint" in (run / "train.log").read_text()
