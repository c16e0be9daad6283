"""train.py end to end on a tiny frame dataset: 2 ranks with sync BN (augmentation, 2 loader
workers) and two single-process launchers joined as 2 nodes end with the weights of 1 rank;
resume continues exactly; --debug; batch-size checks."""
import json
import os
import re
import signal
import shutil
import subprocess

import numpy as np
import pytest

import helpers
from helpers import PYTHON, REPO, free_port, launch, run_cli, worker_logs
from train_fixtures import final_weights, make_dataset, write_config


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


def assert_same_weights(run_a, run_b):
    a, b = final_weights(run_a), final_weights(run_b)
    assert a.keys() == b.keys() and len(a) > 30
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_two_ranks_with_sync_bn_match_one_rank(single, tmp_path):
    cfg, run_single = single
    run = str(tmp_path / "run")
    launch(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}"], str(tmp_path / "log"))
    with open(os.path.join(run, "train.log")) as f:
        log = f.read()
    assert "CpuSyncBatchNorm" in log and "2 ranks x 1 micro-steps x 4 clips" in log
    assert "malloc: freed blocks up to 32 MiB stay in the heap" in log  # cpu_keep_freed_memory
    assert_same_weights(run_single, run)
    first = [json.loads(line) for line in open(os.path.join(run_single, "metrics.jsonl"))]
    second = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert [r["kind"] for r in first] == [r["kind"] for r in second] == ["train"] * 2 + ["epoch"] + ["train"] * 2 + ["epoch"]
    for a, b in zip(first, second):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    # Time waiting for the other rank: measured on the shared-memory transport only.
    assert all("sync_wait" not in r for r in first)
    assert all(0.0 <= r["sync_wait"] < 1.0 for r in second if r["kind"] == "train")
    assert re.search(r"clips/s data \d+% sync \d+% step", log)
    assert second[-1]["val_clips"] == 16  # 8 videos x 2 clips, each once over the 2 ranks
    assert second[-1]["val_loss"] == pytest.approx(first[-1]["val_loss"], rel=1e-4)


@pytest.mark.multiproc
def test_two_nodes_on_loopback_match_one_rank(single, tmp_path):
    cfg, run_single = single
    run, port = str(tmp_path / "run"), free_port()
    procs = []
    for node in range(2):
        cmd = [PYTHON, "-m", "paddle.distributed.launch", "--nnodes", "2", "--master",
               f"127.0.0.1:{port}", "--nproc_per_node", "1", "--log_dir", str(tmp_path / f"log{node}"),
               "dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}"]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=helpers.child_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True))
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:  # a hung node must not leave trainers behind
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if any(p.returncode for p in procs):
        raise AssertionError("\n".join(outputs[i][-3000:] + worker_logs(str(tmp_path / f"log{i}"))
                                       for i in range(2)))
    with open(os.path.join(run, "train.log")) as f:
        assert "2 ranks x 1 micro-steps x 4 clips" in f.read()
    assert_same_weights(run_single, run)


@pytest.mark.paddle2
def test_resume_from_a_middle_checkpoint_continues_exactly(single, tmp_path):
    cfg, run_single = single
    run = str(tmp_path / "run")
    shutil.copytree(run_single, run)
    ckpts = os.path.join(run, "checkpoints")
    for tag in ("step_000003", "step_000004"):
        shutil.rmtree(os.path.join(ckpts, tag))
    for pointer in ("latest", "best"):
        with open(os.path.join(ckpts, pointer), "w") as f:
            f.write("step_000002")
    proc = run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}", "--resume", "auto",
                    "--accept-config-change"])  # the copied run directory has moved
    assert "resumed at epoch 1 step 0 (global step 2)" in proc.stdout
    assert_same_weights(run_single, run)
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert [(r["kind"], r["global_step"]) for r in rows] == [
        ("train", 1), ("train", 2), ("epoch", 2), ("train", 3), ("train", 4), ("epoch", 4)]
    again = run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={run}", "--resume", "auto"])
    assert "nothing to do" in again.stdout
    assert "already finished" in again.stdout


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
