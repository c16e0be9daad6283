"""scripts/reproduce_ucf101.sh --smoke: the reproduction's path (convert released-layout weights,
fine-tune ResNet-18 through launch.sh, evaluate video-level, print one JSON verdict) on a tiny
synthetic UCF-101-layout set with stand-in weights, on the CPU."""
import json
import os

import pytest

from helpers import REPO, child_env, run_in_own_group

pytest.importorskip("torch")  # the converter reads .pth files with PyTorch, as the real run does


@pytest.mark.multiproc
def test_reproduce_smoke_runs_the_real_path_and_prints_one_verdict(tmp_path):
    work = tmp_path / "work"
    env = child_env(threads=2, WORK=str(work), DIST_TRAIN_SKIP_SETUP="1")
    proc = run_in_own_group([os.path.join(REPO, "scripts", "reproduce_ucf101.sh"), "--smoke"],
                            timeout=300, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    verdict = json.loads(proc.stdout.strip().splitlines()[-1])
    assert verdict["smoke"] is True and verdict["verdict"].startswith("smoke run complete")
    assert verdict["paper_video_top1"] == 0.844 and verdict["split"] == 1
    assert verdict["num_videos"] == 16 and 0.0 <= verdict["video_top1"] <= 1.0
    assert verdict["report"] == str(work / "run" / "eval" / "report.json")
    # The released-layout .pth went through the converter, and fine-tuning started from it with
    # a new 4-class head and the normalisation the converted weights record.
    assert (work / "pretrained" / "resnet-18-kinetics.meta.json").exists()
    log = (work / "run" / "train.log").read_text()
    assert "initial weights from" in log and "new classifier head" in log
    saved = json.loads((work / "run" / "eval" / "report.json").read_text())
    assert saved["protocol"] == "paper" and saved["num_videos"] == 16
