"""Probe for tests/test_train_accum.py: one optimizer step of a global batch of 8 through
engine.accumulate_gradients / engine.optimizer_step, recording the gradients after every
micro-step. BatchNorm is frozen (fixed statistics), so micro-batches of any size give the same
function and 2 ranks x 2 micro-steps x 2 clips must equal 1 rank x 8 clips.
With TRANSPORT=shm the gradients are averaged by host_allreduce.gradient_average (the CPU
trainer's path), with dp by DataParallel's own all-reduce.
Usage: accum_probe.py OUT_DIR ACCUM_STEPS [TRANSPORT]
"""
import os
import sys

import numpy as np
import paddle

from dist_train import dist
from dist_train.training import engine, optim
from dist_train.dist import host_allreduce
from dist_train.config import load_config
from dist_train.models import build_model, finetune


def main():
    out_dir, accum = sys.argv[1], int(sys.argv[2])
    transport = sys.argv[3] if len(sys.argv) > 3 else "dp"
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    paddle.seed(11)
    net = build_model("resnet-10", 4, width_mult=0.125)
    rng = np.random.default_rng(3)
    for layer in net.sublayers():  # non-trivial fixed statistics
        if isinstance(layer, finetune.BN_TYPES):
            layer._mean.set_value(rng.normal(0, 0.1, layer._mean.shape).astype(np.float32))
            layer._variance.set_value(rng.uniform(0.5, 2, layer._variance.shape).astype(np.float32))
    finetune.freeze_bn(net)
    cfg = load_config(None, ["train.lr=0.1", "optim.weight_decay=0.001"])
    opt = optim.build_optimizer(cfg, net)
    model = dist.wrap_model(net)
    amp = {"enabled": False, "level": "O1", "dtype": "float16"}
    scaler = engine.make_scaler(amp, 1024.0)
    x = rng.normal(0, 1, (8, 3, 4, 32, 32)).astype(np.float32)
    y = rng.integers(0, 4, 8).astype(np.int64)
    share = 8 // world
    part = slice(rank * share, (rank + 1) * share)
    params = optim.trainable_parameters(opt)
    record = {}
    average = host_allreduce.gradient_average(params) if transport == "shm" else None
    if transport == "shm" and world > 1:
        assert average is not None, "no shared-memory gradient average on 2 ranks of one host"

    def after_micro_step(i):
        record[f"grad{i}"] = np.concatenate([p.grad.numpy().ravel() for p in params])

    engine.accumulate_gradients(model, paddle.to_tensor(x[part]), paddle.to_tensor(y[part]), accum,
                                amp, scaler, after_micro_step, average)
    engine.optimizer_step(opt, scaler, params, list(net.named_parameters()), clip_norm=None,
                          nan_check=True, loss_sum=paddle.zeros([]), global_step=0)
    record["weights"] = np.concatenate([p.numpy().ravel() for p in params])
    np.savez(os.path.join(out_dir, f"rank{rank}_of{world}_accum{accum}_{transport}.npz"), **record)


if __name__ == "__main__":
    main()
