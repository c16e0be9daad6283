"""Gradient accumulation: no_sync on non-final micro-steps, and 2 ranks x 2 micro-steps x 2
clips == 1 rank x 4 micro-steps x 2 clips == 1 rank x 8 clips, with BatchNorm frozen (its
batch statistics would differ with the micro-batch size). The same through train.py:
tests/test_train_finetune.py."""
import os

import numpy as np
import pytest
import paddle

from dist_train.training import engine
from helpers import launch, run_cli


pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


@pytest.mark.multiproc
# DataParallel's all-reduce; the trainer's shared-memory average with accumulation on 2 ranks:
# tests/test_train_finetune.py (train.py, accum_steps 2, BN frozen)
@pytest.mark.parametrize("transport", ["dp"])
def test_accumulation_with_frozen_bn_on_two_ranks_equals_one_batch(tmp_path, transport):
    out = str(tmp_path)
    run_cli(["tests/accum_probe.py", out, "1"])
    run_cli(["tests/accum_probe.py", out, "4"])
    launch(["tests/accum_probe.py", out, "2", transport], str(tmp_path / "log"))
    load = lambda name: np.load(os.path.join(out, name))  # noqa: E731
    one, four = load("rank0_of1_accum1_dp.npz"), load("rank0_of1_accum4_dp.npz")
    r0 = load(f"rank0_of2_accum2_{transport}.npz")
    r1 = load(f"rank1_of2_accum2_{transport}.npz")
    scale = np.abs(one["grad0"]).max()
    assert scale > 1e-3
    # after the non-final micro-step each rank holds only its own (unsynchronised) gradient
    assert np.abs(r0["grad0"] - r1["grad0"]).max() > 1e-2 * scale
    # after the final one the average made them equal (bitwise: every rank sums in the same
    # order), and equal to the whole batch's
    np.testing.assert_array_equal(r0["grad1"], r1["grad1"])
    np.testing.assert_allclose(r0["grad1"], one["grad0"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(four["grad3"], one["grad0"], rtol=1e-5, atol=1e-6)
    for run in (r0, r1, four):
        np.testing.assert_allclose(run["weights"], one["weights"], rtol=1e-5, atol=1e-6)
    assert np.abs(one["weights"]).max() > 0


def test_nan_check_names_the_first_bad_parameter():
    net = paddle.nn.Sequential(paddle.nn.Linear(2, 3), paddle.nn.Linear(3, 1))
    net(paddle.ones([1, 2])).sum().backward()
    named = list(net.named_parameters())
    assert engine.first_nonfinite_gradient(named) is None
    grad = named[1][1].grad.numpy()
    grad[0] = np.nan
    named[1][1].grad.set_value(grad)
    assert engine.first_nonfinite_gradient(named) == named[1][0] == "0.bias"
