"""The paper's flow end to end on synthetic data, on the CPU: a Kinetics-layout copy (annotation
CSVs with awkward class names, clips in renamed label folders, some missing) -> Kinetics lists
(build_lists.py --dataset kinetics) -> compressed JPEG store from the videos -> pretraining as 2
nodes on loopback (two scripts/slurm_launch.sh under simulated Slurm variables -> launch.sh, one
rank each) -> Kinetics-style evaluation (10 clips x 3 crops) -> fine-tuning on a synthetic
UCF-101 set from that run through scripts/run_splits.py (network options and normalisation taken
from the checkpoint, new head) -> video-level result.
"""
import json
import os
import signal
import subprocess

import pytest
import yaml

from helpers import REPO, child_env, free_port, run_cli, worker_logs
from kinetics_fixtures import CLASSES, make_kinetics

pytestmark = pytest.mark.multiproc

# The pretraining run: options and a normalisation the fine-tune config does not state.
PRETRAIN_MODEL = {"name": "resnet-10", "num_classes": len(CLASSES), "width_mult": 0.125, "conv1_t_size": 3,
                  "shortcut": "A", "normalization": "activitynet", "sync_bn": True}


def synthetic_set(base, classes, videos_per_class):
    """make_synthetic -> frames -> split-1 lists; returns (frames root, train list, val list)."""
    run_cli(["data_tools/make_synthetic.py", "--out", f"{base}/videos", "--classes", str(classes),
             "--videos-per-class", str(videos_per_class), "--height", "32", "--width", "40",
             "--min-frames", "8", "--max-frames", "16"])
    run_cli(["data_tools/extract_frames.py", "--src", f"{base}/videos/UCF-101", "--dst", f"{base}/frames"])
    run_cli(["data_tools/build_lists.py", "--frames", f"{base}/frames", "--splits",
             f"{base}/videos/ucfTrainTestlist", "--out", f"{base}/lists"])
    return (f"{base}/frames", f"{base}/lists/ucf101_train_split1.txt",
            f"{base}/lists/ucf101_val_split1.txt")


def write_yaml(path, tree):
    with open(path, "w") as f:
        yaml.safe_dump(tree, f)
    return str(path)


def two_nodes(config, tmp_path, *overrides):
    """Two "nodes" on 127.0.0.1, one CPU rank each, started the way the Slurm batch script starts
    each node: scripts/slurm_launch.sh maps the Slurm variables to the Kinetics recipe for 2 nodes
    (launch.sh --nnodes 2 --master HOST:PORT); ``overrides`` shrink the recipe's batch."""
    port, procs = free_port(), []
    env = child_env(DIST_TRAIN_SKIP_SETUP="1", SLURM_JOB_NUM_NODES="2", SLURM_JOB_ID="1",
                    SLURM_JOB_NODELIST="127.0.0.1", MASTER_PORT=str(port), CONFIG=config)
    for node in range(2):
        cmd = [os.path.join(REPO, "scripts", "slurm_launch.sh"), "--cpu", "--nproc", "1",
               "--max-restarts", "0", "--log_dir", str(tmp_path / f"log{node}"), *overrides]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True))
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:  # a hung node must not leave trainers behind
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if any(p.returncode for p in procs):
        raise AssertionError("\n".join(outputs[i][-3000:] + worker_logs(str(tmp_path / f"log{i}"))
                                       for i in range(2)))
    return port, outputs


def test_pretrain_on_two_nodes_evaluate_kinetics_style_then_finetune(tmp_path):
    # 1. "Kinetics": CSVs + clips -> lists (+ classes.txt) -> compressed JPEG store.
    kinetics = make_kinetics(str(tmp_path / "k"), "folders")
    lists = str(tmp_path / "k" / "lists")
    run_cli(["data_tools/build_lists.py", "--dataset", "kinetics", "--csv",
             *[kinetics["csv"][s] for s in ("train", "validate", "test")], "--videos",
             kinetics["root"], "--out", lists, "--name", "k400", "--workers", "1"])
    train, val = f"{lists}/k400_train.txt", f"{lists}/k400_val.txt"
    assert os.path.isfile(f"{lists}/classes.txt")
    store = str(tmp_path / "k" / "jpeg_store")
    run_cli(["data_tools/prepare_jpeg_store.py", "--src", kinetics["root"], "--ext", "", "--out",
             store, "--lists", train, val, "--workers", "1", "--estimate-sample", "0",
             "--no-space-check"])
    pretrain_dir = str(tmp_path / "kinetics_run")
    pretrain = write_yaml(tmp_path / "kinetics.yaml", {
        "run": {"dir": pretrain_dir}, "model": PRETRAIN_MODEL,
        "data": {"root": store, "source": "jpeg_store", "train_list": train, "val_list": val,
                 "clip_len": 8, "crop_size": 32, "num_workers": 0, "val_clips": 1},
        "train": {"epochs": 1, "batch_size": 4, "lr": 0.1, "lr_base_batch": 8, "seed": 1},
        "optim": {"dampening": 0.9}, "sched": {"name": "plateau", "warmup_epochs": 0.5},
        "val": {"batch_size": 8}, "eval": {"protocol": "10x3", "batch_size": 15},
        "log": {"every_steps": 1, "visualdl": False}, "export": {"at_end": False}})
    # 2. Pretraining as 2 nodes x 1 rank (the recipe's global batch 256 is overridden to 4).
    port, outputs = two_nodes(pretrain, tmp_path, "train.batch_size=4", "sched.warmup_epochs=0.5")
    for output in outputs:  # launch.sh's line: the Slurm variables became --nnodes/--master
        assert f"--nnodes 2 --master 127.0.0.1:{port} " in output
    log = open(os.path.join(pretrain_dir, "train.log")).read()
    assert "2 ranks x 1 micro-steps x 2 clips" in log and "CpuSyncBatchNorm" in log
    assert "1 epochs x 2 steps" in log  # 10 listed training clips (2 missing), global batch 4
    assert os.path.isfile(os.path.join(pretrain_dir, "checkpoints", "best"))
    # 3. Kinetics-style evaluation of the run (its best checkpoint): 10 clips x 3 crops per video.
    proc = run_cli(["dist_train/evaluate.py", "-c", pretrain, "--weights", pretrain_dir])
    report = json.load(open(os.path.join(pretrain_dir, "eval", "report.json")))
    num_val = len(open(val).read().splitlines())
    assert report["protocol"] == "10x3" and report["crops"] == 3
    assert report["num_videos"] == num_val and report["num_items"] == 30 * num_val
    assert all(v["num_clips"] == 10 for v in report["videos"])
    assert report["class_names"] == sorted(CLASSES)  # from classes.txt beside the lists
    assert "video_top1" in proc.stdout
    # 4. Fine-tune on a 4-class "UCF-101" from the pretraining run; the config states neither
    # the network options nor the normalisation: they come from the checkpoint.
    ucf_frames, ucf_train, ucf_val = synthetic_set(tmp_path / "u", 4, 6)
    finetune_dir = str(tmp_path / "ucf_run")
    finetune = write_yaml(tmp_path / "finetune.yaml", {
        "run": {"dir": finetune_dir},
        "model": {"name": "resnet-10", "num_classes": 4, "pretrained": pretrain_dir,
                  "ft_begin_module": "layer4", "sync_bn": False},
        "data": {"root": ucf_frames, "train_list": ucf_train, "val_list": ucf_val, "clip_len": 8,
                 "crop_size": 32, "num_workers": 0, "val_clips": 1},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.01, "seed": 2},
        "val": {"batch_size": 8}, "eval": {"batch_size": 8},
        "log": {"every_steps": 1, "visualdl": False}, "export": {"at_end": False}})
    proc = run_cli([os.path.join(REPO, "scripts", "run_splits.py"), "-c", finetune, "--splits", "1",
                    "--cpu", "--nproc", "1", "--max-restarts", "0"],
                   env=child_env(DIST_TRAIN_SKIP_SETUP="1"), timeout=240)
    split_dir = finetune_dir + "_split1"
    saved = yaml.safe_load(open(os.path.join(split_dir, "config.yaml")))["model"]
    assert (saved["normalization"], saved["conv1_t_size"], saved["width_mult"], saved["shortcut"]) == \
        ("activitynet", 3, 0.125, "A")
    ft_log = open(os.path.join(split_dir, "train.log")).read()
    assert "taken from the initial weights" in ft_log and "new classifier head" in ft_log
    # 5. The video-level result of the fine-tune, per split and mean.
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    ft_report = json.load(open(os.path.join(split_dir, "eval", "report.json")))
    assert ft_report["num_videos"] == len(open(ucf_val).read().splitlines())
    assert ft_report["protocol"] == "paper"
    assert summary["splits"]["1"]["video_top1"] == ft_report["video_top1"] == summary["mean_video_top1"]
    assert summary["written"] == finetune_dir + "_splits.json" and os.path.isfile(summary["written"])
