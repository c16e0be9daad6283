"""Training and video-level evaluation on the compressed store (data.source: jpeg_store), 2 ranks,
equal one rank on the frame folders whose JPEG bytes the store holds."""
import json
import os

import numpy as np
import pytest

from dist_train.data.prepare.jpeg_store import prepare_store
from helpers import launch, run_cli
from train_fixtures import final_weights, make_dataset, write_config

pytestmark = [pytest.mark.paddle2, pytest.mark.multiproc]


def test_two_ranks_train_and_evaluate_on_the_store_like_one_rank_on_frames(tmp_path):
    frames, train_list, val_list = make_dataset(str(tmp_path))
    store = str(tmp_path / "store")
    prepare_store("frames", frames, store, videos_per_shard=5, estimate_sample=0,
                  log=lambda *a: None, progress_stream=open(os.devnull, "w"))
    run_frames, run_store = str(tmp_path / "run_frames"), str(tmp_path / "run_store")
    cfg_frames = write_config(str(tmp_path / "frames.yaml"), frames, train_list, val_list,
                              run_frames)
    cfg_store = write_config(str(tmp_path / "store.yaml"), store, train_list, val_list,
                             run_store, **{"data.source": "jpeg_store"})
    run_cli(["dist_train/train.py", "-c", cfg_frames])
    launch(["dist_train/train.py", "-c", cfg_store], str(tmp_path / "log_train"))
    a, b = final_weights(run_frames), final_weights(run_store)
    assert a.keys() == b.keys() and len(a) > 30
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-5, err_msg=key)
    rows = [[json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
            for run in (run_frames, run_store)]
    assert rows[1][-1]["val_clips"] == 16  # 8 videos x 2 clips over the 2 ranks
    assert rows[1][-1]["val_loss"] == pytest.approx(rows[0][-1]["val_loss"], rel=1e-4)

    # Video-level evaluation of the trained weights: store on 2 ranks == frames on 1 rank.
    weights = os.path.join(run_store, "checkpoints", "latest")
    with open(weights) as f:
        weights = os.path.join(run_store, "checkpoints", f.read().strip())
    launch(["dist_train/evaluate.py", "-c", cfg_store, "--weights", weights, "--out-dir",
            str(tmp_path / "eval_store")], str(tmp_path / "log_eval"))
    run_cli(["dist_train/evaluate.py", "-c", cfg_frames, "--weights", weights, "--out-dir",
             str(tmp_path / "eval_frames")])
    reports = []
    for name in ("eval_store", "eval_frames"):
        with open(tmp_path / name / "report.json") as f:
            reports.append(json.load(f))
    assert reports[0]["world_size"] == 2 and reports[1]["world_size"] == 1
    assert reports[0]["num_videos"] == 8 and reports[0]["num_clips"] == reports[1]["num_clips"]
    np.testing.assert_allclose(np.load(tmp_path / "eval_store" / "video_probs.npz")["probs"],
                               np.load(tmp_path / "eval_frames" / "video_probs.npz")["probs"],
                               atol=1e-5)
