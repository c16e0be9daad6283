"""A run at a glance: curves.png / curves.json kept by rank 0 (also across a resume, and as a
warning only when the picture cannot be written), scripts/plot_runs.py over two runs, and the
per-class accuracy chart of an evaluation."""
import json
import os
import re
import signal

import pytest

from helpers import child_env, run_cli
from train_fixtures import make_dataset, write_config

pytestmark = pytest.mark.paddle2

# series name -> (row kind, key) of metrics.jsonl, written out here independently of curves.py
EXPECTED_SERIES = {"train_loss": ("train", "loss"), "val_loss": ("epoch", "val_loss"),
                   "train_top1": ("train", "top1"), "val_top1": ("epoch", "val_top1"),
                   "lr": ("train", "lr"), "clips_per_s": ("train", "clips_per_s"),
                   "data_wait": ("train", "data_wait"), "sync_wait": ("train", "sync_wait")}


def image_size(path):
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # decodes every pixel, not only the header
        return image.size


def rows_of(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two 1-process runs of 2 steps per epoch with validation every epoch:
    - "resumed" (2 epochs): the first attempt is SIGKILLed inside global step 4, after step 3's
      row was written; the resume from the epoch-0 checkpoint (step 2) writes step 3 again;
    - "blocked" (1 epoch): a directory stands where curves.png goes."""
    base = tmp_path_factory.mktemp("curves")
    dataset = make_dataset(str(base / "data"), videos_per_class=6)  # 16 training videos
    settings = {"log.curves": True, "data.num_workers": 0}
    resumed, blocked = str(base / "resumed"), str(base / "blocked")
    config = write_config(str(base / "resumed.yaml"), *dataset, resumed, **settings, **{"train.epochs": 2})
    killed = run_cli(["dist_train/train.py", "-c", config],
                     env=child_env(DIST_TRAIN_KILL_AT_STEP="4"), check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    again = run_cli(["dist_train/train.py", "-c", config, "--resume", "auto"])
    os.makedirs(os.path.join(blocked, "curves.png"))
    config = write_config(str(base / "blocked.yaml"), *dataset, blocked, **settings)
    stopped = run_cli(["dist_train/train.py", "-c", config])
    return {"resumed": resumed, "blocked": blocked, "again": again, "stopped": stopped, "base": base}


def test_curves_png_and_json_match_metrics(runs):
    run = runs["resumed"]
    with open(os.path.join(run, "curves.json")) as f:
        info = json.load(f)
    assert image_size(os.path.join(run, "curves.png")) == (info["width"], info["height"]) == (1200, 900)
    rows = rows_of(run)
    assert info["rows"] == len(rows) and info["x"] == "global_step"
    assert info["epoch_ends"] == [r["global_step"] for r in rows if r["kind"] == "epoch"] == [2, 4]
    expected = {}
    for name, (kind, key) in EXPECTED_SERIES.items():
        picked = [r for r in rows if r["kind"] == kind and key in r]
        if picked:
            expected[name] = {"x": [r["global_step"] for r in picked], "y": [r[key] for r in picked]}
    assert {"train_loss", "val_loss", "train_top1", "val_top1", "lr", "clips_per_s",
            "data_wait"} <= set(expected)
    assert {name: {"x": s["x"], "y": s["y"]} for name, s in info["series"].items()} == expected
    # The drawing ran in a child process and its cost on the training thread was logged.
    log = open(os.path.join(run, "train.log")).read()
    assert re.search(rf"curves: \S+curves\.png drawn from {len(rows)} rows in [\d.]+ s in a child process "
                     r"\(the training thread spent [\d.]+ ms starting it\)", log), log[-2000:]


def test_resumed_run_draws_one_curve_without_repeated_steps(runs):
    # The killed attempt had written step 3, which the resume cut and wrote again.
    assert "1 metrics rows after it removed" in runs["again"].stdout
    with open(os.path.join(runs["resumed"], "curves.json")) as f:
        series = json.load(f)["series"]
    assert series["train_loss"]["x"] == [1, 2, 3, 4]
    assert series["val_top1"]["x"] == [2, 4]
    for name, s in series.items():
        assert s["x"] == sorted(set(s["x"])), name


def test_unwritable_picture_is_a_warning_and_the_run_completes(runs):
    run, proc = runs["blocked"], runs["stopped"]
    assert re.search(r"WARNING curves: curves\.png not updated \(exit code 2: curves: error: .*"
                     r"Is a directory.*\); training goes on", proc.stdout), proc.stdout[-3000:]
    assert proc.stdout.count("WARNING curves:") == 1  # not tried again on the same rows
    assert os.path.isdir(os.path.join(run, "curves.png"))
    assert not os.path.exists(os.path.join(run, "curves.json"))  # it describes a picture only
    assert [r["kind"] for r in rows_of(run)] == ["train", "train", "epoch"]
    assert "training finished at global step 2" in proc.stdout
    with open(os.path.join(run, "checkpoints", "latest")) as f:
        assert f.read().strip() == "step_000002"


def test_plot_runs_overlays_two_runs_and_prints_their_table(runs):
    out = str(runs["base"] / "compare.png")
    proc = run_cli(["scripts/plot_runs.py", runs["resumed"], runs["blocked"], "--out", out,
                    "--x", "epoch"], timeout=120)
    assert image_size(out) == (1200, 900)
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["run", "best", "val", "top-1"] and lines[-1] == f"picture: {out}"
    table = {line.split()[0]: line.split() for line in lines[1:3]}
    for run, attempts in ((runs["resumed"], "2"), (runs["blocked"], "1")):
        validated = [r for r in rows_of(run) if "val_top1" in r]
        best = max(validated, key=lambda r: r["val_top1"])
        first_best = next(r for r in validated if r["val_top1"] == best["val_top1"])
        cells = table[run]
        assert cells[1] == f"{best['val_top1']:.4f}" and cells[2] == str(first_best["epoch"] + 1)
        assert cells[3] == "-"  # no eval/report.json
        # wall time ("N s" or "N min NN s"), attempts, median clips/s, data wait
        assert re.fullmatch(r"\d+ s|\d+ min \d\d s", " ".join(cells[4:-3])), cells
        assert cells[-3] == attempts and float(cells[-2]) > 0 and cells[-1].endswith("%")
    missing = run_cli(["scripts/plot_runs.py", str(runs["base"]), "--out", out], check=False)
    assert missing.returncode == 2 and "metrics.jsonl does not exist" in missing.stderr


def test_the_last_picture_draws_every_row_and_stops_a_superseded_drawing(tmp_path):
    import logging

    from dist_train.training.curves import CurvesDrawer

    def append(steps):
        with open(tmp_path / "metrics.jsonl", "a") as f:
            for step in steps:
                f.write(json.dumps({"kind": "train", "epoch": 0, "global_step": step, "loss": 1.0 / step,
                                    "top1": 0.5, "lr": 0.1, "clips_per_s": 9.0, "data_wait": 0.1}) + "\n")

    logger = logging.getLogger("dist_train")
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append((record.levelname, record.getMessage()))
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        drawer = CurvesDrawer(str(tmp_path))
        append([1, 2, 3])
        drawer.refresh()
        drawer.collect(wait=True)  # drawn: 3 rows
        append([4, 5, 6])
        drawer.refresh()  # starts a drawing ...
        append([7])  # ... that a row comes after: finish() stops it and draws all 7 rows
        drawer.finish()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    drawn = [re.search(r"drawn from (\d+) rows", m).group(1) for _, m in messages if "drawn from" in m]
    assert drawn == ["3", "7"], messages
    assert ("INFO", "curves: stopped a drawing that started before the last rows") in messages
    assert not [m for m in messages if m[0] != "INFO"], messages
    with open(tmp_path / "curves.json") as f:
        assert json.load(f)["series"]["train_loss"]["x"] == [1, 2, 3, 4, 5, 6, 7]
    assert sorted(os.listdir(tmp_path)) == ["curves.json", "curves.png", "metrics.jsonl"]  # no temporary file


def test_run_summary_counts_every_attempt_and_leaves_the_gaps_out_of_the_time_axis(tmp_path):
    import time

    from dist_train.training.run_summary import attempts, summarize, training_seconds

    start = "rank 0/2 on cpu, Paddle 3.3.1, run dir x"  # training/loop.py's first line
    (tmp_path / "train.log").write_text(
        f"2026-01-01 10:00:00 [rank 0] INFO {start}\n"
        "2026-01-01 10:00:30 [rank 0] INFO epoch 0 step 10/20 loss 1.2\n"
        "Traceback (most recent call last):\n"  # a continuation line has no time
        f"2026-01-01 10:05:00 [rank 0] INFO {start}\n"
        "2026-01-01 10:05:20 [rank 0] WARNING curves: something\n")
    t0 = time.mktime(time.strptime("2026-01-01 10:00:00", "%Y-%m-%d %H:%M:%S"))
    rows = [{"kind": "train", "global_step": 1, "time": t0 + 10, "clips_per_s": 10.0, "data_wait": 0.1},
            {"kind": "epoch", "epoch": 0, "global_step": 2, "time": t0 + 20, "val_top1": 0.5},
            {"kind": "train", "global_step": 3, "time": t0 + 310, "clips_per_s": 30.0, "data_wait": 0.3},
            {"kind": "train", "global_step": 4, "time": t0 + 315, "clips_per_s": 40.0, "data_wait": 0.2},
            {"kind": "epoch", "epoch": 1, "global_step": 4, "time": t0 + 318, "val_top1": 0.5}]
    assert attempts(str(tmp_path), rows) == [(t0, t0 + 30), (t0 + 300, t0 + 320)]
    assert training_seconds([r["time"] for r in rows], attempts(str(tmp_path), rows)) == [10, 20, 40, 45, 48]
    summary = summarize(str(tmp_path), rows)
    assert summary == {"best_val_top1": 0.5, "best_epoch": 1, "video_top1": None, "wall_s": 50,
                       "attempts": 2, "median_clips_per_s": 30.0,
                       "data_wait_pct": pytest.approx(20.0), "global_step": 4}


def test_evaluation_writes_a_per_class_chart_and_names_both_images(tmp_path):
    from dist_train.evaluation.report import PER_CLASS_PNG, write_eval_outputs

    names = [f"class_{i}" for i in range(20)]
    per_class = {name: {"videos": 2, "accuracy": (i % 5) / 4} for i, name in enumerate(names)}
    per_class["class_7"] = {"videos": 0, "accuracy": None}
    report = {"video_top1": 0.5, "mean_class_accuracy": 0.5, "per_class_accuracy": per_class,
              "confusion_matrix": [[1 if i == j else 0 for j in range(20)] for i in range(20)],
              "videos": [{"video": f"v{i}", "label": i} for i in range(20)]}
    write_eval_outputs(str(tmp_path), report, [[0.05] * 20] * 20, names)
    with open(tmp_path / "report.json") as f:
        body = json.load(f)
    assert body["confusion_matrix_png"] == "confusion_matrix.png"
    assert body["per_class_accuracy_png"] == PER_CLASS_PNG == "per_class_accuracy.png"
    width, height = image_size(tmp_path / PER_CLASS_PNG)
    assert width == 900 and height > 300
    image_size(tmp_path / "confusion_matrix.png")
