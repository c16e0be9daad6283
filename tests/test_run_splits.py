"""scripts/run_splits.py: the paper's protocol over splits 1-3 (train + video-level evaluation per
split, per-split and mean top-1). The commands it runs are checked here with --dry-run and its
summary on hand-written reports; tests/test_kinetics_flow.py runs it for real."""
import importlib.util
import json
import os
import sys

import pytest

from helpers import REPO, run_in_own_group

SCRIPT = os.path.join(REPO, "scripts", "run_splits.py")


def load_module():
    spec = importlib.util.spec_from_file_location("run_splits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args):
    return run_in_own_group([sys.executable, SCRIPT, *args], 60, REPO, dict(os.environ))


def test_dry_run_trains_and_evaluates_each_split_of_hmdb51():
    config = os.path.join(REPO, "configs", "r3d18_kinetics_finetune_hmdb51.yaml")
    proc = run("-c", config, "--dry-run", "--nproc", "1", "train.epochs=3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 6
    lists = os.path.join(REPO, "data", "hmdb51", "lists")
    for n, (train, evaluate) in enumerate(zip(lines[0::2], lines[1::2]), start=1):
        run_dir = os.path.join(REPO, "runs", f"r3d18_kinetics_finetune_hmdb51_split{n}")
        keys = (f"train.epochs=3 run.dir={run_dir} data.train_list={lists}/hmdb51_train_split{n}.txt "
                f"data.val_list={lists}/hmdb51_val_split{n}.txt")
        assert train == f"{REPO}/launch.sh --nproc 1 {config} {keys}"
        assert evaluate.endswith(f"{REPO}/dist_train/evaluate.py -c {config} -o "
                                 + keys.replace(" ", " -o ") + f" --weights {run_dir} --out-dir {run_dir}/eval")


def test_bad_input_is_one_line_and_exit_code_2(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  train_list: {tmp_path}/train.txt\n  val_list: {tmp_path}/val.txt\n")
    proc = run("-c", str(config), "--dry-run")
    assert proc.returncode == 2 and "data.train_list" in proc.stderr and "names no split" in proc.stderr
    assert run("-c", str(config), "--splits", "4").returncode == 2
    proc = run("--dry-run")
    assert proc.returncode == 2 and "-c CONFIG" in proc.stderr
    config.write_text(f"data:\n  train_list: {tmp_path}/u_train_split1.txt\n  val_list: {tmp_path}/u_val_split1.txt\n")
    proc = run("-c", str(config), "--splits", "2")
    assert proc.returncode == 2 and "u_train_split2.txt" in proc.stderr


def test_summary_has_every_split_and_the_mean(tmp_path):
    module = load_module()
    reports = {s: {"video_top1": top1, "video_top5": 0.9, "clip_top1": 0.5, "num_videos": 10,
                   "protocol": "paper", "path": f"r{s}"} for s, top1 in ((1, 0.8), (2, 0.7), (3, 0.9))}
    summary = module.summarize("c.yaml", reports)
    assert list(summary["splits"]) == ["1", "2", "3"]
    assert summary["mean_video_top1"] == pytest.approx(0.8)
    assert summary["splits"]["2"]["video_top1"] == 0.7 and summary["protocol"] == ["paper"]
    json.dumps(summary)
