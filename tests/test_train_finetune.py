"""Fine-tuning through train.py: start from ``model.pretrained`` (another class count: a new
head), train from ``model.ft_begin_module`` with frozen BatchNorm and the pretrained-lr
multiplier, on 1 rank, 1 rank x 2 accumulation steps and 2 ranks x 2 accumulation steps (the
trainer's shared-memory gradient average after the last micro-batch).

With BatchNorm frozen every clip's forward pass is independent of the others, so splitting the
global batch over ranks or micro-batches is the same computation: 1 rank x accumulation 2 ==
2 ranks x accumulation 2 == 1 rank (up to summation order).
"""
import os

import numpy as np
import paddle
import pytest

from dist_train.models import build_model
from helpers import launch, run_cli
from resume_helpers import relative_difference, step_weights, tiny_config
from train_fixtures import make_dataset

MULT = 0.1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Data and the pretrained file: resnet-10 at width 1/8 with 7 classes and non-trivial BN
    statistics."""
    base = tmp_path_factory.mktemp("finetune")
    dataset = make_dataset(str(base))
    paddle.seed(123)
    net = build_model("resnet-10", 7, width_mult=0.125)
    rng = np.random.default_rng(4)
    state = {}
    for key, value in net.state_dict().items():
        value = value.numpy()
        if key.endswith("._mean"):
            value = rng.normal(0, 0.1, value.shape).astype(np.float32)
        elif key.endswith("._variance"):
            value = rng.uniform(0.5, 2, value.shape).astype(np.float32)
        state[key] = value
    path = str(base / "pretrained.pdparams")
    paddle.save(state, path)
    return base, dataset, path, state


def finetune_config(base, name, dataset, pretrained, **extra):
    return tiny_config(base, name, dataset, base / name, **{
        "model.pretrained": pretrained, "model.ft_begin_module": "layer4",
        "model.freeze_bn": True, "model.pretrained_lr_mult": MULT, **extra})


@pytest.fixture(scope="module")
def one_rank(setup):
    """The reference: 1 rank, 2 epochs x 2 steps, a checkpoint every step."""
    base, dataset, pretrained, _ = setup
    cfg = finetune_config(base, "one", dataset, pretrained)
    proc = run_cli(["dist_train/train.py", "-c", cfg])
    return cfg, str(base / "one"), proc.stdout + proc.stderr


def is_tail(key):
    return key.startswith(("layer4.", "fc.")) and not key.endswith(("._mean", "._variance"))


def frozen_keys(state):
    return [k for k in state if not is_tail(k) or ".bn" in k or "downsample.1" in k]


@pytest.mark.paddle2
def test_frozen_layers_stay_bitwise_and_the_tail_trains(setup, one_rank):
    _, _, _, pretrained = setup
    _, run, log = one_rank
    assert "new classifier head" in log and "frozen BatchNorm layers" in log
    final = step_weights(run, 4)
    frozen = frozen_keys(final)
    # everything before layer4 and every BatchNorm (statistics and affine) stays as loaded
    assert len(frozen) > 40 and any(k.startswith("layer4.") and "._mean" in k for k in frozen)
    for key in frozen:
        assert np.array_equal(final[key], pretrained[key]), key
    trained = [k for k in final if k not in frozen]
    assert sorted({k.split(".")[0] for k in trained}) == ["fc", "layer4"]
    for key in trained:
        if key.startswith("layer4."):
            assert not np.array_equal(final[key], pretrained[key]), key


@pytest.mark.paddle2
def test_loaded_layers_step_at_the_multiplied_lr(setup, one_rank, tmp_path):
    """After one step (momentum buffers empty, same gradients), a loaded layer moves MULT times
    as far as with multiplier 1; the new head moves the same."""
    base, dataset, pretrained_path, pretrained = setup
    cfg, run, _ = one_rank
    full = str(tmp_path / "mult1")
    run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={full}", "-o",
             "model.pretrained_lr_mult=1.0", "-o", "train.max_steps=1"])
    a, b = step_weights(run, 1), step_weights(full, 1)
    layer4 = [k for k in a if is_tail(k) and k.startswith("layer4.") and ".bn" not in k
              and "downsample.1" not in k]
    assert len(layer4) >= 3
    for key in layer4:
        step_mult, step_one = a[key] - pretrained[key], b[key] - pretrained[key]
        assert np.abs(step_one).max() > 1e-5, key
        # each difference is exact to the float32 spacing of the weight it was taken from
        slack = 2 * np.spacing(np.abs(pretrained[key])) + 1e-4 * np.abs(step_one)
        assert np.all(np.abs(step_mult - MULT * step_one) <= slack), key
    head_a, head_b = a["fc.weight"], b["fc.weight"]
    np.testing.assert_allclose(head_a, head_b, rtol=1e-6, atol=1e-9)


@pytest.mark.paddle2
@pytest.mark.multiproc
def test_accumulation_and_two_ranks_equal_one_rank_with_frozen_bn(setup, one_rank, tmp_path):
    """1 rank x 2 micro-batches and 2 ranks x 2 micro-batches (each rank its own loader) end
    where 1 rank does, up to float32 summation order (measured: ~1e-7); the frozen weights stay
    bitwise."""
    _, _, _, pretrained = setup
    cfg, run, _ = one_rank
    accum, two = str(tmp_path / "accum"), str(tmp_path / "two")
    run_cli(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={accum}", "-o",
             "train.accum_steps=2"])
    launch(["dist_train/train.py", "-c", cfg, "-o", f"run.dir={two}", "-o", "train.accum_steps=2"],
           str(tmp_path / "log"))
    with open(os.path.join(two, "train.log")) as f:
        log = f.read()
    assert "2 ranks x 2 micro-steps x 2 clips" in log
    assert "gradients averaged through shared memory" in log
    reference = step_weights(run, 4)
    layer4 = [k for k in reference if k.startswith("layer4.")]
    moved = relative_difference({k: pretrained[k] for k in layer4}, {k: reference[k] for k in layer4})
    assert moved > 1e-3  # the tail trained well above the tolerance below
    for other in (accum, two):
        final = step_weights(other, 4)
        for key in frozen_keys(final):
            assert np.array_equal(final[key], pretrained[key]), key
        assert relative_difference(reference, final) < 1e-5
