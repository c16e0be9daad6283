"""train.compile (paddle.jit.to_static on the training model) trains exactly like eager."""
import json
import os

import numpy as np

from helpers import run_cli
from train_fixtures import final_weights, make_dataset, write_config


def _train_losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["loss"] for r in rows if r["kind"] == "train"], [r["val_loss"] for r in rows
                                                               if "val_loss" in r]


def test_compiled_training_matches_eager(tmp_path):
    dataset = make_dataset(str(tmp_path / "data"))
    runs = {}
    for compiled in (False, True):
        run = str(tmp_path / f"run_{compiled}")
        cfg = write_config(str(tmp_path / f"c_{compiled}.yaml"), *dataset, run,
                           **{"train.compile": compiled, "log.every_steps": 1,
                              "data.num_workers": 0})
        run_cli(["dist_train/train.py", "-c", cfg])
        runs[compiled] = run
    with open(os.path.join(runs[True], "train.log")) as f:
        assert "train.compile: paddle.jit.to_static" in f.read()
    (eager_train, eager_val), (static_train, static_val) = (_train_losses(runs[c]) for c in (False, True))
    assert len(eager_train) >= 2 and len(eager_val) == 1  # every step logged, one validation
    np.testing.assert_allclose(static_train, eager_train, rtol=1e-5)
    np.testing.assert_allclose(static_val, eager_val, rtol=1e-5)
    eager_w, static_w = final_weights(runs[False]), final_weights(runs[True])
    assert eager_w.keys() == static_w.keys()  # same state-dict keys as eager
    for key in eager_w:
        np.testing.assert_allclose(static_w[key], eager_w[key], rtol=1e-5, atol=1e-6, err_msg=key)
