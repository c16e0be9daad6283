"""Video-level evaluation: metrics, protocol (clips, loop padding), 1 rank == 2 ranks."""
import json
import math
import os
import shutil

import numpy as np
import pytest

from helpers import launch, run_cli
from videoeval_fixtures import CLASSES, VIDEOS, make_fixture

pytestmark = pytest.mark.paddle2


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return make_fixture(str(tmp_path_factory.mktemp("videoeval")))


def _cfg(fx, **overrides):
    from dist_train.config import load_config

    return load_config(fx["config"], [f"{k}={v}" for k, v in overrides.items()])


def _eval_files(out_dir):
    with open(os.path.join(out_dir, "report.json")) as f:
        report = json.load(f)
    return report, np.load(os.path.join(out_dir, "video_probs.npz"))["probs"]


def test_build_report_metrics_by_hand():
    from dist_train.evaluation.video_level import build_report

    names = [f"c{i}" for i in range(6)]
    probs = np.full((4, 6), 0.01)
    probs[0, [0, 1]] = [0.6, 0.3]                 # label 0: top1 right
    probs[1, [2, 0]] = [0.5, 0.4]                 # label 0: top1 wrong (2), in top5
    probs[2, [1, 5, 4, 3, 2, 0]] = [.5, .2, .1, .09, .08, .03]  # label 0: 6th -> not in top5
    probs[3, [3]] = [0.9]                         # label 3: right
    report = build_report(probs, [0, 0, 0, 3], [2, 1, 3, 1], [1, 0, 0, 1],
                          ["a", "b", "c", "d"], names, topk=2)
    assert report["num_videos"] == 4 and report["num_clips"] == 7
    assert report["video_top1"] == pytest.approx(0.5)
    assert report["video_top5"] == pytest.approx(0.75)
    assert report["clip_top1"] == pytest.approx(2 / 7)
    assert report["per_class_accuracy"]["c0"] == {"videos": 3, "accuracy": pytest.approx(1 / 3)}
    assert report["per_class_accuracy"]["c3"] == {"videos": 1, "accuracy": 1.0}
    assert report["per_class_accuracy"]["c1"] == {"videos": 0, "accuracy": None}
    assert report["mean_class_accuracy"] == pytest.approx((1 / 3 + 1) / 2)  # classes with videos
    assert report["confusion_matrix"][0] == [1, 1, 1, 0, 0, 0]
    assert [t["label"] for t in report["videos"][1]["topk"]] == [2, 0]
    assert report["videos"][1]["topk"][0]["score"] == pytest.approx(0.5)


def test_class_names_come_from_the_lists(fx, tmp_path):
    from dist_train.data.lists import DataError
    from dist_train.evaluation.video_level import class_names

    assert class_names(_cfg(fx)) == CLASSES
    assert class_names(_cfg(fx, **{"model.num_classes": 4}))[3] == "class_3"
    bad = tmp_path / "bad.txt"
    bad.write_text("Other/v_x 20 0\n")
    with pytest.raises(DataError, match="lists disagree"):
        class_names(_cfg(fx, **{"data.train_list": str(bad)}))


def gamma_clips(fx, crop_xs):
    """Written out for the 23-frame video: frames 56x44 resized to 46x36 (short side 36), crops
    of 28 at y = 4 and the given x; clips 0-15 and 16-22 looped. [clips * crops, 3, T, H, W]."""
    import cv2

    capture = cv2.VideoCapture(os.path.join(fx["root"], "Gamma", "v_Gamma_g01_c01.avi"))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        assert bgr.shape == (44, 56, 3)
        frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (46, 36),
                                 interpolation=cv2.INTER_LINEAR))
    assert len(frames) == 23
    second = list(range(16, 23)) * 3
    clips = [np.stack([frames[i][4:32, x:x + 28] for i in idx])
             for idx in (range(16), second[:16]) for x in crop_xs]
    return np.stack(clips).transpose(0, 4, 1, 2, 3)


def direct_probs(fx, cfg, clips):
    import paddle

    from dist_train.evaluation.video_level import load_eval_model, softmax

    model = load_eval_model(cfg, fx["weights"])
    with paddle.no_grad():
        return softmax(model(paddle.to_tensor(clips)).numpy()).mean(axis=0)


def assert_videos_differ(probs, tolerance):
    """The comparisons at ``tolerance`` mean something: every two videos' probabilities differ
    by far more."""
    spread = min(np.abs(probs[i] - probs[j]).max() for i in range(len(probs)) for j in range(i))
    assert spread > 100 * tolerance, spread


def test_protocol_matches_a_direct_computation(fx, tmp_path):
    """Independent re-implementation for one video: resize, centre crop, two clips."""
    from dist_train.evaluation.video_level import evaluate_videos

    cfg = _cfg(fx)
    report = evaluate_videos(cfg, fx["weights"], str(tmp_path / "eval"))
    _, probs = _eval_files(str(tmp_path / "eval"))
    index = [name for _, name, _ in VIDEOS].index("v_Gamma_g01_c01")
    np.testing.assert_allclose(probs[index], direct_probs(fx, cfg, gamma_clips(fx, [9])), atol=1e-6)
    assert report["videos"][index]["num_clips"] == 2
    assert_videos_differ(probs, 1e-6)


@pytest.mark.multiproc
def test_two_ranks_equal_one_rank(fx, tmp_path):
    common = ["dist_train/evaluate.py", "-c", fx["config"], "--weights", fx["weights"]]
    run_cli([*common, "-o", f"run.dir={tmp_path / 'one'}"])
    launch([*common, "-o", f"run.dir={tmp_path / 'two'}"], str(tmp_path / "log"), nproc=2)
    one, p1 = _eval_files(str(tmp_path / "one" / "eval"))
    two, p2 = _eval_files(str(tmp_path / "two" / "eval"))
    expected_clips = [math.ceil(n / 16) for _, _, n in VIDEOS]
    for report in (one, two):
        assert report["num_videos"] == len(VIDEOS) == 5
        assert report["num_clips"] == sum(expected_clips) == 10
        assert [v["num_clips"] for v in report["videos"]] == expected_clips
        assert report["batch_size_per_rank"] == 3
    assert one["world_size"] == 1 and two["world_size"] == 2
    shards = two["rank_videos"]
    assert len(shards) == 2 and all(shards)
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(5))
    for key in ("video_top1", "video_top5", "clip_top1", "mean_class_accuracy", "num_items"):
        assert one[key] == pytest.approx(two[key], abs=1e-12), key
    for a, b in zip(one["videos"], two["videos"]):
        assert a["video"] == b["video"]
        assert [t["label"] for t in a["topk"]] == [t["label"] for t in b["topk"]]
    np.testing.assert_allclose(p1, p2, atol=1e-5)
    assert_videos_differ(p1, 1e-5)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, atol=1e-9)
    for name in ("confusion_matrix.csv", "confusion_matrix.png"):
        assert os.path.getsize(tmp_path / "two" / "eval" / name) > 0
    with open(tmp_path / "two" / "eval" / "confusion_matrix.csv") as f:
        rows = f.read().splitlines()
    assert rows[0].split(",")[1:] == CLASSES
    assert sum(int(x) for row in rows[1:] for x in row.split(",")[1:]) == 5


def test_three_crops_and_checkpoint_dir(fx, tmp_path):
    from dist_train.evaluation.video_level import evaluate_videos

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(fx["weights"], ckpt / "model.pdparams")
    cfg = _cfg(fx, **{"data.test_crops": 3})
    report = evaluate_videos(cfg, str(ckpt), str(tmp_path / "e"))
    assert report["crops"] == 3
    assert report["num_clips"] == 10 and report["num_items"] == 30
    assert report["num_videos"] == 5
    _, probs = _eval_files(str(tmp_path / "e"))
    index = [name for _, name, _ in VIDEOS].index("v_Gamma_g01_c01")
    # left, centre and right crops of both clips, averaged
    expected = direct_probs(fx, cfg, gamma_clips(fx, [0, 9, 18]))
    np.testing.assert_allclose(probs[index], expected, atol=1e-6)
    assert np.abs(expected - direct_probs(fx, cfg, gamma_clips(fx, [9]))).max() > 1e-4


def test_wrong_weights_are_refused(fx, tmp_path):
    import paddle

    from dist_train.checkpoint import CheckpointError
    from dist_train.evaluation.video_level import build_eval_model, load_eval_model

    other = build_eval_model(_cfg(fx, **{"model.num_classes": 5})).network
    path = str(tmp_path / "five.pdparams")
    paddle.save(other.state_dict(), path)
    with pytest.raises(CheckpointError, match="five.pdparams"):  # no silent new head
        load_eval_model(_cfg(fx), path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_eval_model(_cfg(fx), str(tmp_path / "missing"))


def _list_with_broken_video(fx, tmp_path):
    broken = os.path.join(fx["root"], "Alpha", "v_broken.avi")
    with open(broken, "wb") as f:
        f.write(b"not a video" * 100)
    with open(fx["list"]) as f:
        lines = f.read()
    list_path = tmp_path / "with_broken.txt"
    list_path.write_text(lines + "Alpha/v_broken 20 0\n")  # last: in rank 1's shard
    return {key: str(list_path) for key in ("data.test_list", "data.train_list", "data.val_list")}


@pytest.mark.multiproc
def test_unreadable_video_on_one_rank_stops_every_rank_cleanly(fx, tmp_path):
    """The broken video is in rank 1's shard; rank 0 must not wait for it in the gather."""
    lists = _list_with_broken_video(fx, tmp_path)
    proc = launch(["dist_train/evaluate.py", "-c", fx["config"], "--weights", fx["weights"],
                   *[f"-o{k}={v}" for k, v in lists.items()], "-o", f"run.dir={tmp_path / 'run'}"],
                  str(tmp_path / "log"), nproc=2, timeout=120, check=False)
    assert proc.returncode == 2
    logs = []
    for rank in (0, 1):
        with open(tmp_path / "log" / f"workerlog.{rank}") as f:
            logs.append(f.read())
    # named once, by rank 0 (issue 18); the other rank says why it stops
    errors = [line for line in logs[0].splitlines() if line.startswith("evaluate.py: error:")]
    assert len(errors) == 1 and "evaluation data could not be read" in errors[0] \
        and "v_broken.avi" in errors[0], logs[0][-3000:]
    assert "evaluate.py: error:" not in logs[1] and "stopping on the input error" in logs[1]
    assert not os.path.exists(tmp_path / "run" / "eval" / "report.json")


def test_unreadable_video_in_a_loader_worker_names_the_file(fx, tmp_path):
    from dist_train.evaluation.video_level import EvalDataError, evaluate_videos

    cfg = _cfg(fx, **_list_with_broken_video(fx, tmp_path), **{"data.num_workers": 1})
    with pytest.raises(EvalDataError, match="v_broken.avi: OpenCV cannot open"):
        evaluate_videos(cfg, fx["weights"], str(tmp_path / "eval"))


def test_evaluate_model_uses_eval_mode_and_restores_the_callers_mode(fx, tmp_path):
    from dist_train.evaluation.video_level import evaluate_model, load_eval_model

    model = load_eval_model(_cfg(fx), fx["weights"])
    reference = evaluate_model(_cfg(fx), model, str(tmp_path / "a"))
    model.train()
    again = evaluate_model(_cfg(fx), model, str(tmp_path / "b"))
    assert model.training
    assert [v["topk"] for v in again["videos"]] == [v["topk"] for v in reference["videos"]]


def test_raw_video_evaluation_decodes_each_video_once(fx, tmp_path, monkeypatch):
    """Every frame decode (grab) is counted, also in forked loader workers: each video costs its
    frame count, in this process and with 2 workers (batches of 2 items and 3 crops cut the
    videos' clips across batches), and both give the same report."""
    import multiprocessing

    import cv2

    from dist_train.evaluation.video_level import evaluate_videos

    paths = [os.path.join(fx["root"], c, name + ".avi") for c, name, _ in VIDEOS]
    grabs = multiprocessing.Array("q", len(paths))
    real_capture = cv2.VideoCapture

    class CountingCapture:
        def __init__(self, path, *args):
            self._capture = real_capture(path, *args)
            self._slot = paths.index(path)

        def grab(self):
            ok = self._capture.grab()
            with grabs.get_lock():
                grabs[self._slot] += ok
            return ok

        def __getattr__(self, name):  # retrieve, release, isOpened, get: not decodes
            return getattr(self._capture, name)

    monkeypatch.setattr(cv2, "VideoCapture", CountingCapture)
    reports = []
    for workers in (0, 2):
        grabs[:] = [0] * len(paths)
        cfg = _cfg(fx, **{"data.num_workers": workers, "eval.batch_size": 2,
                          "data.test_crops": 3})
        reports.append(evaluate_videos(cfg, fx["weights"], str(tmp_path / f"w{workers}")))
        assert list(grabs) == [n for _, _, n in VIDEOS], workers
    _, p0 = _eval_files(str(tmp_path / "w0"))
    _, p2 = _eval_files(str(tmp_path / "w2"))
    np.testing.assert_allclose(p0, p2, rtol=0, atol=1e-6)
    assert reports[0]["num_items"] == reports[1]["num_items"] == 30
    assert [v["num_clips"] for v in reports[1]["videos"]] == [math.ceil(n / 16) for _, _, n in VIDEOS]
