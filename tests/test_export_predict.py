"""Export (PIR and legacy) through paddle.inference in a fresh process == eager model;
predict.py on raw AVIs == evaluate.py with the raw-video reader; broken videos reported."""
import json
import os
import shutil

import numpy as np
import pytest

from dist_train import compat
from helpers import run_cli
from videoeval_fixtures import CLASSES, VIDEOS, make_fixture

pytestmark = pytest.mark.paddle2
# The formats this Paddle writes: PIR (.json) needs Paddle 3; legacy (.pdmodel) works on both.
FORMATS = ["legacy", "pir"] if compat.paddle_major() >= 3 else ["legacy"]
PROGRAM = {"pir": "model.json", "legacy": "model.pdmodel"}


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("export"))
    fixture = make_fixture(base)
    from dist_train.config import load_config
    from dist_train.deploy.export import export_model

    cfg = load_config(fixture["config"])
    fixture["cfg"] = cfg
    # On Paddle 3 this process runs PIR, so the legacy export goes through a fresh process.
    for fmt in FORMATS:
        fixture[fmt] = export_model(cfg, fixture["weights"], os.path.join(base, fmt), fmt)
    return fixture


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_model_matches_eager_at_two_batch_sizes(fx, tmp_path, fmt):
    import paddle

    from dist_train.evaluation.video_level import load_eval_model

    model_dir = fx[fmt]
    assert {"meta.json", PROGRAM[fmt], "model.pdiparams"} <= set(os.listdir(model_dir))
    clips = np.random.default_rng(5).integers(0, 256, (5, 3, 16, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", clips)
    run_cli(["tests/inference_probe.py", model_dir, str(tmp_path / "x.npy"),
             str(tmp_path / "out.npz"), "1", "5"])
    out = np.load(tmp_path / "out.npz")
    model = load_eval_model(fx["cfg"], fx["weights"])
    with paddle.no_grad():
        eager = model(paddle.to_tensor(clips)).numpy()
    assert eager.shape == (5, len(CLASSES))
    for key in ("b1", "b5"):
        assert out[key].shape == eager.shape
        np.testing.assert_allclose(out[key], eager, atol=1e-5, rtol=0)
    assert np.abs(eager).max() > 1e-3  # not a degenerate all-zero output


def test_meta_json_describes_the_input(fx):
    from dist_train.deploy.export import read_meta

    meta = read_meta(fx[FORMATS[-1]])
    assert meta["class_names"] == CLASSES
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["shape"] == [-1, 3, 16, 28, 28]
    assert (meta["clip_len"], meta["crop_size"], meta["eval_short_side"]) == (16, 28, 36)
    assert meta["temporal_stride"] == 1 and meta["clip_sampling"]["num_crops"] == 1
    assert len(meta["normalization"]["mean"]) == 3 and len(meta["normalization"]["std"]) == 3
    assert meta["model"] == {"name": "resnet-10",
                             "options": {"width_mult": 0.125, "data_format": "NCDHW"}}
    assert meta["paddle_version"] and meta["package_version"]
    for fmt in FORMATS:
        assert read_meta(fx[fmt])["format"] == fmt
        assert read_meta(fx[fmt])["model_file"] == PROGRAM[fmt]


def test_meta_json_records_the_eval_short_side(fx):
    """CONTRACTS (export): meta.json records the short side the source frames are resized to
    before cropping, i.e. data.eval_short_side, or crop_size when it is null."""
    from dist_train.config import load_config
    from dist_train.deploy.export import build_meta

    for value, recorded in (("48", 48), ("null", 28)):
        cfg = load_config(fx["config"], overrides=[f"data.eval_short_side={value}"])
        meta = build_meta(cfg, fx["weights"], FORMATS[-1], PROGRAM[FORMATS[-1]])
        assert (meta["eval_short_side"], meta["crop_size"]) == (recorded, 28)
        assert "eval_short_side" in meta["clip_sampling"]["spatial"]


def test_export_cli_default_format_replaces_an_existing_export(fx, tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    run_cli(["dist_train/export.py", "-c", fx["config"], "--weights", fx["weights"],
             "--out", str(out)])
    default = FORMATS[-1]  # export.format pir on Paddle 3; legacy on 2.x
    assert {"meta.json", PROGRAM[default], "model.pdiparams"} <= set(os.listdir(out))
    assert "stale.txt" not in os.listdir(out)
    assert not [p for p in os.listdir(tmp_path) if p != "exp"]  # no temp dirs left behind


def _predict_json(stdout, root):
    return {os.path.relpath(row["video"], root)[:-len(".avi")]: row
            for row in map(json.loads, stdout.splitlines())}


def test_predict_equals_evaluate_on_raw_videos(fx, tmp_path):
    run_cli(["dist_train/evaluate.py", "-c", fx["config"], "--weights", fx["weights"],
             "-o", "data.source=video", "-o", f"run.dir={tmp_path / 'run'}"])
    with open(tmp_path / "run" / "eval" / "report.json") as f:
        report = json.load(f)
    proc = run_cli(["dist_train/predict.py", "--model", fx[FORMATS[-1]], "--video", fx["root"],
                    "--topk", "3", "--json"])
    predicted = _predict_json(proc.stdout, fx["root"])
    assert len(predicted) == len(VIDEOS)
    assert "[5/5]" in proc.stderr  # progress over many videos
    probs = np.load(tmp_path / "run" / "eval" / "video_probs.npz")["probs"]
    spread = min(np.abs(probs[i] - probs[j]).max() for i in range(len(probs)) for j in range(i))
    assert spread > 100 * 1e-4  # videos differ by far more than the tolerance below
    for video in report["videos"]:
        row = predicted[video["video"]]
        assert row["topk"][0]["label"] == video["topk"][0]["name"]
        scores = {t["label"]: t["score"] for t in row["topk"]}
        for t in video["topk"]:
            assert scores[t["name"]] == pytest.approx(t["score"], abs=1e-4)


def test_predict_reports_broken_videos_and_continues(fx, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    good = os.path.join(fx["root"], "Gamma", "v_Gamma_g01_c01.avi")
    shutil.copy(good, mixed / "a_good.avi")
    (mixed / "b_empty.avi").write_bytes(b"")
    (mixed / "c_garbage.avi").write_bytes(b"this is not a video" * 50)
    shutil.copy(good, mixed / "d_good.avi")
    proc = run_cli(["dist_train/predict.py", "--model", fx["legacy"], "--video", str(mixed),
                    "--topk", "2"], check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(mixed / "a_good.avi"),
                                                      str(mixed / "d_good.avi")]
    assert lines[0].split(": ")[1].split()[0] in CLASSES
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 2
    assert "b_empty.avi" in errors[0] and "c_garbage.avi" in errors[1]
    missing = run_cli(["dist_train/predict.py", "--model", fx["legacy"], "--video",
                       str(tmp_path / "nope.avi")], check=False)
    assert missing.returncode == 2 and "nope.avi" in missing.stderr

