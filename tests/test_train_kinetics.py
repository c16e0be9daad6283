"""Kinetics lists end to end: a short training run on generated lists of raw mp4/mkv clips in
folders named like the labels (paths with spaces, quotes, commas; data.video_ext ''), then
evaluation and predict --json: class names with spaces, quotes and commas reach the checkpoint,
meta.json, the report, the confusion matrix and the predictions."""
import csv
import json
import os

import pytest

from dist_train.data.lists import write_generated_lists
from dist_train.data.prepare.kinetics import build_kinetics_lists

from helpers import run_cli
from kinetics_fixtures import CLASSES, make_kinetics
from train_fixtures import write_config

pytestmark = pytest.mark.paddle2


def test_train_evaluate_predict_carry_class_names_with_spaces(tmp_path):
    fx = make_kinetics(str(tmp_path), "named")  # list paths hold spaces, quotes and commas
    lists = str(tmp_path / "lists")
    generated = build_kinetics_lists([fx["csv"][s] for s in ("train", "validate", "test")],
                                     fx["root"])
    written = write_generated_lists(lists, "k", generated, max_missing=0.2)
    assert all(" " in e.video for e in generated.lists["train"])
    run = str(tmp_path / "run")
    cfg = write_config(str(tmp_path / "k.yaml"), fx["root"], written["train"], written["val"], run,
                       **{"data.source": "video", "data.video_ext": "", "data.num_workers": 0,
                          "model.num_classes": len(CLASSES), "model.sync_bn": False,
                          "train.batch_size": 4, "export.at_end": True})
    run_cli(["dist_train/train.py", "-c", cfg], timeout=240)
    names = sorted(CLASSES)
    tag = open(os.path.join(run, "checkpoints", "latest")).read().strip()
    with open(os.path.join(run, "checkpoints", tag, "state.json")) as f:
        assert json.load(f)["train_state"]["class_names"] == names
    with open(os.path.join(run, "export", "meta.json")) as f:
        assert json.load(f)["class_names"] == names
    # exported elsewhere, without the dataset: the checkpoint's names
    from dist_train.config import load_config
    from dist_train.deploy.export import build_meta

    away = load_config(cfg, [f"data.{k}_list={tmp_path / 'gone.txt'}" for k in ("train", "val")])
    assert build_meta(away, os.path.join(run, "checkpoints", tag), "legacy",
                      "model.pdmodel")["class_names"] == names

    run_cli(["dist_train/evaluate.py", "-c", cfg, "--weights", os.path.join(run, "checkpoints", tag)],
            timeout=240)
    with open(os.path.join(run, "eval", "report.json")) as f:
        report = json.load(f)
    assert report["class_names"] == names and report["num_videos"] == len(generated.lists["val"])
    assert set(report["per_class_accuracy"]) == set(names)
    with open(os.path.join(run, "eval", "confusion_matrix.csv"), newline="") as f:
        header = next(csv.reader(f))
    assert header[1:] == names

    clip = os.path.join(fx["root"], generated.lists["val"][0].video)
    proc = run_cli(["dist_train/predict.py", "--model", os.path.join(run, "export"), "--video",
                    clip, "--topk", "3", "--json"], timeout=240)
    row = json.loads(proc.stdout.strip())
    assert row["video"] == clip
    assert sorted(t["label"] for t in row["topk"]) == names  # every name, spaces and all
