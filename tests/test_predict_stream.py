"""Streaming prediction (deploy/predict.py over data/video_stream.py): the scores of the
whole-video path, a timeline with the decoder's timestamps, memory that does not grow with the
video's length."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from data_helpers import write_avi, write_vfr_mkv
from dist_train import compat
from helpers import run_cli
from videoeval_fixtures import CLASSES, CROP, SHORT_SIDE, VIDEOS, make_fixture


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """The tiny evaluation fixture's videos with a tiny ResNet-18 (width 1/8, the fixture's crops)
    exported (1 crop), and a copy of the export whose meta.json asks for 3 crops (crops are clip
    sampling, recorded in meta.json; the network is the same). ResNet-18 has shortcut A, whose
    export once aborted or hung inside paddle.inference (oneDNN's constant pad of a 5-D tensor
    corrupted the heap): every test here runs it."""
    import paddle

    from dist_train.config import load_config
    from dist_train.deploy.export import META_FILE, export_model
    from dist_train.evaluation.video_level import build_eval_model
    from dist_train.models.resnet import default_shortcut

    base = str(tmp_path_factory.mktemp("predict_stream"))
    fixture = make_fixture(base)
    assert default_shortcut(18) == "A"
    cfg = load_config(fixture["config"], ["model.name=resnet-18"])
    paddle.seed(4)
    weights = os.path.join(base, "r18.pdparams")
    paddle.save(build_eval_model(cfg).network.state_dict(), weights)
    fmt = "pir" if compat.paddle_major() >= 3 else "legacy"
    fixture["export"] = export_model(cfg, weights, os.path.join(base, "export"), fmt)
    # First in a process of its own (the bug aborted or hung), then in this one.
    run_cli(["dist_train/predict.py", "--model", fixture["export"], "--video",
             os.path.join(fixture["root"], "Alpha")], timeout=120)
    fixture["export3"] = shutil.copytree(fixture["export"], os.path.join(base, "export3"))
    meta_path = os.path.join(fixture["export3"], META_FILE)
    with open(meta_path) as f:
        meta = json.load(f)
    meta["clip_sampling"]["num_crops"] = 3
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return fixture


@pytest.mark.paddle2
def test_streaming_scores_equal_the_whole_video_path(fx, tmp_path):
    """video_scores == softmax of the whole decoded video's clips averaged (the path before
    streaming), at 1 and 3 crops and batch sizes that cut clips' crops apart; the timeline's
    clips average to the video."""
    from dist_train.data.factory import load_video_clips
    from dist_train.deploy.predict import InferenceModel, video_scores
    from dist_train.evaluation.video_level import softmax

    big = str(tmp_path / "big.avi")  # 80x60: resized to 48x36 before cropping
    rng = np.random.default_rng(11)
    frames = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (80, 60))
    write_avi(big, [np.roll(frames, 3 * t, axis=1) for t in range(37)])
    paths = [os.path.join(fx["root"], c, n + ".avi") for c, n, _ in VIDEOS] + [big]
    for model_dir, crops in ((fx["export"], 1), (fx["export3"], 3)):
        model = InferenceModel(model_dir)
        for path in paths:
            clips = load_video_clips(path, 16, CROP, SHORT_SIDE, 1, crops)
            for batch_size in (2, 8):
                expected = softmax(model.logits(clips, batch_size)).mean(axis=0)
                scores = video_scores(model, path, batch_size, timeline=True)
                np.testing.assert_allclose(scores.probs, expected, rtol=0, atol=1e-6)
                assert scores.num_clips == len(clips) // crops == len(scores.clips)
                np.testing.assert_allclose(np.mean([c.probs for c in scores.clips], axis=0),
                                           scores.probs, rtol=0, atol=1e-12)
                assert scores.seconds["model"] > 0 and scores.seconds["decode"] > 0


@pytest.mark.paddle2
def test_timeline_times_come_from_the_decoder(fx, tmp_path, capsys):
    """A variable-frame-rate video (declared 25 fps): --timeline gives each clip the decoder's
    time of its first and last frame, not index / fps; --json documents every field."""
    pts = [0, 1, 2, 3, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,   # clip 0: ends at 0.72 s
           40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 60,  # clip 1
           100, 101, 102, 103, 110, 111, 112, 113]                     # clip 2: 8 frames, looped
    rng = np.random.default_rng(3)
    base = cv2.resize(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), (40, 32))
    path = str(tmp_path / "phone.mkv")
    write_vfr_mkv(path, [np.roll(base, 2 * t, axis=1) for t in range(len(pts))], pts, fps=25)
    proc = run_cli(["dist_train/predict.py", "--model", fx["export"], "--video", path,
                    "--timeline", "--json", "--topk", str(len(CLASSES))])
    (record,) = map(json.loads, proc.stdout.splitlines())
    assert record["video"] == path
    assert (record["num_frames"], record["num_clips"]) == (40, 3)
    assert set(record["seconds"]) == {"decode", "resize", "crop", "model", "total"}
    timeline = record["timeline"]
    assert [(c["clip"], c["first_frame"], c["last_frame"]) for c in timeline] == [
        (0, 0, 15), (1, 16, 31), (2, 32, 39)]
    assert [(c["start"], c["end"]) for c in timeline] == [(0.0, 0.72), (1.6, 2.4), (4.0, 4.52)]
    video = {t["label"]: t["score"] for t in record["topk"]}
    per_clip = [{t["label"]: t["score"] for t in c["topk"]} for c in timeline]
    for name in CLASSES:  # all classes shown: the clips' mean is the video's score
        assert np.mean([clip[name] for clip in per_clip]) == pytest.approx(video[name], abs=1e-9)
    assert {"label", "index", "score"} == set(record["topk"][0])
    from dist_train.predict import main

    assert main(["--model", fx["export"], "--video", path, "--timeline", "--topk", "1"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == 4 and text[0].startswith(path + ": ")
    assert text[2].split()[:5] == ["clip", "1", "1.600", "-", "2.400"]


_PEAK_RSS = ("import resource, sys; from dist_train.predict import main; rc = main(sys.argv[1:]); "
             "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
             "file=sys.stderr); sys.exit(rc)")


def _predict_peak_rss(model_dir, video):
    proc = run_cli(["-c", _PEAK_RSS, "--model", model_dir, "--video", video, "--json"])
    peak = [line for line in proc.stderr.splitlines() if line.startswith("peak_rss_kb")]
    return json.loads(proc.stdout), int(peak[0].split()[1]) * 1024


def test_memory_does_not_grow_with_the_videos_length(fx, tmp_path):
    """640x480 (0.9 MB a frame): 3,000 frames peak at most 100 MB above 300 frames (holding the
    decoded video would take 2.7 GB)."""
    rng = np.random.default_rng(5)
    base = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (640, 480))
    paths = {}
    for length in (300, 3000):
        paths[length] = str(tmp_path / f"long_{length}.mp4")
        writer = cv2.VideoWriter(paths[length], cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
        assert writer.isOpened()
        for t in range(length):
            writer.write(np.roll(base, 4 * t, axis=1))
        writer.release()
    short, short_peak = _predict_peak_rss(fx["export"], paths[300])
    long, long_peak = _predict_peak_rss(fx["export"], paths[3000])
    assert (short["num_frames"], long["num_frames"]) == (300, 3000)
    assert long["num_clips"] == 188
    assert long_peak <= short_peak + 100 * 2**20, (short_peak / 2**20, long_peak / 2**20)



def test_a_batch_size_or_topk_below_one_is_an_input_error(tmp_path, capsys):
    from dist_train.predict import main

    for flag in ("--batch-size", "--topk"):
        assert main(["--model", str(tmp_path), "--video", str(tmp_path), flag, "0"]) == 2
        assert "--batch-size and --topk must be at least 1" in capsys.readouterr().err
