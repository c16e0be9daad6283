"""Kinetics-400 pretraining recipes: 1 x 8, 2 x 8 and 4 x 8 GPUs and the Slurm batch script print
the exact launch line (--dry-run, 8 simulated GPUs, Slurm variables set by hand), and the two
configs hold the paper's protocol with the lr scaled linearly to the recipes' global batches."""
import os
import socket

import pytest

from helpers import REPO, run_in_own_group

PY = os.path.join(os.environ.get("DIST_TRAIN_VENV", os.path.join(REPO, ".venv")), "bin", "python")
LAUNCH = f"{PY} -m paddle.distributed.launch --devices 0\\,1\\,2\\,3\\,4\\,5\\,6\\,7"
TRAIN = f"{REPO}/dist_train/train.py"
R50 = f"{REPO}/configs/r3d50_kinetics400.yaml"
RX101 = f"{REPO}/configs/resnext101_kinetics400.yaml"
SLURM_VARS = ("SLURM_JOB_NUM_NODES", "SLURM_NNODES", "SLURM_JOB_NODELIST", "SLURM_JOB_ID",
              "SLURM_SUBMIT_DIR", "MASTER", "MASTER_PORT", "CONFIG", "WARMUP_EPOCHS")


def run(args, cwd=REPO, **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in SLURM_VARS and k != "CUDA_VISIBLE_DEVICES"}
    env.update(DIST_TRAIN_GPUS="8", **env_extra)
    return run_in_own_group(args, 120, str(cwd), env)


def printed(args, **env_extra):
    proc = run(args, **env_extra)
    assert proc.returncode == 0, proc.stderr
    return [line.strip() for line in proc.stdout.strip().splitlines()]


def expected_line(config, run_name, nodes=1, master=None, batch=None, extra=""):
    multi = f" --nnodes {nodes} --master {master}" if nodes > 1 else ""
    # Beyond one node every node logs into its own folder (worker logs are named by local rank).
    node_logs = f"/{socket.gethostname()}" if nodes > 1 else ""
    overrides = f" -o train.batch_size={batch} -o sched.warmup_epochs=5" if batch else ""
    return (f"{LAUNCH}{multi} --log_dir {REPO}/runs/{run_name}/launch_logs{node_logs} {TRAIN} "
            f"-c {config}{overrides}{extra} --resume auto")


@pytest.mark.parametrize("script,nodes,batch", [("train_kinetics400_8gpu.sh", 1, None),
                                                ("train_kinetics400_2nodes.sh", 2, 256),
                                                ("train_kinetics400_4nodes.sh", 4, 512)])
def test_node_recipes_print_the_exact_launch_line(script, nodes, batch):
    master = "10.0.0.1:6170" if nodes > 1 else None
    env = {"MASTER": master} if master else {}
    assert printed([f"./scripts/{script}", "--dry-run"], **env) == [
        expected_line(R50, "r3d50_kinetics400", nodes, master, batch)]
    # ResNeXt-101 through CONFIG; extra overrides come last and win.
    assert printed([f"./scripts/{script}", "--dry-run", "amp.enabled=true"],
                   CONFIG="configs/resnext101_kinetics400.yaml", **env) == [
        expected_line(RX101, "resnext101_kinetics400", nodes, master, batch, " -o amp.enabled=true")]


def test_node_logs_follow_run_dir_and_an_explicit_log_dir_wins(tmp_path):
    out = printed(["./scripts/train_kinetics400_2nodes.sh", "--dry-run", f"run.dir={tmp_path}/r"],
                  MASTER="h:1")[0]
    assert f"--log_dir {tmp_path}/r/launch_logs/{socket.gethostname()} " in out
    out = printed(["./scripts/train_kinetics400_2nodes.sh", "--dry-run", "--log_dir", str(tmp_path)],
                  MASTER="h:1")[0]
    assert f"--log_dir {tmp_path} " in out and "launch_logs" not in out
    proc = run(["./scripts/train_kinetics400_2nodes.sh", "--dry-run", "train.lrr=1"], MASTER="h:1")
    assert proc.returncode == 2 and "did you mean 'train.lr'" in proc.stderr


def test_multi_node_recipes_require_master():
    for script in ("train_kinetics400_2nodes.sh", "train_kinetics400_4nodes.sh"):
        proc = run([f"./scripts/{script}", "--dry-run"])
        assert proc.returncode == 2 and "MASTER=HOST:PORT" in proc.stderr, proc.stderr


@pytest.mark.parametrize("nodelist,host", [("gpu[01-04]", "gpu01"), ("gpu[07,09-12]", "gpu07"),
                                           ("node7,node9", "node7"), ("dgx[3-4]-ib", "dgx3-ib"),
                                           ("single", "single")])
def test_slurm_batch_script_maps_slurm_variables(nodelist, host, tmp_path):
    # sbatch runs a spooled copy of the script: the repository comes from SLURM_SUBMIT_DIR.
    spooled = tmp_path / "slurm_script"
    spooled.write_text(open(os.path.join(REPO, "scripts", "train_kinetics400.sbatch")).read())
    lines = printed(["bash", str(spooled), "--dry-run"], SLURM_JOB_NUM_NODES="4",
                    SLURM_JOB_NODELIST=nodelist, SLURM_JOB_ID="123457", SLURM_SUBMIT_DIR=REPO)
    assert lines == [
        f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 {REPO}/scripts/slurm_launch.sh --dry-run",
        expected_line(R50, "r3d50_kinetics400", 4, f"{host}:23457", 512)]


def test_slurm_node_count_port_and_config_choices():
    lines = printed(["./scripts/slurm_launch.sh", "--dry-run", "train.epochs=100"],
                    SLURM_NNODES="2", SLURM_JOB_NODELIST="a[5-6]", MASTER_PORT="29999",
                    CONFIG="configs/resnext101_kinetics400.yaml")
    assert lines == [expected_line(RX101, "resnext101_kinetics400", 2, "a5:29999", 256,
                                   " -o train.epochs=100")]
    one = printed(["./scripts/slurm_launch.sh", "--dry-run"], SLURM_JOB_NUM_NODES="1",
                  SLURM_JOB_NODELIST="solo", SLURM_JOB_ID="5")
    assert one == [expected_line(R50, "r3d50_kinetics400")]  # one node: no --nnodes, batch 128


def test_slurm_scripts_outside_slurm_fail_clearly(tmp_path):
    proc = run(["./scripts/slurm_launch.sh", "--dry-run"])
    assert proc.returncode == 2 and "SLURM_JOB_NUM_NODES is not set" in proc.stderr
    proc = run(["bash", os.path.join(REPO, "scripts", "train_kinetics400.sbatch"), "--dry-run"],
               cwd=str(tmp_path), SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="a1,a2")
    assert proc.returncode == 2 and "submit from the repository root" in proc.stderr


def test_kinetics_configs_hold_the_paper_protocol_and_scale_lr():
    from dist_train.config import load_config
    from dist_train.models import build_model, model_options
    from dist_train.models.from_config import network_options
    from dist_train.training.optim import scaled_base_lr

    for path, model in ((R50, "resnet-50"), (RX101, "resnext-101")):
        cfg = load_config(path)
        assert cfg["model.name"] == model and cfg["model.num_classes"] == 400
        assert cfg["model.shortcut"] == "B" and cfg["model.normalization"] == "activitynet"
        assert (cfg["train.lr"], cfg["train.batch_size"], cfg["train.lr_base_batch"]) == (0.1, 128, 128)
        assert (cfg["optim.momentum"], cfg["optim.dampening"], cfg["optim.weight_decay"]) == (0.9, 0.9, 1e-3)
        assert (cfg["sched.name"], cfg["sched.patience"], cfg["sched.gamma"]) == ("plateau", 10, 0.1)
        assert (cfg["data.clip_len"], cfg["data.crop_size"], cfg["data.train_crop"]) == (16, 112, "multiscale_corner")
        assert cfg["train.epochs"] == 200 and cfg["eval.protocol"] == "paper"
        for batch, lr in ((128, 0.1), (256, 0.2), (512, 0.4)):
            scaled = load_config(path, [f"train.batch_size={batch}"])
            assert scaled_base_lr(scaled) == pytest.approx(lr * 0.1)  # dampening 0.9 emulated
        assert set(network_options(cfg)) <= set(model_options(model))
    import paddle
    with paddle.LazyGuard():  # names and shapes only
        net = build_model("resnext-101", 400, **network_options(load_config(RX101)))
    trainable = sum(int(p.size) for p in net.parameters() if not p.stop_gradient)
    assert trainable == 48_340_816  # REFERENCE §1: ResNeXt-101 32x4d, 400 classes


@pytest.mark.parametrize("dataset,classes", [("ucf101", 101), ("hmdb51", 51)])
def test_finetune_configs_agree_with_their_pretraining(dataset, classes, monkeypatch):
    """Strict comparison (nothing taken): each fine-tune config repeats its source's network
    options and normalisation, points at that run, and uses the author's fine-tuning settings."""
    monkeypatch.chdir(REPO)  # the configs' relative paths resolve against the working directory
    from dist_train.checkpoint.source import _spec_from_meta
    from dist_train.config import load_config
    from dist_train.models.from_config import adopt_model_spec, model_spec
    from dist_train.models.preprocess import normalization_from_preset

    released = _spec_from_meta({"model": "resnet-18", "shortcut": "A", "options": {},
                                "num_classes": 400,
                                "normalization": normalization_from_preset("activitynet")},
                               "converted resnet-18-kinetics")
    pairs = [(f"r3d18_kinetics_finetune_{dataset}.yaml", released, None),
             (f"r3d50_kinetics400_finetune_{dataset}.yaml", R50, "r3d50_kinetics400"),
             (f"resnext101_kinetics400_finetune_{dataset}.yaml", RX101, "resnext101_kinetics400")]
    for name, source, run_name in pairs:
        cfg = load_config(os.path.join(REPO, "configs", name))
        spec = source if isinstance(source, dict) else model_spec(load_config(source))
        same, taken = adopt_model_spec(cfg, spec, str(source), adopt=False)
        assert same is cfg and taken == [], name
        if run_name:
            assert cfg["model.pretrained"] == os.path.join(REPO, "runs", run_name)
        assert cfg["model.num_classes"] == classes
        assert cfg["data.train_list"].endswith(f"{dataset}_train_split1.txt")
        assert (cfg["model.ft_begin_module"], cfg["train.lr"], cfg["optim.weight_decay"]) == \
            ("layer4", 0.001, 1e-5)
