"""The test environments never touch the venv launch.sh uses: on a machine whose nvidia-smi lists
a GPU (a stand-in on PATH here), setup.sh plans the GPU wheel for launch.sh's .venv, and the CPU
wheels for the test legs in venvs of their own (scripts/test_legs.sh, as scripts/test.sh uses
them). Only ``setup.sh --plan`` runs: nothing is installed or downloaded."""
import os
import shlex
import sys

from helpers import REPO, run_in_own_group

SETUP = os.path.join(REPO, "scripts", "setup.sh")


def stand_in_gpu_env(tmp_path, **extra):
    """PATH with an nvidia-smi that lists one GPU; no venv or Paddle choice inherited."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Stand-in GPU (UUID: GPU-00000000)'\n")
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DIST_TRAIN_VENV", "DIST_TRAIN_PADDLE", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env.update(extra)
    return env


def plan(env, *args):
    proc = run_in_own_group([SETUP, "--plan", *args], 60, REPO, env)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


def leg_definitions():
    proc = run_in_own_group(["bash", "-c", f'REPO={shlex.quote(REPO)}; source scripts/test_legs.sh; '
                             'echo "$TEST_LEG1_VENV $TEST_LEG1_PADDLE $TEST_LEG2_VENV $TEST_LEG2_PADDLE"'],
                            60, REPO, dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split()
    return [(out[0], out[1]), (out[2], out[3])]


def test_launch_venv_gets_the_gpu_wheel_and_test_legs_their_own_cpu_venvs(tmp_path):
    env = stand_in_gpu_env(tmp_path)
    launch = plan(env)
    assert launch["venv"] == os.path.join(REPO, ".venv")
    assert launch["paddle"] == "paddlepaddle-gpu==2.6.2" and launch["reason"] == "nvidia-smi lists a GPU"
    legs = leg_definitions()
    venvs = {launch["venv"]}
    for venv, requirement in legs:
        assert "-gpu" not in requirement
        # what test.sh runs before the leg, and what a test's launch.sh/setup.sh sees in it
        leg_env = dict(env, DIST_TRAIN_VENV=venv, DIST_TRAIN_PADDLE=requirement)
        for args in (("--test",), ()):
            leg = plan(leg_env, *args)
            assert (leg["venv"], leg["paddle"]) == (venv, requirement), leg
        venvs.add(venv)
        cmd = run_in_own_group([os.path.join(REPO, "launch.sh"), "--dry-run", "configs/demo.yaml"],
                               120, REPO, dict(leg_env, DIST_TRAIN_SKIP_SETUP="1", DIST_TRAIN_GPUS="0"))
        assert cmd.returncode == 0, cmd.stderr
        assert os.path.join(venv, "bin", "python") in cmd.stdout
    assert len(venvs) == 3, "a test leg shares a venv with launch.sh or the other leg"
    with open(os.path.join(REPO, "scripts", "test.sh"), encoding="utf-8") as f:
        script = f.read()
    assert 'source "$REPO/scripts/test_legs.sh"' in script and "/.venv\"" not in script


def test_other_paddle_flavour_is_planned_for_removal(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    site = venv / "lib" / "python3.11" / "site-packages"
    (site / "paddlepaddle-3.3.1.dist-info").mkdir(parents=True)
    gpu = plan(stand_in_gpu_env(tmp_path, DIST_TRAIN_VENV=str(venv)))
    assert (gpu["paddle"], gpu["remove"], gpu["action"]) == ("paddlepaddle-gpu==2.6.2", "paddlepaddle", "install")
    cpu = plan(stand_in_gpu_env(tmp_path, DIST_TRAIN_VENV=str(venv), DIST_TRAIN_PADDLE="paddlepaddle==3.3.1"))
    assert cpu["remove"] == "" and cpu["action"] == "install"
    (site / "paddlepaddle_gpu-2.6.2.dist-info").mkdir()
    assert plan(stand_in_gpu_env(tmp_path, DIST_TRAIN_VENV=str(venv), DIST_TRAIN_PADDLE="paddlepaddle==3.3.1"))["remove"] == "paddlepaddle-gpu"


def test_launch_warns_when_a_gpu_machine_has_a_cpu_paddle(tmp_path):
    """A GPU machine whose venv holds a CPU Paddle (e.g. after the old test.sh installed one over
    paddlepaddle-gpu) is named, not trained on the CPU without a word; --cpu stays quiet."""
    env = stand_in_gpu_env(tmp_path, DIST_TRAIN_SKIP_SETUP="1",
                           DIST_TRAIN_VENV=os.environ.get("DIST_TRAIN_VENV", os.path.join(REPO, ".venv")))
    env.pop("DIST_TRAIN_GPUS", None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    launch = os.path.join(REPO, "launch.sh")
    proc = run_in_own_group([launch, "--dry-run", "configs/demo.yaml"], 120, REPO, env)
    assert proc.returncode == 0, proc.stderr
    assert "nvidia-smi lists GPUs but the Paddle of" in proc.stderr and "counts none" in proc.stderr
    quiet = run_in_own_group([launch, "--cpu", "--dry-run", "configs/demo.yaml"], 120, REPO, env)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
