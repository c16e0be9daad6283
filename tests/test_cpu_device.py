"""launch.sh --cpu (also DIST_TRAIN_GPUS=0 and an empty CUDA_VISIBLE_DEVICES) trains on the CPU
even with a GPU build of Paddle. The launch command launch.sh prints runs here with the
launcher's Paddle patched to be a GPU build seeing 2 GPUs (a sitecustomize; like Paddle's own
count, it reports 0 when CUDA_VISIBLE_DEVICES is set and blank), and the ranks it starts
(tests/device_probe.py) assert the CPU device, the gloo backend and no selected GPU."""
import json
import os
import shlex

import pytest

from helpers import REPO, child_env, free_port, run_in_own_group

SITECUSTOMIZE = '''
import os
if "PADDLE_GLOBAL_RANK" not in os.environ:  # the launcher, not the ranks it starts
    from paddle.base import core
    core.is_compiled_with_cuda = lambda: True
    def _count():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return 0 if visible is not None and not visible.strip() else 2
    core.get_cuda_device_count = _count
'''


def dry_run(args, **env):
    full = dict(os.environ, DIST_TRAIN_SKIP_SETUP="1")
    full.pop("CUDA_VISIBLE_DEVICES", None)
    full.pop("DIST_TRAIN_GPUS", None)
    full.update(env)
    proc = run_in_own_group([os.path.join(REPO, "launch.sh"), "--dry-run", *args], 120, REPO, full)
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout)


def launch_part(cmd):
    """The command up to the training script (env assignments, python, launcher and its flags)."""
    return cmd[:next(i for i, word in enumerate(cmd) if word.endswith("dist_train/train.py"))]


def test_every_cpu_trigger_gives_the_same_cpu_command():
    cpu = launch_part(dry_run(["--cpu", "configs/demo.yaml"], DIST_TRAIN_GPUS="4"))
    assert cpu[:3] == ["env", "CUDA_VISIBLE_DEVICES=", "DIST_TRAIN_DEVICE=cpu"]
    assert "--devices" not in cpu and "--nproc_per_node" in cpu
    assert launch_part(dry_run(["configs/demo.yaml"], DIST_TRAIN_GPUS="0")) == cpu
    assert launch_part(dry_run(["configs/demo.yaml"], CUDA_VISIBLE_DEVICES="")) == cpu
    assert launch_part(dry_run(["configs/demo.yaml"], CUDA_VISIBLE_DEVICES=" ", DIST_TRAIN_GPUS="2")) == cpu
    debug = dry_run(["--cpu", "--debug", "configs/demo.yaml"])
    assert debug[:3] == ["env", "CUDA_VISIBLE_DEVICES=", "DIST_TRAIN_DEVICE=cpu"]


@pytest.mark.multiproc
@pytest.mark.paddle2  # the launcher's device selection differs between 2.6.2 and 3.3.1
def test_cpu_launch_on_a_gpu_build_starts_cpu_ranks(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    cmd = launch_part(dry_run(["--cpu", "--nproc", "2", "configs/demo.yaml"]))
    log_dir = tmp_path / "logs"
    cmd[cmd.index("--log_dir") + 1] = str(log_dir)
    cmd[cmd.index("--log_dir"):cmd.index("--log_dir")] = ["--master", f"127.0.0.1:{free_port()}"]
    out = tmp_path / "out"
    out.mkdir()
    env = child_env(PYTHONPATH=os.pathsep.join([str(site), REPO, os.environ.get("PYTHONPATH", "")]))
    proc = run_in_own_group([*cmd, os.path.join(REPO, "tests", "device_probe.py"), str(out)],
                            timeout=180, cwd=REPO, env=env)
    logs = "".join(p.read_text(errors="replace") for p in sorted(log_dir.glob("workerlog.*")))
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n{logs[-4000:]}"
    seen = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, record in enumerate(seen):
        assert record == {"CUDA_VISIBLE_DEVICES": "", "FLAGS_selected_gpus": None,
                          "PADDLE_DISTRI_BACKEND": "gloo", "device": "cpu", "rank": rank, "world": 2}
