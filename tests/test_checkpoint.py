"""Checkpoint module, one process: exact round trip, RNG states, pruning, faults, corruption,
restricted loading, version and scaler handling."""
import json
import logging
import os
import pickle
import random

import numpy as np
import paddle
import pytest

from ckpt_models import (TinyNet, accumulators, make_training, train_state, train_step, weights)
from dist_train import checkpoint as ck
from dist_train.checkpoint.layout import sha256_file
from dist_train import compat
from helpers import run_cli

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


def _save(run_dir, step, model, opt, scaler, keep_last=3, is_best=False, **extra):
    return ck.save_checkpoint(str(run_dir), ck.step_tag(step), model=model, optimizer=opt,
                              scaler=scaler, train_state=train_state(step, **extra), cfg=None,
                              keep_last=keep_last, is_best=is_best)


def _draws():
    return random.random(), np.random.rand(3).tolist(), paddle.rand([3]).numpy().tolist()


def _latest(run_dir):
    with open(os.path.join(run_dir, "checkpoints", "latest")) as f:
        return f.read().strip()


def test_round_trip_is_exact(tmp_path):
    model, opt, sched, scaler = make_training(seed=0)
    for step in range(3):
        train_step(model, opt, sched, scaler, step)
    path = _save(tmp_path, 3, model, opt, scaler, best_metric=0.5)
    saved_weights, saved_acc = weights(model), accumulators(model, opt)
    after_save = _draws()
    train_step(model, opt, sched, scaler, 3)
    next_weights, next_acc = weights(model), accumulators(model, opt)

    # A second build in the same process gets other Paddle parameter names (linear_1.w_0 ...).
    model2, opt2, sched2, scaler2 = make_training(seed=123)
    assert [p.name for p in model2.parameters()] != [p.name for p in model.parameters()]
    random.seed(99), np.random.seed(99), paddle.seed(99)
    state = ck.load_checkpoint(path, model=model2, optimizer=opt2, scaler=scaler2)
    assert state == train_state(3, best_metric=0.5)
    for key, value in saved_weights.items():
        assert np.array_equal(value, model2.state_dict()[key].numpy()), key
    assert sched2.last_epoch == 3 and sched2.last_lr == pytest.approx(0.01)
    assert _draws() == after_save  # python, numpy and Paddle CPU generators all restored
    train_step(model2, opt2, sched2, scaler2, 3)
    for key, value in next_weights.items():
        assert np.array_equal(value, model2.state_dict()[key].numpy()), key
    acc2 = accumulators(model2, opt2)
    assert sorted(acc2) == sorted(next_acc) and len(acc2) == 5
    for key in next_acc:
        assert np.array_equal(next_acc[key], acc2[key]), key
    # the accumulators were restored, not rebuilt: they differ from a fresh one-step optimizer
    assert not np.array_equal(saved_acc["fc.weight_velocity_0"], np.zeros_like(saved_acc["fc.weight_velocity_0"]))


def test_layout_and_honest_cpu_scaler(tmp_path):
    model, opt, sched, scaler = make_training()
    train_step(model, opt, sched, scaler, 0)
    path = _save(tmp_path, 1, model, opt, scaler)
    assert sorted(os.listdir(path)) == ["model.pdparams", "optimizer.pdopt", "rng.npz",
                                        "scaler.json", "state.json"]
    assert _latest(tmp_path) == "step_000001"
    with open(os.path.join(path, "scaler.json")) as f:
        assert json.load(f) == {"enabled": False, "state": {}}  # GradScaler is off on CPU
    state = ck.read_state(path)
    assert state["format_version"] == ck.FORMAT_VERSION and state["world_size"] == 1
    assert state["versions"]["paddle"] == paddle.__version__
    assert state["param_names"]["fc.weight"] == model.fc.weight.name
    for name, entry in state["manifest"].items():
        assert os.path.getsize(os.path.join(path, name)) == entry["size"]
    with np.load(os.path.join(path, "rng.npz"), allow_pickle=False) as npz:
        # Paddle 3 stores the CPU generator's exact state, Paddle 2.6 the seed it re-seeded with
        cpu_key = "r0." + (compat.CPU_STATE_KEY if compat.paddle_major() >= 3 else compat.CPU_SEED_KEY)
        assert {"world_size", "r0.python_state", "r0.numpy_keys", cpu_key} <= set(npz.files)


class GpuLikeScaler:
    """Stand-in with the state a CUDA GradScaler has (CPU scalers are always disabled)."""

    def __init__(self, scale):
        self.state = {"scale": np.array([scale], np.float32), "incr_ratio": 2.0, "decr_ratio": 0.5,
                      "incr_every_n_steps": 2000, "decr_every_n_nan_or_inf": 1, "incr_count": 17,
                      "decr_count": 0, "use_dynamic_loss_scaling": True}

    def state_dict(self):
        return dict(self.state)

    def load_state_dict(self, state):
        self.state = dict(state)


def test_enabled_scaler_state_round_trip(tmp_path):
    model, opt, _, _ = make_training()
    path = _save(tmp_path, 1, model, opt, GpuLikeScaler(4096.0))
    target = GpuLikeScaler(65536.0)
    ck.load_checkpoint(path, model=model, optimizer=opt, scaler=target)
    assert target.state["scale"].dtype == np.float32 and target.state["scale"].tolist() == [4096.0]
    assert target.state["incr_count"] == 17


def test_keep_last_keeps_best(tmp_path):
    model, opt, sched, scaler = make_training()
    for step in range(1, 6):
        _save(tmp_path, step, model, opt, scaler, keep_last=2, is_best=(step == 2))
    root = tmp_path / "checkpoints"
    assert sorted(os.listdir(root)) == ["best", "latest", "step_000002", "step_000004", "step_000005"]
    assert (root / "best").read_text().strip() == "step_000002"
    assert _latest(tmp_path) == "step_000005"


@pytest.mark.parametrize("point", ["after_model_file", "after_optimizer_file", "before_rename"])
def test_fault_keeps_latest_and_resume_skips(tmp_path, monkeypatch, caplog, point):
    model, opt, sched, scaler = make_training()
    good = _save(tmp_path, 1, model, opt, scaler)
    monkeypatch.setenv(ck.FAULT_ENV, point)
    with pytest.raises(ck.InjectedFault):
        _save(tmp_path, 2, model, opt, scaler)
    monkeypatch.delenv(ck.FAULT_ENV)
    assert _latest(tmp_path) == "step_000001"
    assert not os.path.exists(tmp_path / "checkpoints" / "step_000002")
    with caplog.at_level(logging.WARNING, logger="dist_train"):
        assert ck.resolve_resume(str(tmp_path), "auto") == good
    assert f".tmp-step_000002-{os.getpid()}" in caplog.text
    # the next successful save cleans the interrupted one up
    _save(tmp_path, 3, model, opt, scaler)
    assert not [n for n in os.listdir(tmp_path / "checkpoints") if n.startswith(".tmp")]


def test_truncated_and_corrupt_files(tmp_path, caplog):
    model, opt, sched, scaler = make_training()
    good = _save(tmp_path, 1, model, opt, scaler)
    bad = _save(tmp_path, 2, model, opt, scaler)
    weights_file = os.path.join(bad, "model.pdparams")
    data = open(weights_file, "rb").read()
    with open(weights_file, "wb") as f:
        f.write(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="dist_train"):
        assert ck.resolve_resume(str(tmp_path), "auto") == good  # latest names the bad one
    assert "step_000002/model.pdparams" in caplog.text and "truncated" in caplog.text
    with pytest.raises(ck.CheckpointError, match="truncated"):
        ck.load_checkpoint(bad, model=model)
    with pytest.raises(ck.CheckpointError, match="incomplete or corrupt"):
        ck.resolve_resume(str(tmp_path), bad)
    # same size, one byte flipped: found by sha256 on load
    good_file = os.path.join(good, "model.pdparams")
    data = bytearray(open(good_file, "rb").read())
    data[-20] ^= 0xFF
    open(good_file, "wb").write(bytes(data))
    with pytest.raises(ck.CheckpointError, match="sha256"):
        ck.load_checkpoint(good, model=model)


def test_finished_run_and_nothing_to_resume(tmp_path):
    assert ck.resolve_resume(str(tmp_path), "auto") is None
    assert ck.resolve_resume(str(tmp_path), "none") is None
    model, opt, _, scaler = make_training()
    path = ck.save_checkpoint(str(tmp_path), "step_000009", model=model, optimizer=opt, scaler=scaler,
                              train_state=train_state(9, finished=True), cfg={"train": {"lr": 0.1}},
                              keep_last=1)
    assert ck.resolve_resume(str(tmp_path), "auto") == path
    assert ck.resolve_resume(str(tmp_path), str(tmp_path)) == path  # a run dir as PATH
    assert ck.read_state(path)["train_state"]["finished"] is True
    assert ck.read_state(path)["config"] == {"train": {"lr": 0.1}}
    with pytest.raises(ck.CheckpointError, match="no such checkpoint"):
        ck.resolve_resume(str(tmp_path), str(tmp_path / "nope"))
    with pytest.raises(ck.CheckpointError, match="rank 0 cannot read checkpoint .*shared storage"):
        ck.load_checkpoint(str(tmp_path / "elsewhere" / "step_000009"), model=model)


def test_unknown_format_version_is_skipped(tmp_path, caplog):
    model, opt, _, scaler = make_training()
    good = _save(tmp_path, 1, model, opt, scaler)
    newer = _save(tmp_path, 2, model, opt, scaler)
    state_file = os.path.join(newer, "state.json")
    state = json.load(open(state_file))
    state["format_version"] = 99
    json.dump(state, open(state_file, "w"))
    with caplog.at_level(logging.WARNING, logger="dist_train"):
        assert ck.resolve_resume(str(tmp_path), "auto") == good
    assert "format_version 99" in caplog.text


def test_other_paddle_version_and_model_mismatch(tmp_path, caplog):
    model, opt, sched, scaler = make_training()
    train_step(model, opt, sched, scaler, 0)
    path = _save(tmp_path, 1, model, opt, scaler)
    state_file = os.path.join(path, "state.json")
    state = json.load(open(state_file))
    other = "2.6.2" if compat.paddle_major() >= 3 else "3.3.1"
    state["versions"]["paddle"] = other
    json.dump(state, open(state_file, "w"))
    model2, opt2, _, _ = make_training(seed=5)
    with caplog.at_level(logging.WARNING, logger="dist_train"):
        ck.load_checkpoint(path, model=model2, optimizer=opt2)
    assert f"Paddle {other}" in caplog.text
    # an optimizer entry for a parameter the checkpoint does not know: refused, both versions named
    paddle.save({"mystery_velocity_0": np.zeros(2, np.float32)}, os.path.join(path, "optimizer.pdopt"))
    state["manifest"]["optimizer.pdopt"]["size"] = os.path.getsize(os.path.join(path, "optimizer.pdopt"))
    state["manifest"]["optimizer.pdopt"]["sha256"] = sha256_file(os.path.join(path, "optimizer.pdopt"))
    json.dump(state, open(state_file, "w"))
    with pytest.raises(ck.CheckpointError, match="mystery_velocity_0"):
        ck.load_checkpoint(path, model=model2, optimizer=opt2)
    with pytest.raises(ck.CheckpointError, match="mis-shaped: fc.weight"):
        ck.load_checkpoint(path, model=TinyNet(classes=7))


def test_load_weights_head_mismatch_and_strict(tmp_path, caplog):
    model, opt, _, scaler = make_training()
    path = _save(tmp_path, 1, model, opt, scaler)
    paddle.save(model.state_dict(), str(tmp_path / "w.pdparams"))
    target = TinyNet(classes=5)
    with caplog.at_level(logging.WARNING, logger="dist_train"):
        report = ck.load_weights(path, target)
    assert report["new_head"] and report["skipped_head"] == ["fc.bias", "fc.weight"]
    assert "classifier head not loaded" in caplog.text
    assert np.array_equal(target.conv.weight.numpy(), model.conv.weight.numpy())
    same = TinyNet(classes=3)
    report = ck.load_weights(str(tmp_path / "w.pdparams"), same, allow_head_mismatch=False)
    assert not report["new_head"] and np.array_equal(same.fc.weight.numpy(), model.fc.weight.numpy())
    with pytest.raises(ck.CheckpointError, match="mis-shaped: fc.weight"):
        ck.load_weights(path, TinyNet(classes=5), allow_head_mismatch=False)
    with pytest.raises(ck.CheckpointError, match="conv.weight"):
        ck.load_weights(path, TinyNet(channels=6))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_malicious_pickle_refused_without_running(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pdparams"
    evil.write_bytes(pickle.dumps({"conv.weight": _Payload(str(marker))}))
    with pytest.raises(ck.CheckpointError, match="builtins.exec"):
        ck.load_weights(str(evil), TinyNet())
    assert not marker.exists()
    # a checkpoint directory whose weights were replaced is refused on resume, too
    model, opt, _, scaler = make_training()
    path = _save(tmp_path, 1, model, opt, scaler)
    data = evil.read_bytes()
    (tmp_path / "checkpoints" / "step_000001" / "model.pdparams").write_bytes(data)
    state_file = os.path.join(path, "state.json")
    state = json.load(open(state_file))
    state["manifest"]["model.pdparams"] = {"size": len(data), "sha256": sha256_file(str(evil))}
    json.dump(state, open(state_file, "w"))
    with pytest.raises(Exception, match="builtins.exec"):
        ck.load_checkpoint(path, model=TinyNet())
    assert not marker.exists()


KILL_SNIPPET = """
import sys
sys.path.insert(0, 'tests')
import os
from ckpt_models import make_training, train_state
from dist_train import checkpoint as ck
from dist_train.checkpoint.layout import sha256_file
model, opt, sched, scaler = make_training()
for step in (1, 2):
    if step == 2:
        os.environ[ck.FAULT_ENV] = sys.argv[2] + ':kill'
    ck.save_checkpoint(sys.argv[1], ck.step_tag(step), model=model, optimizer=opt, scaler=scaler,
                       train_state=train_state(step), cfg=None, keep_last=3)
"""


@pytest.mark.parametrize("point,expected", [("before_rename", "step_000001"),
                                            ("before_latest", "step_000002")])
def test_kill_9_during_save(tmp_path, caplog, point, expected):
    proc = run_cli(["-c", KILL_SNIPPET, str(tmp_path), point], check=False, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert _latest(tmp_path) == "step_000001"
    with caplog.at_level(logging.WARNING, logger="dist_train"):
        chosen = ck.resolve_resume(str(tmp_path), "auto")
    assert chosen == str(tmp_path / "checkpoints" / expected)
    # the reason is named: an interrupted temp dir, or a newer checkpoint 'latest' missed
    assert (".tmp-step_000002-" in caplog.text) if point == "before_rename" else \
        ("stopped between its rename and 'latest'" in caplog.text)
    model = TinyNet()
    assert ck.load_checkpoint(chosen, model=model)["global_step"] == int(expected[-1])
