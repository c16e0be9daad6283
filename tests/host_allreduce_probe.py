"""Probe for tests/test_host_allreduce.py, run by 2 ranks: shared-memory sums equal gloo's, the
file is gone from /dev/shm once opened, a missing rank times out with its number.
Usage: host_allreduce_probe.py OUT_DIR
"""
import json
import os
import sys

import numpy as np

import dist_train  # noqa: F401  (before paddle, see compat.py)
import paddle

from dist_train import dist, host_allreduce


def main():
    out_dir = sys.argv[1]
    dist.init()
    rank = dist.get_rank()
    reducer = host_allreduce.open_host_allreduce()
    record = {"opened": reducer is not None,
              "file_left": reducer is not None and os.path.exists(reducer.path)}
    rng = np.random.default_rng(rank)
    mismatches = 0
    sizes = [1, 33, 257, 4096, host_allreduce.SLOT_BYTES // 8 + 1]  # the last one: gloo path
    for i in range(300):
        dtype = "float64" if i % 2 else "float32"
        values = rng.normal(size=sizes[i % len(sizes)]).astype(dtype)
        shared = reducer.sum_(paddle.to_tensor(values)).numpy()
        reference = dist.all_reduce_sum_tensor_(paddle.to_tensor(values)).numpy()
        mismatches += int(not np.array_equal(shared, reference) or shared.dtype != values.dtype)
    record["mismatches"] = mismatches
    record["gathered_equal"] = len({json.dumps(x) for x in dist.all_gather_object(
        reducer.sum_(paddle.to_tensor(rng.normal(size=7))).numpy().tolist())}) == 1
    host_allreduce.WAIT_TIMEOUT_S = 0.5
    if rank == 0:  # rank 1 never joins this call
        try:
            reducer.sum_(paddle.ones([3]))
            record["timeout_error"] = None
        except RuntimeError as e:
            record["timeout_error"] = str(e)
    dist.barrier("after-timeout")
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main()
