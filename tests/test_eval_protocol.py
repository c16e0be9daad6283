"""Kinetics evaluation protocols selected by eval.protocol: the paper's non-overlapping clips
and the common 10 clips x 3 crops, each checked against a direct computation on decoded frames."""
import os

import numpy as np
import pytest

from videoeval_fixtures import CROP, SHORT_SIDE, VIDEOS, make_fixture

pytestmark = pytest.mark.paddle2


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return make_fixture(str(tmp_path_factory.mktemp("protocol")))


def _cfg(fx, **overrides):
    from dist_train.config import load_config

    return load_config(fx["config"], [f"{k}={v}" for k, v in overrides.items()])


def _decoded(fx, class_name, name, size=None):
    """The video's RGB frames, resized to ``size`` (W, H) as the evaluation does."""
    import cv2

    capture = cv2.VideoCapture(os.path.join(fx["root"], class_name, name + ".avi"))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            return np.stack(frames)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        frames.append(cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR) if size else rgb)


def test_protocol_key_is_checked():
    from dist_train.config import ConfigError, load_config

    assert load_config(None)["eval.protocol"] == "paper"
    with pytest.raises(ConfigError, match="eval.protocol"):
        load_config(None, ["eval.protocol=10x1"])


def test_clip_starts_of_each_protocol():
    from dist_train.data import sampling

    assert sampling.test_clip_starts(40, 16, 1, "paper") == [0, 16, 32]
    starts = sampling.test_clip_starts(40, 16, 1, "10x3")
    assert starts == [round(i * 24 / 9) for i in range(10)] and starts[-1] == 24
    assert sampling.test_clip_starts(10, 16, 1, "10x3") == [0] * 10  # shorter than a clip
    assert sampling.test_protocol_crops("10x3", 1) == 3 and sampling.test_protocol_crops("paper", 1) == 1
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        sampling.test_clip_starts(40, 16, 1, "dense")


def test_ten_clips_three_crops_match_a_direct_computation(fx, tmp_path):
    """40 frames of 56x44 resized to 46x36 (short side 36), 10x3: starts round(i*24/9), crops of
    28 at y = 4 and x = 0, 9, 18."""
    import paddle

    from dist_train.data.factory import load_video_clips
    from dist_train.data.video_stream import iter_test_clips
    from dist_train.evaluation.video_level import evaluate_videos, load_eval_model, softmax

    cfg = _cfg(fx, **{"eval.protocol": "10x3"})
    report = evaluate_videos(cfg, fx["weights"], str(tmp_path / "eval"))
    assert report["protocol"] == "10x3" and report["crops"] == 3
    assert [v["num_clips"] for v in report["videos"]] == [10] * len(VIDEOS)
    assert report["num_items"] == 30 * len(VIDEOS)
    probs = np.load(tmp_path / "eval" / "video_probs.npz")["probs"]
    index = [name for _, name, _ in VIDEOS].index("v_Beta_g02_c01")
    assert (SHORT_SIDE, CROP) == (36, 28)
    frames = _decoded(fx, "Beta", "v_Beta_g02_c01", size=(46, 36))
    assert len(frames) == 40
    clips = [frames[start:start + 16, 4:32, x:x + 28] for start in (round(i * 24 / 9) for i in range(10))
             for x in (0, 9, 18)]
    clips = np.stack(clips).transpose(0, 4, 1, 2, 3)  # [clip x crop, 3, T, H, W]
    model = load_eval_model(cfg, fx["weights"])
    with paddle.no_grad():
        expected = softmax(model(paddle.to_tensor(clips)).numpy()).mean(axis=0)
    np.testing.assert_allclose(probs[index], expected, atol=1e-6)
    # Prediction on the raw file cuts the same clips: whole-video and streamed (two passes).
    path = os.path.join(fx["root"], "Beta", "v_Beta_g02_c01.avi")
    np.testing.assert_array_equal(load_video_clips(path, 16, CROP, SHORT_SIDE, 1, 3, "10x3"), clips)
    streamed = list(iter_test_clips(path, 16, CROP, SHORT_SIDE, 1, 3, protocol="10x3"))
    assert [c.first_frame for c in streamed] == [round(i * 24 / 9) for i in range(10)]
    assert [c.last_frame for c in streamed] == [round(i * 24 / 9) + 15 for i in range(10)]
    assert all(c.end > c.start >= 0 for c in streamed)
    np.testing.assert_array_equal(np.stack([crop for c in streamed for crop in c.crops]), clips)


@pytest.mark.parametrize("name,stride", [("v_Alpha_g01_c01", 1), ("v_Gamma_g01_c01", 2),
                                         ("v_Alpha_g02_c01", 3)])
def test_streamed_10x3_clips_equal_the_whole_video_clips(fx, name, stride):
    """Short (10 frames: every clip loop-padded from frame 0), overlapping and strided clips."""
    from dist_train.data.factory import load_video_clips
    from dist_train.data.video_stream import iter_test_clips

    path = os.path.join(fx["root"], name.split("_")[1], name + ".avi")
    whole = load_video_clips(path, 16, 32, 32, stride, 3, "10x3")
    streamed = [crop for c in iter_test_clips(path, 16, 32, 32, stride, 3, protocol="10x3")
                for crop in c.crops]
    assert len(streamed) == len(whole) == 30
    np.testing.assert_array_equal(np.stack(streamed), whole)


def test_paper_protocol_is_unchanged_and_cli_refuses_one_crop_with_10x3(fx, tmp_path):
    from dist_train.evaluation.video_level import evaluate_videos

    report = evaluate_videos(_cfg(fx), fx["weights"], str(tmp_path / "eval"))
    assert report["protocol"] == "paper" and report["crops"] == 1
    assert [v["num_clips"] for v in report["videos"]] == [-(-n // 16) for _, _, n in VIDEOS]
    from dist_train import evaluate

    code = evaluate.main(["-c", fx["config"], "--weights", fx["weights"], "--crops", "1",
                          "-o", "eval.protocol=10x3", "-o", f"run.dir={tmp_path / 'run'}"])
    assert code == 2


def test_prediction_follows_the_protocol_in_meta(fx):
    """predict's streaming scorer reads clip_sampling.protocol from meta.json (a stand-in model
    whose logits are per-channel means keeps the check independent of Paddle inference)."""
    from types import SimpleNamespace

    from dist_train.data.factory import load_video_clips
    from dist_train.deploy.predict import video_scores
    from dist_train.evaluation.video_level import softmax

    def logits(clips, batch_size):
        return clips.astype(np.float64).mean(axis=(2, 3, 4)) / 50.0  # [N, 3]: 3 "classes"

    path = os.path.join(fx["root"], "Beta", "v_Beta_g02_c01.avi")
    for protocol, clips_expected in (("paper", 3), ("10x3", 10)):
        meta = {"clip_len": 16, "crop_size": 32, "eval_short_side": 32, "temporal_stride": 1,
                "input": {"shape": [-1, 3, 16, 32, 32]}, "class_names": ["a", "b", "c"],
                "clip_sampling": {"protocol": protocol, "num_crops": 3}}
        scores = video_scores(SimpleNamespace(meta=meta, logits=logits), path, batch_size=4)
        assert scores.num_clips == clips_expected
        whole = load_video_clips(path, 16, 32, 32, 1, 3, protocol)
        np.testing.assert_allclose(scores.probs, softmax(logits(whole, 0)).mean(axis=0), atol=1e-12)
