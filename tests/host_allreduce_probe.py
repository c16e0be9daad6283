"""Probe for tests/test_host_allreduce.py, run by 2 ranks: shared-memory sums equal gloo's (also
arrays of several slots, and segment lists crossing chunk boundaries), the file is gone from
/dev/shm once opened, the gradient average equals gloo's and refuses a parameter only one rank
used, a missing rank times out with its number.
Usage: host_allreduce_probe.py OUT_DIR
"""
import json
import os
import sys
import time

import numpy as np

import dist_train  # noqa: F401  (before paddle, see compat.py)
import paddle

from dist_train import dist
from dist_train.dist import host_allreduce


def gradient_average(reducer, rank):
    """The average of a small net's gradients (different data per rank) against gloo's."""
    paddle.seed(0)
    net = paddle.nn.Sequential(paddle.nn.Linear(300, 200), paddle.nn.ReLU(), paddle.nn.Linear(200, 7))
    transposed = paddle.create_parameter([7, 200], "float32")  # used as .T: a strided gradient
    params = net.parameters() + [transposed]
    x = paddle.to_tensor(np.random.default_rng(10 + rank).normal(size=(5, 300)).astype("float32"))
    hidden = net[1](net[0](x))
    (net[2](hidden).square().sum() + (hidden @ transposed.T).square().sum()).backward()
    strided = hasattr(transposed.grad, "is_contiguous") and not transposed.grad.is_contiguous()
    expected = [dist.all_reduce_sum_tensor_(p.grad.clone()).numpy() / 2 for p in params]
    host_allreduce.GradientAverage(reducer, params)()
    result = {"average_equal": all(np.array_equal(p.grad.numpy(), e)
                                   for p, e in zip(params, expected)),
              "average_changed": not np.array_equal(expected[0], params[0].grad.numpy() * 0),
              "strided_gradient": strided}
    params = paddle.nn.Sequential(paddle.nn.Linear(3, 2), paddle.nn.Linear(2, 1)).parameters()
    if rank == 0:  # only rank 0 uses the last layer's bias
        (params[3] * 1.0).sum().backward()
    try:
        host_allreduce.GradientAverage(reducer, params, ["w1", "b1", "w2", "b2"])()
        result["unused_error"] = None
    except RuntimeError as e:
        result["unused_error"] = str(e)
    return result


def main():
    out_dir = sys.argv[1]
    dist.init()
    rank = dist.get_rank()
    host_allreduce.SLOTS_BUDGET_BYTES = 4 * host_allreduce.MIN_SLOT_BYTES  # small slots: chunking
    reducer = host_allreduce.open_host_allreduce()
    record = {"opened": reducer is not None,
              "file_left": reducer is not None and os.path.exists(reducer.path)}
    rng = np.random.default_rng(rank)
    mismatches = 0
    record["slot_bytes"] = reducer.slot_bytes
    sizes = [1, 33, 257, 4096, reducer.slot_bytes // 8 + 1, 3 * reducer.slot_bytes // 4 + 5]
    for i in range(120):
        dtype = "float64" if i % 2 else "float32"
        values = rng.normal(size=sizes[i % len(sizes)]).astype(dtype)
        shared = reducer.sum_array_(values.copy())
        reference = host_allreduce.backend_sum_(values.copy())
        mismatches += int(not np.array_equal(shared, reference) or shared.dtype != values.dtype)
    record["mismatches"] = mismatches
    # Segments (empty ones too) whose boundaries fall inside chunks sum like their concatenation.
    sizes = [0, 5, reducer.slot_bytes // 4 - 3, 0, 7, reducer.slot_bytes // 2, 1]
    segments = [rng.normal(size=n).astype("float32") for n in sizes]
    expected = reducer.sum_array_(np.concatenate(segments))
    reducer.sum_segments_(segments)
    record["segments_equal"] = bool(np.array_equal(np.concatenate(segments), expected))
    record["gathered_equal"] = len({json.dumps(x) for x in dist.all_gather_object(
        reducer.sum_array_(rng.normal(size=7)).tolist())}) == 1
    record.update(gradient_average(reducer, rank))
    # waited_s counts the time a rank waits for the others: rank 1 arrives 0.3 s late.
    dist.barrier("before-late-rank")
    waited = reducer.waited_s
    if rank == 1:
        time.sleep(0.3)
    reducer.sum_array_(np.ones(3))
    record["late_rank_wait_s"] = reducer.waited_s - waited
    host_allreduce.WAIT_TIMEOUT_S = 0.5
    if rank == 0:  # rank 1 never joins this call
        try:
            reducer.sum_array_(np.ones(3))
            record["timeout_error"] = None
        except RuntimeError as e:
            record["timeout_error"] = str(e)
    dist.barrier("after-timeout")
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main()
