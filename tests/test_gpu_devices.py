"""GPU selection that CPU can check: the 1-GPU recipe under a CUDA_VISIBLE_DEVICES that does not
start at 0 (Paddle's launcher reads --devices as labels of that list; its own selection code runs
here on the printed command), launch.sh refusing a --devices label that is not visible, and the
demo's global batch rounded up to a multiple of any GPU count with the lr scaled."""
import os
import shlex

import pytest

from dist_train.config import load_config
from dist_train.training.loop import check_batch
from dist_train.training.optim import scaled_base_lr
from helpers import REPO, child_env, run_cli, run_in_own_group

PADDLE_SELECTION = """
import sys
from paddle.distributed.launch.context.device import Device
print(",".join(Device.parse_device().get_selected_devices(sys.argv[1])))
"""


def run(args, **env):
    full = dict(os.environ, DIST_TRAIN_SKIP_SETUP="1")
    full.pop("CUDA_VISIBLE_DEVICES", None)
    full.update(env)
    return run_in_own_group(args, 120, REPO, full)


@pytest.mark.parametrize("visible", ["3", "2,5"])
def test_one_gpu_recipe_uses_a_visible_label(visible):
    proc = run(["scripts/train_ucf101_1gpu.sh", "--dry-run"], CUDA_VISIBLE_DEVICES=visible,
               DIST_TRAIN_GPUS=str(len(visible.split(","))))
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout)
    devices = cmd[cmd.index("--devices") + 1]
    assert devices == visible.split(",")[0]
    # Paddle's own launcher selection with this environment: the first visible GPU, index 0
    selected = run_cli(["-c", PADDLE_SELECTION, devices],
                       env=child_env(CUDA_VISIBLE_DEVICES=visible)).stdout.strip()
    assert selected == "0"


def test_devices_outside_cuda_visible_devices_is_a_clear_error():
    proc = run(["./launch.sh", "--devices", "0", "--dry-run", "configs/demo.yaml"],
               CUDA_VISIBLE_DEVICES="3", DIST_TRAIN_GPUS="1")
    assert proc.returncode == 2
    assert "'0' is not in CUDA_VISIBLE_DEVICES=3" in proc.stderr and "--devices 3" in proc.stderr
    ok = run(["./launch.sh", "--devices", "5", "--dry-run", "configs/demo.yaml"],
             CUDA_VISIBLE_DEVICES="2,5", DIST_TRAIN_GPUS="2")
    assert ok.returncode == 0 and "--devices 5" in ok.stdout


@pytest.mark.parametrize("gpus", [1, 3, 5, 6, 7])
def test_demo_batch_is_rounded_to_the_gpu_count_and_lr_scaled(gpus):
    proc = run(["./launch.sh", "--round-batch", "--dry-run", "configs/demo.yaml"],
               DIST_TRAIN_GPUS=str(gpus))
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout)
    overrides = [cmd[i + 1] for i, word in enumerate(cmd) if word == "-o"]
    cfg = load_config(os.path.join(REPO, "configs/demo.yaml"), overrides)
    batch = cfg["train.batch_size"]
    check_batch(cfg, gpus)  # raises when the batch does not divide
    assert 16 <= batch < 16 + gpus and batch % gpus == 0
    assert ("train.batch_size=" in " ".join(overrides)) == (batch != 16)
    assert scaled_base_lr(cfg) == pytest.approx(0.005 * batch / 16)
    assert f"--devices {','.join(map(str, range(gpus)))}" in shlex.join(cmd).replace("'", "")


def test_demo_asks_launch_sh_to_round_the_batch():
    with open(os.path.join(REPO, "scripts", "demo.sh"), encoding="utf-8") as f:
        launches = [line for line in f if '"$REPO/launch.sh"' in line and not line.startswith("#")]
    assert launches and all("--round-batch" in line for line in launches)


def test_predict_device_gpu_n_is_parsed_and_never_falls_back_silently(tmp_path):
    from dist_train.config import load_config
    from dist_train.deploy import predict as deploy_predict
    from dist_train.deploy.export import export_model
    from videoeval_fixtures import make_fixture

    assert [deploy_predict.gpu_index(d) for d in ("cpu", "gpu", "gpu:0", "gpu:3")] == [None, 0, 0, 3]
    for bad in ("gpu:", "gpu:x", "cuda:1", "GPU"):
        with pytest.raises(ValueError, match="cpu, gpu or gpu:N"):
            deploy_predict.gpu_index(bad)
    fixture = make_fixture(str(tmp_path))
    out = export_model(load_config(fixture["config"]), fixture["weights"], str(tmp_path / "export"))
    assert deploy_predict.InferenceModel(out, "cpu").config.use_gpu() is False
    # This Paddle is a CPU build: a GPU request is an error naming the device, not a CPU run.
    proc = run_cli(["dist_train/predict.py", "--model", out, "--video", fixture["root"],
                    "--device", "gpu:1"], check=False)
    assert proc.returncode == 2 and "device gpu:1: this Paddle build cannot run inference on a GPU" in proc.stderr
