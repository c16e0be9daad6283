"""Run under paddle.distributed.launch by tests/test_dist.py: exercises dist_train.dist and
writes what each rank saw to <out>/rank<r>.json."""
import json
import os
import sys
import time

import numpy as np
import paddle

from dist_train import dist


def main(out_dir: str) -> None:
    paddle.set_device("cpu")
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    result = {"rank": rank, "world": world, "local_rank": dist.get_local_rank(),
              "main": dist.is_main_process(),
              "sum_scalar": dist.all_reduce_sum(rank + 1),
              "mean_scalar": dist.all_reduce_mean(float(rank)),
              "sum_array": dist.all_reduce_sum(np.array([[1.0, rank], [2.0, 10.0 * rank]])).tolist(),
              "max_scalar": dist.all_reduce_max(rank * 3.0),
              "gathered": dist.all_gather_object({"rank": rank, "payload": "x" * (1000 * rank + 3)}),
              "broadcast": dist.broadcast_object({"from": rank, "list": list(range(rank + 2))})}
    if rank == 1:
        time.sleep(1.5)
    start = time.monotonic()
    dist.barrier("slow_rank", timeout_s=30)
    result["barrier_wait_s"] = time.monotonic() - start
    if rank == 1:  # never arrives at the next barrier; stays alive past rank 0's timeout
        time.sleep(3.5)
        result["absent"] = True
        result["back_at"] = time.time()  # wall clock: rank 0's timeout must come before this
    else:
        start = time.monotonic()
        try:
            dist.barrier("never", timeout_s=2)
            result["timeout_error"] = None
        except dist.BarrierTimeout as e:
            result["timeout_error"] = str(e)
        result["timeout_wait_s"] = time.monotonic() - start
        result["timeout_at"] = time.time()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
