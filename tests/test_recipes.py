"""README commands and recipe scripts: every launch command prints the exact line it would run
(--dry-run, 8 simulated GPUs, 2 nodes), and the README's data_tools commands work on a tiny
UCF-101-layout fixture."""
import os
import re
import shlex
import socket

import pytest

from helpers import REPO, run_in_own_group

PY = os.path.join(os.environ.get("DIST_TRAIN_VENV", os.path.join(REPO, ".venv")), "bin", "python")
SCRATCH = f"{REPO}/configs/r3d18_ucf101_scratch.yaml"
FINETUNE = f"{REPO}/configs/r3d18_kinetics_finetune_ucf101.yaml"
TRAIN = f"{REPO}/dist_train/train.py"
LAUNCH = f"{PY} -m paddle.distributed.launch"
EIGHT = r"0\,1\,2\,3\,4\,5\,6\,7"  # printf %q escapes the commas
SCRATCH_LOGS = f"{REPO}/runs/r3d18_ucf101_scratch/launch_logs"
WEIGHTS = "/ckpt/run/checkpoints/step_000100"

# README command (as written, comments stripped) -> the exact command its --dry-run prints.
# A README command missing here, or an entry missing from the README, fails the test.
EXPECTED = {
    "./scripts/train_ucf101_1gpu.sh":
        f"{LAUNCH} --devices 0 --log_dir {SCRATCH_LOGS} {TRAIN} -c {SCRATCH} -o train.accum_steps=4 --resume auto",
    "./scripts/train_ucf101_8gpu.sh":
        f"{LAUNCH} --devices {EIGHT} --log_dir {SCRATCH_LOGS} {TRAIN} -c {SCRATCH} --resume auto",
    "MASTER=10.0.0.1:6170 ./scripts/train_ucf101_2nodes.sh":
        f"{LAUNCH} --devices {EIGHT} --nnodes 2 --master 10.0.0.1:6170 --log_dir {SCRATCH_LOGS} "
        f"{TRAIN} -c {SCRATCH} --resume auto",
    "./launch.sh --devices 0 configs/r3d18_ucf101_scratch.yaml train.accum_steps=4":
        f"{LAUNCH} --devices 0 --log_dir {SCRATCH_LOGS} {TRAIN} -c configs/r3d18_ucf101_scratch.yaml "
        f"-o train.accum_steps=4 --resume auto",
    "./launch.sh configs/r3d18_ucf101_scratch.yaml":
        f"{LAUNCH} --devices {EIGHT} --log_dir {SCRATCH_LOGS} {TRAIN} -c configs/r3d18_ucf101_scratch.yaml --resume auto",
    "./launch.sh --nnodes 2 --master 10.0.0.1:6170 configs/r3d18_ucf101_scratch.yaml":
        f"{LAUNCH} --devices {EIGHT} --nnodes 2 --master 10.0.0.1:6170 --log_dir {SCRATCH_LOGS} "
        f"{TRAIN} -c configs/r3d18_ucf101_scratch.yaml --resume auto",
    "./launch.sh configs/r3d18_ucf101_scratch.yaml --dry-run":
        f"{LAUNCH} --devices {EIGHT} --log_dir {SCRATCH_LOGS} {TRAIN} -c configs/r3d18_ucf101_scratch.yaml --resume auto",
    "./scripts/evaluate_ucf101.sh":
        f"{PY} {REPO}/dist_train/evaluate.py -c {SCRATCH} --weights {WEIGHTS}",
    "./scripts/evaluate_ucf101.sh --crops 3":
        f"{PY} {REPO}/dist_train/evaluate.py -c {SCRATCH} --weights {WEIGHTS} --crops 3",
    "./scripts/export_ucf101.sh":
        f"{PY} {REPO}/dist_train/export.py -c {SCRATCH} --weights {WEIGHTS} --out /ckpt/run/export",
    "./scripts/export_ucf101.sh --format legacy":
        f"{PY} {REPO}/dist_train/export.py -c {SCRATCH} --weights {WEIGHTS} --out /ckpt/run/export --format legacy",
    "./scripts/predict_ucf101.sh data/ucf101/UCF-101/Basketball --topk 3":
        f"{PY} {REPO}/dist_train/predict.py --model {REPO}/runs/r3d18_ucf101_scratch/export "
        f"--video data/ucf101/UCF-101/Basketball --topk 3",
    "./scripts/predict_ucf101.sh my_video.avi --json --device gpu":
        f"{PY} {REPO}/dist_train/predict.py --model {REPO}/runs/r3d18_ucf101_scratch/export "
        f"--video my_video.avi --json --device gpu",
    # Converts first (the .pdparams does not exist in a fresh clone), then launches.
    "./scripts/finetune_kinetics_r3d18.sh":
        f"{PY} {REPO}/data_tools/convert_pretrained.py --src data/pretrained/resnet-18-kinetics.pth "
        f"--dst data/pretrained/resnet-18-kinetics.pdparams --model resnet-18\n"
        f"{LAUNCH} --devices {EIGHT} --log_dir {REPO}/runs/r3d18_kinetics_finetune_ucf101/launch_logs "
        f"{TRAIN} -c {FINETUNE} -o model.pretrained=data/pretrained/resnet-18-kinetics.pdparams --resume auto",
}
# Kinetics-400 pretraining, evaluation, fine-tuning from your run and the reproduction script
# (tests/test_recipes_kinetics.py covers the multi-node and Slurm variants in detail).
R50 = f"{REPO}/configs/r3d50_kinetics400.yaml"
R50_LOGS = f"{REPO}/runs/r3d50_kinetics400/launch_logs"
HOST = socket.gethostname()  # multi-node Kinetics recipes: one log folder per node
R18_FT = f"{REPO}/configs/r3d18_kinetics_finetune_ucf101.yaml"
SMOKE = "runs/reproduce_ucf101_smoke"
SMOKE_KEYS = (f"data.root={SMOKE}/data/frames data.train_list={SMOKE}/data/lists/ucf101_train_split1.txt "
              f"data.val_list={SMOKE}/data/lists/ucf101_val_split1.txt model.num_classes=4 data.clip_len=8 "
              "data.crop_size=32 data.val_clips=1 data.num_workers=0 train.epochs=1 train.batch_size=8 "
              "val.batch_size=8 eval.batch_size=8 log.every_steps=1 log.visualdl=false ckpt.keep_last=1")


def _reproduce(pth, run, launch_opts="", keys="", smoke=""):
    keys = f"model.pretrained={pth[:-4]}.pdparams run.dir={run} export.at_end=false" + keys
    o_keys = " ".join(f"-o {kv}" for kv in keys.split())
    return (f"{PY} data_tools/convert_pretrained.py --src {pth} --dst {pth[:-4]}.pdparams --model resnet-18\n"
            f"{REPO}/launch.sh {launch_opts}{R18_FT} {keys}\n"
            f"{PY} dist_train/evaluate.py -c {R18_FT} {o_keys} --weights {run} --out-dir {run}/eval\n"
            f"{PY} scripts/reproduce_lib.py verdict --report {run}/eval/report.json --paper 0.844 "
            f"--tolerance 0.03{smoke}")


EXPECTED.update({
    "./scripts/train_kinetics400_8gpu.sh":
        f"{LAUNCH} --devices {EIGHT} --log_dir {R50_LOGS} {TRAIN} -c {R50} --resume auto",
    "MASTER=10.0.0.1:6170 ./scripts/train_kinetics400_2nodes.sh":
        f"{LAUNCH} --devices {EIGHT} --nnodes 2 --master 10.0.0.1:6170 --log_dir {R50_LOGS}/{HOST} {TRAIN} "
        f"-c {R50} -o train.batch_size=256 -o sched.warmup_epochs=5 --resume auto",
    "MASTER=10.0.0.1:6170 ./scripts/train_kinetics400_4nodes.sh":
        f"{LAUNCH} --devices {EIGHT} --nnodes 4 --master 10.0.0.1:6170 --log_dir {R50_LOGS}/{HOST} {TRAIN} "
        f"-c {R50} -o train.batch_size=512 -o sched.warmup_epochs=5 --resume auto",
    "./scripts/evaluate_kinetics400.sh":
        f"{PY} {REPO}/dist_train/evaluate.py -c {R50} --weights {WEIGHTS}",
    "./scripts/evaluate_kinetics400.sh -o eval.protocol=10x3":
        f"{PY} {REPO}/dist_train/evaluate.py -c {R50} --weights {WEIGHTS} -o eval.protocol=10x3",
    "./launch.sh configs/r3d50_kinetics400_finetune_ucf101.yaml":
        f"{LAUNCH} --devices {EIGHT} --log_dir {REPO}/runs/r3d50_kinetics400_finetune_ucf101/launch_logs "
        f"{TRAIN} -c configs/r3d50_kinetics400_finetune_ucf101.yaml --resume auto",
    "./scripts/reproduce_ucf101.sh":
        _reproduce("data/pretrained/resnet-18-kinetics.pth", "runs/reproduce_ucf101_r3d18"),
    "./scripts/reproduce_ucf101.sh --smoke":
        f"{PY} data_tools/make_synthetic.py --out {SMOKE}/data --classes 4 --videos-per-class 8 "
        f"--height 32 --width 40 --min-frames 8 --max-frames 16\n"
        f"{PY} data_tools/extract_frames.py --src {SMOKE}/data/UCF-101 --dst {SMOKE}/data/frames\n"
        f"{PY} data_tools/build_lists.py --frames {SMOKE}/data/frames --splits {SMOKE}/data/ucfTrainTestlist "
        f"--split 1 --out {SMOKE}/data/lists\n"
        f"{PY} scripts/reproduce_lib.py stand-in --out {SMOKE}/pretrained/resnet-18-kinetics.pth\n"
        + _reproduce(f"{SMOKE}/pretrained/resnet-18-kinetics.pth", f"{SMOKE}/run",
                     "--cpu --nproc 1 --max-restarts 0 ", " " + SMOKE_KEYS, " --smoke"),
})
# Commands of the README that are not launch recipes (run for real elsewhere in the suite).
NOT_DRY_RUN = {"./launch.sh", "./scripts/test.sh"}


def readme_text():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        return f.read()


def readme_commands(prefixes):
    """Lines of the README's ```bash blocks starting with one of ``prefixes``, comments removed."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme_text(), flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(prefixes):
                commands.append(line)
    return commands


def simulated_gpu_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    # launch.sh's GPU count override: 8 GPUs without hardware (the command is only printed).
    env.update(DIST_TRAIN_GPUS="8", WEIGHTS=WEIGHTS, **extra)
    return env


def dry_run(command):
    env_part = {}
    words = shlex.split(command)
    while "=" in words[0] and not words[0].startswith("."):
        key, value = words.pop(0).split("=", 1)
        env_part[key] = value
    if "--dry-run" not in words:
        words.append("--dry-run")
    proc = run_in_own_group(words, 120, REPO, simulated_gpu_env(**env_part))
    assert proc.returncode == 0, f"{command}: {proc.stderr}"
    return "\n".join(line.rstrip() for line in proc.stdout.strip().splitlines())


def test_every_readme_launch_command_is_checked():
    found = set(readme_commands(("./", "MASTER=")))
    assert set(EXPECTED) <= found, f"missing from README: {set(EXPECTED) - found}"
    assert found - NOT_DRY_RUN == set(EXPECTED), f"unchecked README commands: {found - NOT_DRY_RUN - set(EXPECTED)}"
    assert NOT_DRY_RUN <= found


def test_every_recipe_script_is_documented():
    text = readme_text()
    recipes = [f for f in os.listdir(os.path.join(REPO, "scripts"))
               if re.match(r"(train|finetune|evaluate|export|predict|reproduce)_.*\.(sh|sbatch)$", f)]
    assert len(recipes) >= 13
    for name in recipes:
        needle = f"sbatch --nodes=4 scripts/{name}" if name.endswith(".sbatch") else f"./scripts/{name}"
        assert needle in text, f"scripts/{name} is not in the README"


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_dry_run_prints_the_exact_launch_line(command):
    assert dry_run(command) == EXPECTED[command].strip()


def test_recipes_pass_extra_args_through():
    out = dry_run("./scripts/train_ucf101_8gpu.sh amp.enabled=true --nproc 1 --cpu")
    assert out.endswith("-o amp.enabled=true --resume auto")
    assert "--nproc_per_node 1" in out and "--devices" not in out


def test_two_node_recipe_requires_master():
    proc = run_in_own_group(["./scripts/train_ucf101_2nodes.sh", "--dry-run"], 60, REPO,
                            {k: v for k, v in simulated_gpu_env().items() if k != "MASTER"})
    assert proc.returncode == 2 and "MASTER=HOST:PORT" in proc.stderr


def test_evaluate_recipe_without_checkpoint_fails_clearly(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"run:\n  dir: {tmp_path / 'run'}\n")
    env = {k: v for k, v in simulated_gpu_env().items() if k != "WEIGHTS"}
    proc = run_in_own_group(["./scripts/evaluate_ucf101.sh", "--dry-run"], 60, REPO,
                            {**env, "CONFIG": str(config)})
    assert proc.returncode != 0 and "train first, or set WEIGHTS" in proc.stderr
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best").write_text("step_000042\n")
    proc = run_in_own_group(["./scripts/evaluate_ucf101.sh", "--dry-run"], 60, REPO,
                            {**env, "CONFIG": str(config)})
    assert proc.stdout.strip() == (f"{PY} {REPO}/dist_train/evaluate.py -c {config} "
                                   f"--weights {tmp_path}/run/checkpoints/step_000042")


def test_readme_data_tools_commands_on_a_tiny_fixture(tmp_path):
    # The UCF-101 walk-through (Kinetics, own-folder and store commands have their own tests).
    commands = [c for c in readme_commands(("python data_tools/",)) if "data/ucf101/" in c]
    tools = [c.split()[1] for c in commands]
    assert tools == ["data_tools/extract_frames.py", "data_tools/build_lists.py",
                     "data_tools/verify_dataset.py", "data_tools/pack_clips.py"]
    # The fixture: data/ucf101/UCF-101 + ucfTrainTestlist in the real layout, 4 classes.
    made = run_in_own_group([PY, os.path.join(REPO, "data_tools", "make_synthetic.py"), "--out",
                             str(tmp_path / "data" / "ucf101"), "--classes", "4",
                             "--videos-per-class", "12", "--height", "48", "--width", "64",
                             "--min-frames", "8", "--max-frames", "12"], 120, REPO, dict(os.environ))
    assert made.returncode == 0, made.stderr[-3000:]
    for command in commands:
        words = shlex.split(command)
        words[0], words[1] = PY, os.path.join(REPO, words[1])
        if "--num-classes" in words:  # the fixture has 4 classes, UCF-101 has 101
            words[words.index("--num-classes") + 1] = "4"
        proc = run_in_own_group(words, 300, str(tmp_path), dict(os.environ))
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    lists = tmp_path / "data" / "ucf101" / "lists"
    train = (lists / "ucf101_train_split1.txt").read_text().splitlines()
    val = (lists / "ucf101_val_split1.txt").read_text().splitlines()
    assert len(train) + len(val) == 48 and len(val) > 0
    assert (tmp_path / "data" / "ucf101" / "frames" / train[0].split()[0] / "img_00001.jpg").exists()
    assert any((tmp_path / "data" / "ucf101" / "packed128").iterdir())
