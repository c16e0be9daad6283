"""Probe for tests/test_sync_bn.py: a tiny conv3d+BN net trained 3 SGD steps on a fixed batch of 8.

Run as one process (whole batch) or under the launcher with 2 ranks (4 samples each). The two
halves of the batch have different statistics, so per-rank BN differs from global BN.
Usage: sync_bn_probe.py OUT_DIR sync|plain
"""
import os
import sys

import numpy as np
import paddle
import paddle.nn as nn

from dist_train import dist
from dist_train.dist import sync_bn


def make_batch():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (8, 3, 4, 6, 6)).astype(np.float32)
    x[4:] = x[4:] * 3.0 + 2.0  # the second shard has another mean and scale
    labels = rng.integers(0, 5, 8).astype(np.int64)
    return x, labels


def make_net():
    paddle.seed(3)
    return nn.Sequential(
        nn.Conv3D(3, 6, 3, padding=1, bias_attr=False), nn.BatchNorm3D(6, momentum=0.9),
        nn.ReLU(), nn.Conv3D(6, 6, 3, stride=2, padding=1, bias_attr=False),
        nn.BatchNorm3D(6, momentum=0.9), nn.ReLU(), nn.AdaptiveAvgPool3D(1), nn.Flatten(),
        nn.Linear(6, 5))


def main():
    out_dir, mode = sys.argv[1], sys.argv[2]
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    net = make_net()
    if mode == "sync":
        net, kind = sync_bn.convert_sync_batchnorm(net, world, on_gpu=False)
    model = dist.wrap_model(net)
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=[p for p in net.parameters()
                                                              if not p.stop_gradient])
    x, labels = make_batch()
    share = 8 // world
    xs = paddle.to_tensor(x[rank * share:(rank + 1) * share])
    ys = paddle.to_tensor(labels[rank * share:(rank + 1) * share])
    record = {}
    for step in range(3):
        logits = model(xs)
        loss = nn.functional.cross_entropy(logits, ys)
        loss.backward()
        if step == 0:
            record["outputs"] = np.concatenate(dist.all_gather_array(logits.numpy()))
            record["loss"] = np.array(dist.all_reduce_mean(float(loss)))
            for name, p in net.named_parameters():
                if p.grad is not None:
                    record["grad/" + name] = p.grad.numpy()
        opt.step()
        opt.clear_grad()
    for name, value in net.state_dict().items():
        record["state/" + name] = value.numpy()
    record["sync_layers"] = np.array(sync_bn.count_sync_layers(net))
    np.savez(os.path.join(out_dir, f"rank{rank}_of{world}_{mode}.npz"), **record)


if __name__ == "__main__":
    main()
