"""The embedded default: ./launch.sh --quick runs the whole demo path (data, 2-process training,
video-level evaluation, export, prediction on held-out videos, summary); a second run reuses
everything and does not train again."""
import json
import os
import re

import pytest

from helpers import REPO, run_in_own_group

pytestmark = pytest.mark.multiproc


def run_quick_demo(data, run):
    env = dict(os.environ, DIST_TRAIN_SKIP_SETUP="1", DIST_TRAIN_DEMO_DATA=str(data),
               DIST_TRAIN_DEMO_RUN=str(run))
    env.pop("OMP_NUM_THREADS", None)
    proc = run_in_own_group([os.path.join(REPO, "launch.sh"), "--quick"], 600, REPO, env)
    logs = ""
    for name in sorted(os.listdir(run / "launch_logs")) if (run / "launch_logs").exists() else []:
        logs += open(run / "launch_logs" / name, errors="replace").read()[-2000:]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs
    assert "No ccache found" not in proc.stdout + proc.stderr  # Paddle's import-time noise
    return proc.stdout


def test_quick_demo_runs_every_stage_and_reuses_them(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    out = run_quick_demo(data, run)
    # Every stage's output.
    assert (data / "synthetic.json").exists()
    assert len(list((data / "frames").iterdir())) >= 4
    for name in ("ucf101_train_split1.txt", "ucf101_val_split1.txt"):
        assert (data / "lists" / name).read_text().strip()
    best = (run / "checkpoints" / "best").read_text().strip()
    assert (run / "checkpoints" / best / "state.json").exists()
    state = json.loads((run / "checkpoints" / best / "state.json").read_text())
    assert state["world_size"] == 2
    report = json.loads((run / "eval" / "report.json").read_text())
    num_val = len((data / "lists" / "ucf101_val_split1.txt").read_text().splitlines())
    assert report["num_videos"] == num_val == report["num_clips"]  # one clip span per video
    for name in ("confusion_matrix.png", "confusion_matrix.csv"):
        assert (run / "eval" / name).stat().st_size > 0
    assert (run / "export" / "meta.json").exists()
    predictions = [json.loads(line) for line in (run / "predict" / "heldout.jsonl").read_text().splitlines()]
    assert len(predictions) == 4 and all(p["topk"][0]["label"] for p in predictions)
    # The summary.
    match = re.search(r"^video top-1: (\d\.\d{4}) \((\d+) test videos", out, flags=re.M)
    assert match, out[-3000:]
    assert abs(float(match.group(1)) - report["video_top1"]) < 1e-4 and int(match.group(2)) == num_val
    print(f"quick demo: video top-1 {match.group(1)} on {num_val} videos (chance 0.25)")
    assert re.search(r"^held-out videos \(in neither list\): [0-4]/4 correct$", out, flags=re.M)
    assert f"visualdl --logdir {run / 'vdl'} --host 127.0.0.1" in out
    for path in (run, run / "eval" / "report.json", run / "eval" / "confusion_matrix.png", run / "export",
                 run / "eval" / "per_class_accuracy.png", run / "curves.png"):
        assert str(path) in out
    # The pictures: curves of every epoch (2 processes), the per-class chart.
    curves = json.loads((run / "curves.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert curves["epoch_ends"] == [r["global_step"] for r in epochs] and len(epochs) == 4
    assert "sync_wait" in curves["series"] and (run / "curves.png").stat().st_size > 0
    assert (run / "eval" / "per_class_accuracy.png").stat().st_size > 0
    # A second run reuses the data, does not train again, and reuses the export.
    assert "nothing to do" not in out
    again = run_quick_demo(data, run)  # the launcher echoes rank 0's log
    assert f"reusing {data} " in again and f"reusing {data}/frames" in again
    assert "the run is already finished (nothing to do)" in again
    assert f"reusing {run}/export" in again
    assert re.search(r"^video top-1: " + re.escape(match.group(1)), again, flags=re.M)


def test_demo_rejects_arguments_it_does_not_know():
    proc = run_in_own_group([os.path.join(REPO, "launch.sh"), "--quick", "--nproc", "1"], 60, REPO,
                            dict(os.environ, DIST_TRAIN_SKIP_SETUP="1"))
    assert proc.returncode == 2 and "unknown argument '--nproc'" in proc.stderr
