"""train.py end to end on a tiny frame dataset: 2 ranks with sync BN (augmentation, 2 loader
workers) and two single-process launchers joined as 2 nodes end with the weights of 1 rank;
resume continues exactly; --debug; batch-size checks."""
import contextlib
import json
import os
import re
import shutil

import pytest

import helpers
from helpers import PYTHON, free_port, launch, popen_in_own_group, run_cli, worker_logs
from resume_helpers import (NOISE_FLOOR_MAX, ONE_STEP_TOLERANCE, assert_bitwise_equal_weights,
                            assert_equivalent_runs, max_weight_difference)
from train_fixtures import make_dataset, write_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("train_data")
    return base, make_dataset(str(base))


@pytest.fixture(scope="module")
def single(data):
    """The reference: one process, 2 epochs x 2 steps, a checkpoint every step."""
    base, dataset = data
    cfg = write_config(str(base / "single.yaml"), *dataset, str(base / "run_single"),
                       **{"train.epochs": 2, "ckpt.every_steps": 1, "ckpt.keep_last": 0})
    run_cli(["dist_train/train.py", "-c", cfg])
    return cfg, str(base / "run_single")


@pytest.fixture(scope="module")
def noise_floor(single):
    """The one-process run again with 2 compute threads: how far rounding alone moves the
    weights after one step (resume_helpers explains the tolerances)."""
    cfg, run_single = single
    run = os.path.join(os.path.dirname(run_single), "run_threads2")
    run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}", "-o", "train.epochs=1",
             "-o", "val.every_epochs=0"], env=helpers.child_env(threads=2))
    floor = max_weight_difference(run_single, run, 1)
    assert floor <= NOISE_FLOOR_MAX, f"rounding noise {floor:.3g} after one step"
    return floor


def rows(run_dir):
    return [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]


def assert_same_losses(first, second):
    """Step 1's loss is computed before any update (rounding only), later ones along the
    trajectory (see resume_helpers)."""
    assert [r["kind"] for r in first] == [r["kind"] for r in second]
    for a, b in zip(first, second):
        if a["kind"] == "train":
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5 if a["global_step"] == 1 else 1e-3)


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_two_ranks_with_sync_bn_match_one_rank(single, noise_floor, tmp_path):
    cfg, run_single = single
    run = str(tmp_path / "run")
    launch(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}"], str(tmp_path / "log"))
    with open(os.path.join(run, "train.log")) as f:
        log = f.read()
    assert "CpuSyncBatchNorm" in log and "2 ranks x 1 micro-steps x 4 clips" in log
    assert "malloc: freed blocks up to 32 MiB stay in the heap" in log  # cpu_keep_freed_memory
    assert "gradients averaged through shared memory" in log
    assert_equivalent_runs(run_single, run, first_step=1)
    first, second = rows(run_single), rows(run)
    assert [r["kind"] for r in first] == ["train"] * 2 + ["epoch"] + ["train"] * 2 + ["epoch"]
    assert_same_losses(first, second)
    # Time waiting for the other rank: measured on the shared-memory transport only.
    assert all("sync_wait" not in r for r in first)
    assert all(0.0 <= r["sync_wait"] <= 1.0 for r in second if r["kind"] == "train")
    assert re.search(r"clips/s data \d+% sync \d+% step", log)
    assert second[-1]["val_clips"] == 16  # 8 videos x 2 clips, each once over the 2 ranks
    assert second[-1]["val_loss"] == pytest.approx(first[-1]["val_loss"], rel=1e-3)
    # Negative control: plain BN on 2 ranks normalises each half batch on its own.
    plain = str(tmp_path / "plain")
    launch(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={plain}", "-o", "model.sync_bn=false",
            "-o", "train.epochs=1", "-o", "val.every_epochs=0"], str(tmp_path / "log_plain"))
    assert max_weight_difference(run_single, plain, 1) > 1000 * ONE_STEP_TOLERANCE


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_two_nodes_on_loopback_match_one_rank(single, noise_floor, tmp_path):
    """Two launchers joined as 2 nodes, with the shared-memory transport off: the path of ranks
    on different hosts (gloo sums for the CPU sync BN, DataParallel's gradient all-reduce)."""
    cfg, run_single = single
    run, port = str(tmp_path / "run"), free_port()
    with contextlib.ExitStack() as stack:  # each node in its own process group, killed at exit
        procs = [stack.enter_context(popen_in_own_group(
            [PYTHON, "-m", "paddle.distributed.launch", "--nnodes", "2", "--master",
             f"127.0.0.1:{port}", "--nproc_per_node", "1", "--log_dir", str(tmp_path / f"log{node}"),
             "dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}"],
            env=helpers.child_env(DIST_TRAIN_SHM_ALLREDUCE="0"))) for node in range(2)]
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise AssertionError("\n".join(outputs[i][-3000:] + worker_logs(str(tmp_path / f"log{i}"))
                                       for i in range(2)))
    with open(os.path.join(run, "train.log")) as f:
        log = f.read()
    assert "2 ranks x 1 micro-steps x 4 clips" in log and "CpuSyncBatchNorm" in log
    assert "small per-step collectives (CPU sync BN, stop agreement) through the backend's " \
           "all-reduce" in log
    assert "through shared memory" not in log
    assert all("sync_wait" not in r for r in rows(run))  # measured on shared memory only
    assert_equivalent_runs(run_single, run, first_step=1)
    assert_same_losses(rows(run_single), rows(run))


@pytest.mark.paddle2
def test_resume_from_a_middle_checkpoint_continues_exactly(single, tmp_path):
    """Resume in the middle of epoch 0 from a copy whose metrics.jsonl still holds the later
    rows, marked stale: the resume must drop them and write the same rows again."""
    cfg, run_single = single
    run = str(tmp_path / "run")
    shutil.copytree(run_single, run)
    ckpts = os.path.join(run, "checkpoints")
    for tag in ("step_000002", "step_000003", "step_000004"):
        shutil.rmtree(os.path.join(ckpts, tag))
    for pointer in ("latest", "best"):
        with open(os.path.join(ckpts, pointer), "w") as f:
            f.write("step_000001")
    metrics = os.path.join(run, "metrics.jsonl")
    rows = [json.loads(line) for line in open(metrics)]
    with open(metrics, "w") as f:  # rows after the checkpoint: stale values the resume must drop
        for r in rows:
            f.write(json.dumps({**r, "loss": -1.0} if r["global_step"] > 1 else r) + "\n")
    proc = run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}", "--resume", "auto",
                    "--accept-config-change"])  # the copied run directory has moved
    assert "resumed at epoch 0 step 1 (global step 1)" in proc.stdout
    assert_bitwise_equal_weights(run_single, run)
    again = [json.loads(line) for line in open(metrics)]
    assert [(r["kind"], r["global_step"]) for r in again] == [
        ("train", 1), ("train", 2), ("epoch", 2), ("train", 3), ("train", 4), ("epoch", 4)]
    for new, old in zip(again, rows):
        keys = set(old) - {"time", "clips_per_s", "data_wait", "step_time", "sync_wait"}
        if new["kind"] == "epoch" and new["global_step"] == 2:
            keys -= {"loss", "top1"}  # averages only the steps after the resume (not saved)
        assert {k: new[k] for k in keys} == {k: old[k] for k in keys}
    again = run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}", "--resume", "auto"])
    assert "nothing to do" in again.stdout
    assert "already finished" in again.stdout


@pytest.mark.paddle2
def test_debug_mode_and_batch_checks(data, tmp_path):
    base, dataset = data
    cfg = write_config(str(tmp_path / "cfg.yaml"), *dataset, str(tmp_path / "run"),
                       **{"train.epochs": 5})
    proc = run_cli(["dist_train/train.py", "-c", cfg, "--debug"])
    assert os.path.isdir(str(tmp_path / "run-debug")) and not os.path.exists(str(tmp_path / "run"))
    assert "2 epochs x 2 steps" in proc.stdout
    bad = run_cli(["dist_train/train.py", "-c", cfg, "--debug", "-o", "train.lr=1.0e+30",
                   "-o", f"run.dir={tmp_path / 'nan'}"], check=False)
    assert bad.returncode != 0 and "FloatingPointError" in bad.stderr
    assert "the loss is" in bad.stderr or "holds NaN/Inf" in bad.stderr
    odd = run_cli(["dist_train/train.py", "-c", cfg, "-o", "train.batch_size=6",
                   "-o", "train.accum_steps=4"], check=False)
    assert odd.returncode != 0 and "must be divisible by world size 1 x train.accum_steps 4" in odd.stderr
