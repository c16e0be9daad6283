"""Checkpoints across AMP levels: an O2 checkpoint (float16/bfloat16 parameters, float32 master
weights, Paddle's master accumulator names) loads into O2, O1 and fp32 set-ups and back, and a
save casts each low-precision tensor once.

On CPU ``paddle.amp.decorate(level="O2")`` returns early (parameters stay float32), so these tests
let it believe the place is a GPU (``fake_gpu``): the network is then really cast, the optimizer
really gets master weights, and the checkpoint is built from them by hand (CPU has no float16
Momentum step). Step equality after an O2 resume is the GPU self-test's job."""
import sys
from contextlib import contextmanager
from unittest import mock

import numpy as np
import paddle
import pytest

from ckpt_models import TinyNet, batch
from dist_train import checkpoint as ck
from dist_train.checkpoint import optimizer_state
from dist_train.models import build_model
from dist_train.training import engine

pytestmark = pytest.mark.paddle2

LEVELS = ("fp32", "O1", "O2-float16", "O2-bfloat16")
LR, MOMENTUM = 0.1, 0.9


@contextmanager
def fake_gpu():
    """paddle.amp.decorate's device checks see a GPU that supports float16 and bfloat16."""
    module = sys.modules["paddle.amp.auto_cast"]
    place = mock.Mock(is_gpu_place=lambda: True, is_xpu_place=lambda: False,
                      is_custom_place=lambda: False)
    with mock.patch.object(module, "_dygraph_tracer", lambda: mock.Mock(_expected_place=place)), \
            mock.patch.object(module, "_is_gpu_float16_supported", lambda: True), \
            mock.patch.object(module, "_is_gpu_bfloat16_supported", lambda: True):
        yield


def amp_of(level):
    if level == "fp32":
        return {"enabled": False, "level": "O1", "dtype": "float16"}
    name, _, dtype = level.partition("-")
    return {"enabled": True, "level": name, "dtype": dtype or "float16"}


def setup(level, seed=0, network=None):
    """(network, optimizer) as training builds them for ``level`` (decorated through the engine)."""
    paddle.seed(seed)
    net = network or TinyNet()
    amp = amp_of(level)
    o2 = amp["enabled"] and amp["level"] == "O2"
    opt = paddle.optimizer.Momentum(LR, momentum=MOMENTUM, parameters=net.parameters(),
                                    multi_precision=o2)
    with fake_gpu():
        net, opt = engine.decorate_o2(net, opt, amp)
    return net, opt


def velocity(opt, param):
    master = opt._master_weights.get(param.name)
    return opt._accumulators["velocity"][(master if master is not None else param).name]


def trainable(net):
    return [(n, p) for n, p in net.named_parameters() if not p.stop_gradient]


def as32(tensor):
    return paddle.cast(tensor, "float32").numpy()


def fill_o2_state(net, opt, seed=1):
    """Random master weights (parameters = their rounding) and velocities; returns the values
    by structured name: {name: (weight float32, velocity)}."""
    rng = np.random.default_rng(seed)
    optimizer_state.create_accumulators(opt)
    values = {}
    for name, p in trainable(net):
        weight = rng.standard_normal(p.shape).astype(np.float32)
        vel = rng.standard_normal(p.shape).astype(np.float32)
        master = opt._master_weights.get(p.name)
        if master is not None:
            master.set_value(weight)
        p.set_value(paddle.cast(paddle.to_tensor(weight), p.dtype))
        if master is None:
            weight = as32(p)
        velocity(opt, p).set_value(vel)
        values[name] = (weight, vel)
    return values


def save(run_dir, net, opt, step=1):
    return ck.save_checkpoint(str(run_dir), ck.step_tag(step), model=net, optimizer=opt,
                              scaler=paddle.amp.GradScaler(enable=False),
                              train_state={"epoch": 0, "step_in_epoch": step, "global_step": step},
                              cfg=None, keep_last=0)


def check_loaded(net, opt, values, level):
    low = level.startswith("O2")
    for name, p in trainable(net):
        weight, vel = values[name]
        master = opt._master_weights.get(p.name)
        if low and "bn" not in name:
            assert str(p.dtype).endswith(level.split("-")[1]) and master is not None, name
            np.testing.assert_array_equal(master.numpy(), weight, err_msg=name)
            expected = as32(paddle.cast(paddle.to_tensor(weight), p.dtype))
            np.testing.assert_array_equal(as32(p), expected, err_msg=name)
        else:
            assert p.dtype == paddle.float32 and master is None, name
            np.testing.assert_array_equal(p.numpy(), weight, err_msg=name)
        np.testing.assert_array_equal(velocity(opt, p).numpy(), vel, err_msg=name)


def test_o2_checkpoint_loads_into_every_level_and_back(tmp_path):
    source, source_opt = setup("O2-float16")
    assert source.conv.weight.dtype == paddle.float16 and source.bn.weight.dtype == paddle.float32
    values = fill_o2_state(source, source_opt)
    saved = save(tmp_path / "o2", source, source_opt)
    state = ck.read_state(saved)
    assert state["param_names"]["conv.weight"] == source.conv.weight.name
    for level in LEVELS:
        net, opt = setup(level, seed=5)  # other initial values; names differ from the saving ones
        ck.load_checkpoint(saved, model=net, optimizer=opt)
        check_loaded(net, opt, values, level)
    # back: an fp32 checkpoint (written after loading the O2 one) into O2 bfloat16 and float16
    net, opt = setup("fp32", seed=6)
    ck.load_checkpoint(saved, model=net, optimizer=opt)
    saved32 = save(tmp_path / "fp32", net, opt, step=2)
    for level in ("O2-bfloat16", "O2-float16"):
        target, target_opt = setup(level, seed=7)
        ck.load_checkpoint(saved32, model=target, optimizer=target_opt)
        check_loaded(target, target_opt, values, level)


def test_resumed_fp32_step_uses_the_loaded_velocity(tmp_path):
    """After loading an O2 checkpoint, Paddle's own fp32 step reads the restored velocity:
    v' = m v + g, w' = w - lr v' (no weight decay here)."""
    source, source_opt = setup("O2-float16")
    values = fill_o2_state(source, source_opt)
    saved = save(tmp_path, source, source_opt)
    net, opt = setup("fp32", seed=3)
    ck.load_checkpoint(saved, model=net, optimizer=opt)
    x, y = batch(0)
    paddle.nn.functional.cross_entropy(net(x), y).backward()
    grad = net.conv.weight.grad.numpy().copy()
    opt.step()
    weight, vel = values["conv.weight"]
    expected_velocity = MOMENTUM * vel + grad
    np.testing.assert_allclose(velocity(opt, net.conv.weight).numpy(), expected_velocity, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.conv.weight.numpy(), weight - LR * expected_velocity, rtol=1e-5, atol=1e-6)


def test_unknown_optimizer_entry_is_named(tmp_path):
    net, opt = setup("fp32")
    with pytest.raises(ck.CheckpointError, match="'nobody_moment1_0' belongs to no parameter"):
        optimizer_state.saved_entries({"nobody_moment1_0": np.zeros(1)},
                                      {n: p.name for n, p in net.named_parameters()}, "x.pdopt")


def test_o2_save_casts_each_tensor_once(tmp_path, monkeypatch):
    net, opt = setup("O2-float16", network=build_model("resnet-10", 5, width_mult=0.25))
    state = net.state_dict(use_hook=False)
    low = sum(1 for v in state.values() if v.dtype == paddle.float16)
    assert 10 < low < len(state)
    # no per-sublayer state-dict hooks (decorate's save_dtype: each re-casts the whole dict)
    assert not [layer for layer in net.sublayers(include_self=True) if layer._state_dict_hooks]
    calls = []
    real_cast = paddle.cast
    monkeypatch.setattr(paddle, "cast", lambda x, dtype: calls.append(dtype) or real_cast(x, dtype))
    path = save(tmp_path, net, opt)
    assert len(calls) == low, f"{len(calls)} casts for {low} float16 tensors"
    monkeypatch.setattr(paddle, "cast", real_cast)
    weights = ck.load_weights(path, build_model("resnet-10", 5, width_mult=0.25))
    assert len(weights["loaded"]) == len(state)
