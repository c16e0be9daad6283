"""Fine-tuning: new head with another class count, ft_begin_module, pretrained-lr multiplier,
BN statistics updating by default and frozen on request."""
import numpy as np
import paddle
import pytest

from dist_train.models import build_model
from dist_train.models.finetune import (StateDictMismatch, freeze_bn, load_pretrained,
                                        set_ft_begin_module, split_pretrained_params)
from dist_train.training.optim import param_groups

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2

TINY = {"width_mult": 0.125}


def clip(seed=0, batch=2):
    return paddle.to_tensor(np.random.RandomState(seed).standard_normal(
        (batch, 3, 8, 32, 32)).astype(np.float32))


def pretrained_state(name="resnet-18", classes=400, **options):
    paddle.seed(5)
    return {k: v.numpy() for k, v in build_model(name, classes, **options, **TINY)
            .state_dict().items()}


@pytest.mark.parametrize("name", ["resnet-18", "densenet-121"])
def test_new_head_is_reported_and_backbone_loaded(name):
    state = pretrained_state(name)
    model = build_model(name, 101, **TINY)
    head = model.head_name
    own_head = model.state_dict()[f"{head}.weight"].numpy().copy()
    report = load_pretrained(model, state)
    assert report["new_head"] is True
    assert report["skipped_head"] == [f"{head}.bias", f"{head}.weight"]
    assert len(report["loaded"]) == len(state) - 2
    for key in report["loaded"]:
        np.testing.assert_array_equal(model.state_dict()[key].numpy(), state[key])
    np.testing.assert_array_equal(model.state_dict()[f"{head}.weight"].numpy(), own_head)
    same = build_model(name, 400, **TINY)
    report = load_pretrained(same, state)
    assert report["new_head"] is False and report["skipped_head"] == []
    np.testing.assert_array_equal(same.state_dict()[f"{head}.weight"].numpy(),
                                  state[f"{head}.weight"])


def test_other_mismatches_raise_with_every_key():
    with pytest.raises(StateDictMismatch) as err:
        load_pretrained(build_model("resnet-18", 101, shortcut="A", **TINY),
                        pretrained_state(shortcut="B"))
    assert "unexpected (15)" in str(err.value) and "layer3.0.downsample.1._mean" in str(err.value)
    state = pretrained_state()
    del state["layer1.0.bn1._variance"]
    state["layer2.0.conv1.weight"] = np.zeros((1, 1, 1, 1, 1), np.float32)
    with pytest.raises(StateDictMismatch) as err:
        load_pretrained(build_model("resnet-18", 101, **TINY), state)
    text = str(err.value)
    assert "missing (1): layer1.0.bn1._variance" in text
    assert "mis-shaped: layer2.0.conv1.weight: file [1, 1, 1, 1, 1] vs model [16, 8, 3, 3, 3]" in text


def test_ft_begin_module_trains_only_the_tail_and_bn_stats_still_update():
    model = build_model("resnet-18", 10, **TINY)
    weights = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    trainable = set(id(p) for p in set_ft_begin_module(model, "layer4"))
    for name, param in weights:  # (named_parameters also lists BN running statistics)
        tail = name.startswith(("layer4.", "fc."))
        assert param.stop_gradient == (not tail), name
        assert (id(param) in trainable) == tail
    before = model.layer1[0].bn1._mean.numpy().copy()
    model.train()
    model(clip()).sum().backward()
    assert model.conv1.weight.grad is None and model.layer4[0].conv1.weight.grad is not None
    assert not np.allclose(model.layer1[0].bn1._mean.numpy(), before)  # frozen weights, live BN
    with pytest.raises(ValueError, match="top-level modules are: conv1, bn1, maxpool"):
        set_ft_begin_module(model, "layer9")
    assert len(set_ft_begin_module(build_model("resnet-18", 10, **TINY), "")) == 1 + 2 + 8 * 6 + 2


@pytest.mark.parametrize("no_decay_bn_bias", [False, True])
def test_pretrained_lr_multiplier_of_the_trainers_optimizer_groups(no_decay_bn_bias):
    """training/optim.py's param_groups (what build_optimizer uses): loaded layers at the
    multiplied lr, the head at the base lr; one group per (lr, decay) without weights."""
    model = build_model("resnet-18", 10, **TINY)
    set_ft_begin_module(model, "layer4")
    pretrained, head = split_pretrained_params(model)
    assert [p.name for p in head] == [model.fc.weight.name, model.fc.bias.name]
    assert all(not p.stop_gradient for p in pretrained) and len(pretrained) == 2 * 6  # 2 blocks
    plain = param_groups(model, 0.0, no_decay_bn_bias, pretrained_lr_mult=0.1, has_pretrained=False)
    assert {g["learning_rate"] for g in plain} == {1.0}
    groups = param_groups(model, 0.0, no_decay_bn_bias, pretrained_lr_mult=0.1, has_pretrained=True)
    assert len(groups) == (4 if no_decay_bn_bias else 2)
    by_id = {id(p): g["learning_rate"] for g in groups for p in g["params"]}
    assert by_id == {**{id(p): 0.1 for p in pretrained}, **{id(p): 1.0 for p in head}}
    optimizer = paddle.optimizer.SGD(learning_rate=1.0, parameters=groups)
    before = {p.name: p.numpy().copy() for p in pretrained + head}
    model.train()
    model(clip()).sum().backward()
    grads = {p.name: p.grad.numpy().copy() for p in pretrained + head}
    optimizer.step()
    for param, scale in [(p, 0.1) for p in pretrained] + [(p, 1.0) for p in head]:
        np.testing.assert_allclose(before[param.name] - param.numpy(), scale * grads[param.name],
                                   rtol=1e-4, atol=1e-7)


def test_freeze_bn_keeps_statistics_through_train_mode():
    model = build_model("resnet-18", 10, **TINY)
    assert freeze_bn(model) == 1 + 4 * 2 * 2  # stem + 2 per block (shortcut A: no BN)
    model.train()
    bn = model.layer2[0].bn1
    mean, var = bn._mean.numpy().copy(), bn._variance.numpy().copy()
    out_train = model(clip()).numpy()
    np.testing.assert_array_equal(bn._mean.numpy(), mean)
    np.testing.assert_array_equal(bn._variance.numpy(), var)
    assert bn.weight.stop_gradient and bn.bias.stop_gradient
    model.eval()
    np.testing.assert_allclose(model(clip()).numpy(), out_train, rtol=1e-5, atol=1e-6)
