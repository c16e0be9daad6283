"""Optimizer groups, global-norm clipping, dampening emulation and learning-rate schedules."""
import math

import numpy as np
import paddle
import pytest

from dist_train.training import optim
from dist_train.config import load_config

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


def tiny_net():
    paddle.seed(0)
    return paddle.nn.Sequential(paddle.nn.Conv3D(3, 4, 1), paddle.nn.BatchNorm3D(4),
                                paddle.nn.Flatten(), paddle.nn.Linear(4, 2))


def test_param_groups_exclude_bn_and_bias_from_decay():
    net = tiny_net()
    groups = optim.param_groups(net, 1e-3, no_decay_bn_bias=True)
    trainable = [p for p in net.parameters() if not p.stop_gradient]
    assert sum(len(g["params"]) for g in groups) == len(trainable)  # BN running stats excluded
    decayed = [p for g in groups if g["weight_decay"] for p in g["params"]]
    assert sorted(p.ndim for p in decayed) == [2, 5]
    assert len(optim.param_groups(net, 1e-3, no_decay_bn_bias=False)) == 1


def test_clip_grad_norm_is_global_over_groups():
    net = tiny_net()
    cfg = load_config(None, ["optim.no_decay_bn_bias=true", "optim.weight_decay=0.0"])
    opt = optim.build_optimizer(cfg, net)
    net(paddle.ones([2, 3, 1, 1, 1])).sum().backward()
    params = optim.trainable_parameters(opt)
    grads = [p.grad.numpy().copy() for p in params]
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads))
    assert optim.clip_grad_norm(params, norm / 4) == pytest.approx(norm, rel=1e-5)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g / 4, rtol=1e-4, atol=1e-7)
    after = math.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in params))
    assert after == pytest.approx(norm / 4, rel=1e-4)


def test_dampening_emulation_matches_torch_steady_state():
    """Same gradients fed to Paddle (lr x (1-d)) and to torch.optim.SGD(dampening=d): the
    parameter difference is the first-step transient only, bounded and shrinking."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(200, 5)).astype(np.float32)
    cfg = load_config(None, ["optim.dampening=0.9", "train.lr=0.1", "optim.weight_decay=0.0"])
    lin = paddle.nn.Linear(5, 1, bias_attr=False)
    start = lin.weight.numpy().copy()
    opt = optim.build_optimizer(cfg, lin)
    assert opt.get_lr() == pytest.approx(0.1 * 0.1)
    tw = torch.nn.Parameter(torch.tensor(start))
    topt = torch.optim.SGD([tw], lr=0.1, momentum=0.9, dampening=0.9)
    diffs = []
    for g in grads:
        lin.weight.grad = paddle.to_tensor(g.reshape(5, 1))
        opt.step()
        tw.grad = torch.tensor(g.reshape(5, 1))
        topt.step()
        diffs.append(np.abs(lin.weight.numpy() - tw.detach().numpy()).max())
    # torch's undampened first gradient: 0.1 * 0.9 * g1 * sum(0.9^k) = 0.9 * g1 in the limit
    bound = 0.9 * np.abs(grads[0]).max() + 1e-4
    assert max(diffs) <= bound and diffs[-1] == pytest.approx(diffs[100], abs=1e-4)
    # exact without the first-step special case: numpy reference dampening every gradient
    w, buf = start.reshape(5).astype(np.float64), np.zeros(5)
    for g in grads:
        buf = 0.9 * buf + 0.1 * g
        w = w - 0.1 * buf
    np.testing.assert_allclose(lin.weight.numpy().reshape(5), w, atol=1e-5)


def test_multistep_warmup_and_linear_scaling():
    cfg = load_config(None, ["train.lr=0.1", "train.batch_size=256", "train.lr_base_batch=128",
                             "sched.name=multistep", "sched.milestones=[2, 4]",
                             "sched.warmup_epochs=1", "train.epochs=6"])
    s = optim.LRSchedule.from_config(cfg, steps_per_epoch=10)
    assert s.lr_at(0) == pytest.approx(0.2 / 10)
    assert s.lr_at(9) == pytest.approx(0.2)
    assert s.lr_at(19) == pytest.approx(0.2)
    assert s.lr_at(20) == pytest.approx(0.02)
    assert s.lr_at(45) == pytest.approx(0.002)


def test_cosine_reaches_min_lr():
    s = optim.LRSchedule("cosine", 1.0, steps_per_epoch=4, epochs=5, min_lr=0.01)
    assert s.lr_at(0) == pytest.approx(1.0)
    assert s.lr_at(10) == pytest.approx(0.01 + 0.99 * 0.5)
    assert s.lr_at(20) == pytest.approx(0.01)
    lrs = [s.lr_at(i) for i in range(20)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_plateau_patience_in_validations_and_state_round_trip():
    s = optim.LRSchedule("plateau", 0.1, steps_per_epoch=3, epochs=10, gamma=0.1, patience=2,
                         min_lr=1e-4)
    losses = [1.0, 0.9, 0.95, 0.92, 0.91, 0.89, 0.95]  # bad, bad, bad -> reduce at the 3rd
    reduced = [s.on_validation(v) for v in losses]
    assert reduced == [False, False, False, False, True, False, False]
    assert s.lr_at(100) == pytest.approx(0.01)
    clone = optim.LRSchedule("plateau", 0.1, steps_per_epoch=3, epochs=10, gamma=0.1, patience=2)
    clone.load_state_dict(s.state_dict())
    assert clone.state_dict() == s.state_dict() and clone.lr_at(5) == s.lr_at(5)
    for _ in range(30):
        s.on_validation(5.0)
    assert s.lr_at(0) == pytest.approx(1e-4)  # floor
    with pytest.raises(ValueError, match="schedule"):
        optim.LRSchedule("cosine", 0.1, 3, 10).load_state_dict(s.state_dict())
