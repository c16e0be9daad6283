"""train.compile (paddle.jit.to_static on the training model) builds a static program and
trains exactly like eager.

Evidence that a program was built and ran (Paddle 3.3.1 and 2.6.2 alike): ``full_graph=False``
goes through SOT, which keeps every subgraph it compiled in
``paddle.jit.sot.symbolic.compile_cache.CompileSIRCache`` as a ``FallbackWrapper``; a wrapper
that ran holds its ``partial_program``, and its ``concrete_program.main_program`` lists the ops
(PIR ``pd_op.conv3d`` on 3.3.1, legacy ``conv3d`` on 2.6.2). SOT runs a frame eagerly, without
saying so, when it cannot (or will not) compile it: then no wrapper holds the convolutions.
"""
import json
import os

import numpy as np
import paddle
import pytest

from helpers import run_cli
from train_fixtures import final_weights, make_dataset, write_config


def _train_losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["loss"] for r in rows if r["kind"] == "train"], [r["val_loss"] for r in rows
                                                               if "val_loss" in r]


def static_programs_that_ran():
    from paddle.jit.sot.symbolic.compile_cache import CompileSIRCache

    return [w for w in CompileSIRCache().cache.values() if w.partial_program is not None]


def op_names(wrapper):
    ops = wrapper.concrete_program.main_program.global_block().ops
    return [op.name() if callable(getattr(op, "name", None)) else op.type for op in ops]


@pytest.mark.paddle2
def test_compile_model_runs_the_whole_network_as_a_static_program():
    from dist_train.models import Preprocess, build_model
    from dist_train.models.from_config import EvalModel
    from dist_train.training.loop import compile_model
    from paddle.jit.sot.symbolic.compile_cache import CompileSIRCache

    CompileSIRCache().cache.clear()  # (a process-wide cache)
    clips = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 32, 32), dtype=np.uint8)
    results = []
    for compiled in (False, True):
        paddle.seed(1)
        net = build_model("resnet-10", 4, width_mult=0.125)
        model = EvalModel(Preprocess([110.0] * 3, [60.0] * 3, "NCDHW"), net)
        if compiled:
            model = compile_model(model)
        model.train()
        logits = model(paddle.to_tensor(clips))
        logits.sum().backward()
        results.append((logits.numpy(), net.conv1.weight.grad.numpy(), net.fc.weight.grad.numpy()))
    ran = static_programs_that_ran()
    assert ran, "paddle.jit.to_static built no static program (ran eagerly)"
    convs = sum(name.endswith("conv3d") for w in ran for name in op_names(w))
    assert convs == sum(isinstance(layer, paddle.nn.Conv3D) for layer in net.sublayers()) == 12
    for eager, static in zip(*results):
        np.testing.assert_allclose(static, eager, rtol=1e-5, atol=1e-6)


def test_compiled_training_matches_eager(tmp_path):
    """(Paddle 3.3.1 only: on 2.6.2 the test above shows the static program and its equality;
    this run adds the trainer's wiring, which does not depend on the Paddle version.)"""
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
