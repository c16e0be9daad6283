"""launch.sh: device counting, the exact launch command (--dry-run) and rejected flags."""
import os
import shlex

import pytest

from helpers import REPO, run_in_own_group


def run_launch(args, **env):
    full_env = dict(os.environ, DIST_TRAIN_SKIP_SETUP="1", **env)
    for key, value in env.items():
        if value is None:
            full_env.pop(key)
    return run_in_own_group([os.path.join(REPO, "launch.sh"), *args], 120, REPO, full_env)


def dry_run(args, **env):
    proc = run_launch(["--dry-run", *args], **env)
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout)


@pytest.mark.paddle2
def test_cpu_command_passes_multinode_flags_and_overrides(tmp_path):
    cmd = dry_run(["configs/demo.yaml", "train.lr=0.01", "-o", "train.seed=3", "--nnodes", "2",
                   "--master", "10.0.0.1:6170", "--log_dir", str(tmp_path / "logs")],
                  DIST_TRAIN_GPUS="0", OMP_NUM_THREADS=None)
    launch_at = cmd.index("dist_train.dist.cpu_launch")
    assert cmd[:3] == ["env", "CUDA_VISIBLE_DEVICES=", "DIST_TRAIN_DEVICE=cpu"]
    cores = os.cpu_count()
    assert f"OMP_NUM_THREADS={max(1, cores // min(2, cores))}" in cmd
    flags = cmd[launch_at + 1:cmd.index(os.path.join(REPO, "dist_train/train.py"))]
    assert flags == ["--nproc_per_node", str(min(2, cores)), "--nnodes", "2", "--master",
                     "10.0.0.1:6170", "--log_dir", str(tmp_path / "logs")]
    tail = cmd[cmd.index(os.path.join(REPO, "dist_train/train.py")) + 1:]
    assert tail == ["-c", "configs/demo.yaml", "-o", "train.lr=0.01", "-o", "train.seed=3",
                    "--resume", "auto"]


@pytest.mark.paddle2
def test_gpu_devices_follow_cuda_visible_devices():
    cmd = dry_run(["configs/demo.yaml"], DIST_TRAIN_GPUS="2", CUDA_VISIBLE_DEVICES="3,5")
    assert cmd[cmd.index("--devices") + 1] == "3,5" and "--nproc_per_node" not in cmd
    cmd = dry_run(["configs/demo.yaml"], DIST_TRAIN_GPUS="4", CUDA_VISIBLE_DEVICES=None)
    assert cmd[cmd.index("--devices") + 1] == "0,1,2,3"
    # no config: the demo, resumed automatically; log dir under run.dir
    cmd = dry_run([], DIST_TRAIN_GPUS="1", CUDA_VISIBLE_DEVICES=None)
    assert cmd[cmd.index("-c") + 1] == os.path.join(REPO, "configs/demo.yaml")
    assert cmd[cmd.index("--resume") + 1] == "auto"
    assert cmd[cmd.index("--log_dir") + 1].endswith("runs/demo/launch_logs")


@pytest.mark.paddle2
def test_unknown_flags_and_bad_config_are_rejected():
    for args, message in ((["--nproc_per_node", "2"], "unknown option '--nproc_per_node'"),
                          (["--bogus"], "unknown option"),
                          (["configs/demo.yaml", "train.lrr=1"], "did you mean 'train.lr'"),
                          (["no_such.yaml"], "not found"),
                          (["--master", "nohostport"], "HOST:PORT")):
        proc = run_launch(["--dry-run", *args], DIST_TRAIN_GPUS="0")
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    proc = run_launch(["--dry-run", "--max-restarts", "3", "configs/demo.yaml"], DIST_TRAIN_GPUS="0")
    assert proc.returncode == 0  # reserved for the relaunch loop, accepted
