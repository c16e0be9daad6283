"""Model zoo: names and options, initialisation, shortcut A, forward/backward of every model,
layouts (NCDHW vs NDHWC), preprocessing layer."""
import math

import numpy as np
import paddle
import pytest

from dist_train.models import MODELS, NORMALIZATION_PRESETS, Preprocess, build_model
from dist_train.models.resnet import ZeroPadShortcut

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2

TINY = {"width_mult": 0.125}


def tiny_clip(batch=2, frames=16, size=32, seed=0):
    return paddle.to_tensor(np.random.RandomState(seed).standard_normal(
        (batch, 3, frames, size, size)).astype(np.float32))


def test_all_paper_models_are_listed():
    expected = {f"resnet-{d}" for d in (10, 18, 34, 50, 101, 152, 200)}
    expected |= {f"preresnet-{d}" for d in (10, 18, 34, 50, 101, 152, 200)}
    expected |= {"wideresnet-50", "resnext-50", "resnext-101", "resnext-152"}
    expected |= {f"densenet-{d}" for d in (121, 169, 201, 264)}
    assert set(MODELS) == expected


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_reaches_every_parameter(name):
    paddle.seed(0)
    model = build_model(name, 5, **TINY)
    model.train()
    logits = model(tiny_clip())
    assert logits.shape == [2, 5]
    weights = paddle.to_tensor(np.random.RandomState(1).standard_normal((2, 5)).astype("float32"))
    (logits * weights).sum().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    assert trainable
    for pname, param in trainable:
        assert param.grad is not None, pname
        assert float(paddle.abs(param.grad).sum()) > 0, pname


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown model 'resnet-19'.*resnet-18"):
        build_model("resnet-19", 10)
    with pytest.raises(ValueError, match="'widen_factor' does not apply to densenet-121"):
        build_model("densenet-121", 10, widen_factor=2)
    with pytest.raises(ValueError, match="'wide_k' does not apply to resnet-50"):
        build_model("resnet-50", 10, wide_k=2)
    with pytest.raises(ValueError, match="'cardinality' does not apply to wideresnet-50"):
        build_model("wideresnet-50", 10, cardinality=8)
    with pytest.raises(ValueError, match="'shortcut' does not apply to densenet-201"):
        build_model("densenet-201", 10, shortcut="A")
    with pytest.raises(ValueError, match="shortcut must be 'A' or 'B'"):
        build_model("resnet-18", 10, shortcut="C", **TINY)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet-18", 0, **TINY)
    with pytest.raises(ValueError, match="data_format"):
        build_model("resnet-18", 3, data_format="NHWC", **TINY)


def shortcut_kinds(model):
    return [type(layer.downsample).__name__ for name, layer in model.named_sublayers()
            if hasattr(layer, "downsample") and layer.downsample is not None]


def test_default_shortcuts_as_released():
    for name in ("resnet-18", "resnet-34"):
        kinds = shortcut_kinds(build_model(name, 3, **TINY))
        assert kinds and set(kinds) == {"ZeroPadShortcut"}
    for name in ("resnet-10", "resnet-50", "preresnet-18", "wideresnet-50", "resnext-50"):
        kinds = shortcut_kinds(build_model(name, 3, **TINY))
        assert kinds and set(kinds) == {"Sequential"}, name
    assert set(shortcut_kinds(build_model("resnet-50", 3, shortcut="A", **TINY))) == {
        "ZeroPadShortcut"}


def test_shortcut_a_is_parameter_free_subsample_with_zero_channels_and_no_gradient():
    model = build_model("resnet-18", 3, shortcut="A", **TINY)
    for name, layer in model.named_sublayers():
        if isinstance(layer, ZeroPadShortcut):
            assert layer.parameters() == [] and layer.state_dict() == {}, name
    assert not any("downsample" in k for k in model.state_dict())
    x = paddle.to_tensor(np.random.RandomState(0).standard_normal((2, 4, 5, 7, 7)).astype("float32"),
                         stop_gradient=False)
    out = ZeroPadShortcut(10, 2)(x)
    expected = np.zeros((2, 10, 3, 4, 4), np.float32)
    expected[:, :4] = x.numpy()[:, :, ::2, ::2, ::2]
    np.testing.assert_array_equal(out.numpy(), expected)
    assert out.stop_gradient
    (out.sum() + (x * 2).sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full(x.shape, 2.0, np.float32))
    channels_last = ZeroPadShortcut(10, 2, "NDHWC")(paddle.transpose(x, [0, 2, 3, 4, 1]))
    np.testing.assert_array_equal(channels_last.numpy(), expected.transpose(0, 2, 3, 4, 1))


def test_initialisation_matches_the_reference():
    paddle.seed(0)
    model = build_model("resnet-18", 400, shortcut="B")
    w = model.layer3[0].conv2.weight.numpy()  # 256 out, 3x3x3: fan_out = 256 * 27
    assert abs(w.mean()) < 1e-3 and abs(w.std() / math.sqrt(2 / (256 * 27)) - 1) < 0.02
    w = model.conv1.weight.numpy()
    assert abs(w.std() / math.sqrt(2 / (64 * 343)) - 1) < 0.02
    bn = model.layer2[0].downsample[1]
    np.testing.assert_array_equal(bn.weight.numpy(), 1)
    np.testing.assert_array_equal(bn.bias.numpy(), 0)
    assert bn._momentum == 0.9 and bn._epsilon == 1e-5
    bound = 1 / math.sqrt(512)
    fc_w, fc_b = model.fc.weight.numpy(), model.fc.bias.numpy()
    assert fc_w.shape == (512, 400)  # Paddle layout [in, out]
    assert np.abs(fc_w).max() <= bound and np.abs(fc_w).max() > 0.99 * bound
    assert abs(fc_w.std() / (bound / math.sqrt(3)) - 1) < 0.02  # uniform, not normal
    assert np.abs(fc_b).max() <= bound and np.abs(fc_b).max() > 0.9 * bound


def copy_weights(src, dst):
    dst.set_state_dict({k: v.numpy() for k, v in src.state_dict().items()})


@pytest.mark.parametrize("name", ["resnet-18", "resnext-50", "preresnet-18", "densenet-121"])
def test_channels_last_equals_channels_first(name):
    paddle.seed(1)
    first = build_model(name, 4, **TINY)
    last = build_model(name, 4, data_format="NDHWC", **TINY)
    copy_weights(first, last)
    for model in (first, last):
        model.eval()
    x = tiny_clip()
    want = first(x).numpy()
    got = last(paddle.transpose(x, [0, 2, 3, 4, 1])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # uint8 clips through the preprocessing layer of each layout give the same logits
    clip = paddle.to_tensor(np.random.RandomState(2).randint(0, 256, (2, 3, 16, 32, 32)).astype(
        np.uint8))
    kinetics = NORMALIZATION_PRESETS["kinetics"]
    a = first(Preprocess(kinetics["mean"], kinetics["std"])(clip)).numpy()
    b = last(Preprocess(kinetics["mean"], kinetics["std"], "NDHWC")(clip)).numpy()
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * np.abs(a).max())


def test_stem_options_change_the_shapes():
    x = tiny_clip(frames=16, size=64)
    model = build_model("resnet-18", 3, conv1_t_size=3, conv1_t_stride=2, **TINY)
    assert model.conv1.weight.shape == [8, 3, 3, 7, 7]
    assert model.conv1(x).shape == [2, 8, 8, 32, 32]
    no_pool = build_model("resnet-18", 3, no_max_pool=True, **TINY)
    assert no_pool.maxpool is None and "maxpool" not in no_pool.stage_names
    assert no_pool.layer1(no_pool.conv1(x)).shape == [2, 8, 16, 32, 32]
    dense = build_model("densenet-121", 3, no_max_pool=True, conv1_t_size=5, **TINY)
    assert dense.features.conv0.weight.shape == [8, 3, 5, 7, 7]
    assert "features.pool0" not in dense.stage_names


def test_width_options():
    with paddle.LazyGuard():  # shapes only: skip initialising full-width models
        widened = build_model("resnet-18", 3, widen_factor=2.0)
        resnext = build_model("resnext-50", 3, cardinality=16)
    assert widened.conv1.weight.shape == [128, 3, 7, 7, 7]
    assert widened.fc.weight.shape == [1024, 3]
    wide = build_model("wideresnet-50", 3, wide_k=1, **TINY)
    assert wide.layer1[0].conv2.weight.shape == [8, 8, 3, 3, 3]
    assert wide.layer4[2].conv3.weight.shape == [128, 64, 1, 1, 1]
    conv = resnext.layer1[0].conv2  # cardinality x planes/32 = 16 x 4 channels, 16 groups
    assert conv.weight.shape == [64, 4, 3, 3, 3] and conv._groups == 16
    assert resnext.fc.weight.shape == [2048, 3]
    tiny = build_model("resnext-101", 3, **TINY)  # each of the 32 groups keeps one channel
    assert tiny.layer1[0].conv2.weight.shape == [32, 1, 3, 3, 3]


def test_preprocess_presets_and_arithmetic():
    assert NORMALIZATION_PRESETS["activitynet"] == {"mean": [114.7748, 107.7354, 99.4750],
                                                    "std": None}
    np.testing.assert_allclose(NORMALIZATION_PRESETS["imagenet"]["std"],
                               np.array([0.229, 0.224, 0.225]) * 255)
    clip = np.random.RandomState(0).randint(0, 256, (2, 3, 4, 5, 6)).astype(np.uint8)
    mean = np.array([114.7748, 107.7354, 99.4750], np.float32).reshape(1, 3, 1, 1, 1)
    out = Preprocess.from_preset("activitynet")(paddle.to_tensor(clip))
    assert out.dtype == paddle.float32
    np.testing.assert_allclose(out.numpy(), clip.astype(np.float32) - mean, atol=1e-4)
    k = NORMALIZATION_PRESETS["kinetics"]
    layer = Preprocess(k["mean"], k["std"])
    want = (clip - np.reshape(k["mean"], (1, 3, 1, 1, 1))) / np.reshape(k["std"], (1, 3, 1, 1, 1))
    np.testing.assert_allclose(layer(paddle.to_tensor(clip)).numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer(paddle.to_tensor(clip.astype(np.float32))).numpy(), want,
                               rtol=1e-5, atol=1e-5)
    channels_last = Preprocess(k["mean"], k["std"], data_format="NDHWC")(paddle.to_tensor(clip))
    np.testing.assert_allclose(channels_last.numpy(), want.transpose(0, 2, 3, 4, 1), rtol=1e-5,
                               atol=1e-5)
    assert layer.state_dict() == {}  # normalisation is configuration, not weights
    with pytest.raises(ValueError, match=r"\[N, 3, T, H, W\]"):
        layer(paddle.zeros([2, 4, 3, 3, 3]))
    with pytest.raises(ValueError, match="3 values"):
        Preprocess([1.0, 2.0])
    with pytest.raises(ValueError, match="unknown normalisation preset"):
        Preprocess.from_preset("cifar")
