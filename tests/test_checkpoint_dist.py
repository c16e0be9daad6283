"""Checkpoint collectives with 2 CPU ranks under paddle.distributed.launch, and resuming their
checkpoint on 1 rank (and a 1-rank checkpoint on 2 ranks, inside the probe)."""
import json
import logging
import os
import random

import numpy as np
import paddle
import pytest

from ckpt_models import make_training, train_state, train_step, weights
from dist_train import checkpoint as ck
from dist_train.checkpoint.rng_state import restore_rng_state
from helpers import launch

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


@pytest.mark.multiproc
def test_two_ranks_save_gather_and_resume_across_world_sizes(tmp_path, caplog):
    model, opt, sched, scaler = make_training(seed=3)
    for step in range(2):
        train_step(model, opt, sched, scaler, step)
    one_rank = ck.save_checkpoint(str(tmp_path / "one"), "step_000002", model=model, optimizer=opt,
                                  scaler=scaler, train_state=train_state(2), cfg=None, keep_last=1)
    run_dir = tmp_path / "two"
    launch(["tests/ckpt_probe.py", str(tmp_path), str(run_dir), one_rank],
           log_dir=str(tmp_path / "log"), timeout=240)
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(2)]
    path = str(run_dir / "checkpoints" / "step_000001")
    for r in ranks:
        assert r["world"] == 2 and r["path"] == path and r["resolved"] == path
        assert r["complete_on_return"]
    assert ranks[1]["save_s"] >= 1.5  # waited for rank 0's (delayed) write at the barrier
    # a fault on rank 0 failed the save on both ranks; latest still names the good one
    assert ranks[0]["fault"][0] == "InjectedFault"
    # a bug stays a bug on the other ranks (exit 1, may be retried); a disk full would be a
    # CheckpointError (an input problem) there too
    assert ranks[1]["fault"][0] == "RuntimeError" and "rank 0 failed" in ranks[1]["fault"][1]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000001"
    # 1-rank checkpoint loaded on 2 ranks: same weights and schedule everywhere
    for r in ranks:
        assert r["one_rank_state"] == train_state(2)
        assert np.array_equal(np.array(r["one_rank_fc"], np.float32), model.fc.weight.numpy())
        assert r["one_rank_lr"] == sched.last_lr
    # rng.npz holds both ranks' states: restoring rank k's reproduces its draws after the save
    with np.load(os.path.join(path, "rng.npz"), allow_pickle=False) as npz:
        assert int(npz["world_size"][0]) == 2
        per_rank = [{k.split(".", 1)[1]: npz[k] for k in npz.files if k.startswith(f"r{r}.")}
                    for r in range(2)]
    assert not np.array_equal(per_rank[0]["numpy_keys"], per_rank[1]["numpy_keys"])
    for r in range(2):
        restore_rng_state(per_rank[r])
        draws = [random.random(), np.random.rand(3).tolist(), paddle.rand([3]).numpy().tolist()]
        assert draws == ranks[r]["draws_after_save"], r
    # the 2-rank checkpoint resumes on 1 rank; RNG states are not applied, and the log says why
    model2, opt2, sched2, scaler2 = make_training(seed=9)
    with caplog.at_level(logging.INFO, logger="dist_train"):
        state = ck.load_checkpoint(path, model=model2, optimizer=opt2, scaler=scaler2)
    assert state == train_state(1)
    assert "saved by 2 rank(s), this job has 1" in caplog.text
    assert sched2.last_epoch == 1
    # the ranks trained make_training(seed=0) for one step: the same here, in one process
    reference = make_training(seed=0)
    train_step(*reference, 0)
    expected, loaded = weights(reference[0]), weights(model2)
    assert sorted(loaded) == sorted(expected)
    assert all(np.array_equal(loaded[k], expected[k]) for k in loaded)
