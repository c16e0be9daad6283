"""Sync BN: the CPU twin equals Paddle's BN on one rank, and 2 ranks x 4 equal 1 rank x 8."""
import os

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from dist_train.dist import sync_bn
from helpers import launch, run_cli

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


@pytest.mark.parametrize("data_format", ["NCDHW", "NDHWC"])
def test_cpu_twin_matches_paddle_batchnorm_on_one_rank(data_format):
    paddle.seed(1)
    plain = nn.BatchNorm3D(4, momentum=0.9, data_format=data_format)
    twin = nn.BatchNorm3D(4, momentum=0.9, data_format=data_format)
    twin.set_state_dict(plain.state_dict())
    twin = sync_bn.CpuSyncBatchNorm(twin)
    shape = [3, 4, 2, 5, 5] if data_format == "NCDHW" else [3, 2, 5, 5, 4]
    x_np = np.random.default_rng(0).normal(1.5, 2.0, shape).astype(np.float32)
    weights = paddle.to_tensor(np.random.default_rng(1).normal(size=shape).astype(np.float32))
    results = []
    for layer in (plain, twin):
        layer.train()
        x = paddle.to_tensor(x_np, stop_gradient=False)
        for _ in range(2):  # two updates of the running statistics
            y = layer(x)
        (y * weights).sum().backward()
        results.append((y.numpy(), x.grad.numpy(), layer.weight.grad.numpy(),
                        layer.bias.grad.numpy(), layer._mean.numpy(), layer._variance.numpy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Paddle's convention: biased batch variance in the running statistics.
    axes = tuple(i for i in range(5) if i != (1 if data_format == "NCDHW" else 4))
    expected_var = 0.9 * (0.9 * 1.0 + 0.1 * x_np.var(axis=axes)) + 0.1 * x_np.var(axis=axes)
    np.testing.assert_allclose(results[1][5], expected_var, rtol=1e-5)
    twin.eval(), plain.eval()
    np.testing.assert_allclose(twin(paddle.to_tensor(x_np)).numpy(),
                               plain(paddle.to_tensor(x_np)).numpy(), rtol=1e-5, atol=1e-5)


# The twin keeps its [C] scratch tensors and numpy views between steps: they must never hold
# stale values. Each scenario disturbs step 1 of three (plain BN and the twin get the same).
BUFFER_SCENARIOS = {
    "clean": "nothing",
    "dropped_graph": "a forward whose graph is dropped before any backward",
    "nan_then_loaded": "NaN statistics in a no-grad forward, then running statistics replaced "
                       "by set_state_dict",
    "applied_twice": "the layer applied twice before one backward",
    "new_memory": "new memory for every tensor of the layer (same Python objects)",
    "deep_copy": "a deep copy (e.g. an EMA model) trained on: neither may write into the other",
}
SHAPE = [2, 4, 2, 3, 3]


def bn_pair():
    paddle.seed(3)
    plain = nn.BatchNorm3D(4, momentum=0.8)
    twin = nn.BatchNorm3D(4, momentum=0.8)
    twin.set_state_dict(plain.state_dict())
    return plain, sync_bn.CpuSyncBatchNorm(twin)


def bn_steps(layer, scenario, seed=4):
    """Three training steps of ``layer``; the scenario's disturbance before/in step 1. Returns
    per step [y, x.grad, weight.grad, bias.grad, running mean, running variance]."""
    rng = np.random.default_rng(seed)
    batches = [rng.normal(0.5 * i, 1.0 + i, SHAPE).astype(np.float32) for i in range(3)]
    weights = paddle.to_tensor(rng.normal(size=SHAPE).astype(np.float32))
    loaded = {k: paddle.to_tensor(rng.uniform(0.5, 2.0, [4]).astype(np.float32))
              for k in ("_mean", "_variance")}
    out = []
    for step, x_np in enumerate(batches):
        if step == 1 and scenario == "dropped_graph":
            layer(paddle.to_tensor(batches[0], stop_gradient=False))
        if step == 1 and scenario == "nan_then_loaded":
            with paddle.no_grad():
                layer(paddle.to_tensor(np.full(SHAPE, np.nan, np.float32)))
            layer.set_state_dict(loaded)
        if step == 1 and scenario == "new_memory":
            layer.to(dtype="float64")
            layer.to(dtype="float32")
        x = paddle.to_tensor(x_np, stop_gradient=False)
        y = layer(x)
        if step == 1 and scenario == "applied_twice":
            y = y + layer(paddle.to_tensor(batches[0] * 2.0, stop_gradient=False))
        (y * weights).sum().backward()
        out.append([y.numpy(), x.grad.numpy(), layer.weight.grad.numpy(), layer.bias.grad.numpy(),
                    layer._mean.numpy(), layer._variance.numpy()])
        layer.clear_gradients()
    return out


def assert_same_steps(expected, got, what):
    assert len(expected) == len(got) == 3
    for step, (a_step, b_step) in enumerate(zip(expected, got)):
        for a, b in zip(a_step, b_step):
            assert np.isfinite(b).all(), f"{what}, step {step}"
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=f"{what}, step {step}")


@pytest.mark.parametrize("scenario", sorted(BUFFER_SCENARIOS))
def test_cpu_twin_reused_buffers_stay_exact(scenario):
    plain, twin = bn_pair()
    if scenario == "deep_copy":
        import copy

        bn_steps(plain, "clean", seed=1), bn_steps(twin, "clean", seed=1)  # buffers in use
        plain_copy, twin_copy = copy.deepcopy(plain), copy.deepcopy(twin)
        assert_same_steps(bn_steps(plain_copy, "clean"), bn_steps(twin_copy, "clean"), "copy")
        assert_same_steps(bn_steps(plain, "clean"), bn_steps(twin, "clean"), "original")
    else:
        assert_same_steps(bn_steps(plain, scenario), bn_steps(twin, scenario), scenario)


def test_cpu_twin_allocates_its_scratch_once():
    """Reused, not re-created every step: new tensors only for the second forward before a
    backward; the token guarding them dies with the last graph."""
    _, twin = bn_pair()
    bn_steps(twin, "clean")
    first_scratch, allocations = twin._scratch[0], []
    new_statistics = twin._new_statistics
    twin._new_statistics = lambda: allocations.append(1) or new_statistics()
    bn_steps(twin, "clean")
    assert twin._scratch[0] is first_scratch and allocations == []
    bn_steps(twin, "applied_twice")
    assert twin._scratch[0] is first_scratch and len(allocations) == 1
    assert twin._scratch_graph[0]() is None


def test_conversion_keeps_state_dict_keys_and_reverts():
    from dist_train.models import build_model
    paddle.seed(0)
    net = build_model("resnet-10", 5, width_mult=0.125)
    keys = list(net.state_dict())
    converted, kind = sync_bn.convert_sync_batchnorm(net, world_size=2, on_gpu=False)
    assert kind == "cpu" and sync_bn.count_sync_layers(converted) > 0
    assert list(converted.state_dict()) == keys
    plain = sync_bn.revert_sync_batchnorm(converted)
    assert sync_bn.count_sync_layers(plain) == 0 and list(plain.state_dict()) == keys
    same, kind = sync_bn.convert_sync_batchnorm(plain, world_size=1, on_gpu=False)
    assert kind == "plain" and sync_bn.count_sync_layers(same) == 0


@pytest.mark.multiproc
def test_two_ranks_match_one_rank_with_the_whole_batch(tmp_path):
    out = str(tmp_path)
    run_cli(["tests/sync_bn_probe.py", out, "sync"])
    launch(["tests/sync_bn_probe.py", out, "sync"], str(tmp_path / "log_sync"))
    launch(["tests/sync_bn_probe.py", out, "plain"], str(tmp_path / "log_plain"))
    one = np.load(os.path.join(out, "rank0_of1_sync.npz"))
    ranks = [np.load(os.path.join(out, f"rank{r}_of2_sync.npz")) for r in (0, 1)]
    plain = np.load(os.path.join(out, "rank0_of2_plain.npz"))
    assert int(ranks[0]["sync_layers"]) == 2 and int(plain["sync_layers"]) == 0
    compared = [k for k in one.files if k != "sync_layers"]
    assert {"outputs", "loss", "grad/1.weight", "state/1._mean", "state/1._variance",
            "state/4._variance", "state/0.weight", "state/8.weight"} <= set(compared)
    for key in compared:
        for r in (0, 1):
            np.testing.assert_allclose(ranks[r][key], one[key], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{key} rank {r}")
    # Negative control: per-rank BN on shards with different statistics is visibly off.
    for key in ("outputs", "loss", "grad/0.weight", "state/1._mean", "state/0.weight"):
        assert np.abs(plain[key] - one[key]).max() > 1e-3, key


@pytest.mark.parametrize("x_needs_grad,affine_trainable", [(True, False), (False, True)])
def test_cpu_twin_matches_paddle_batchnorm_with_frozen_parts(x_needs_grad, affine_trainable):
    """Frozen weight/bias (fine-tuning) or an input without gradient (first layer): the twin's
    gradients and statistics still equal Paddle's BN, and nothing is computed for frozen parts."""
    paddle.seed(2)
    plain = nn.BatchNorm3D(3, momentum=0.8)
    twin = nn.BatchNorm3D(3, momentum=0.8)
    twin.set_state_dict(plain.state_dict())
    twin = sync_bn.CpuSyncBatchNorm(twin)
    x_np = np.random.default_rng(3).normal(-4.0, 0.5, [4, 3, 2, 3, 3]).astype(np.float32)
    weights = paddle.to_tensor(np.random.default_rng(4).normal(size=x_np.shape).astype(np.float32))
    results = []
    for layer in (plain, twin):
        layer.train()
        layer.weight.stop_gradient = layer.bias.stop_gradient = not affine_trainable
        x = paddle.to_tensor(x_np, stop_gradient=not x_needs_grad)
        y = layer(x)
        (y * weights).sum().backward()
        grads = [t.grad for t in (x, layer.weight, layer.bias)]
        assert [g is not None for g in grads] == [x_needs_grad, affine_trainable, affine_trainable]
        results.append([y.numpy(), layer._mean.numpy(), layer._variance.numpy()]
                       + [g.numpy() for g in grads if g is not None])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_cpu_twin_statistics_are_exact_far_from_zero():
    """A large common offset (mean 1000, std 0.1): the float64 combination of per-rank moments
    keeps the variance (float32 sums of x^2 would lose it entirely)."""
    twin = sync_bn.CpuSyncBatchNorm(nn.BatchNorm3D(2, momentum=0.0))
    x_np = np.random.default_rng(5).normal(1000.0, 0.1, [4, 2, 2, 4, 4]).astype(np.float32)
    twin.train()
    y = twin(paddle.to_tensor(x_np)).numpy()
    x64 = x_np.astype(np.float64)
    var = x64.var(axis=(0, 2, 3, 4))
    np.testing.assert_allclose(twin._variance.numpy(), var, rtol=1e-3)
    expected = (x64 - x64.mean(axis=(0, 2, 3, 4), keepdims=True)) / np.sqrt(
        var.reshape(1, 2, 1, 1, 1) + 1e-5)
    np.testing.assert_allclose(y, expected, atol=2e-3)
