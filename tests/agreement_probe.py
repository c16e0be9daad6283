"""Probe for tests/test_stop_agreement.py, run by 2 ranks: the per-step agreement's collectives
(counted at paddle.distributed.all_reduce, with the place of each tensor), and an input failure
of rank 1 raised on both ranks by the same agreement.
PROBE_DEFAULT_BACKEND=NCCL makes the default group look like a GPU job's (the agreement then
makes its own gloo group). Usage: agreement_probe.py OUT_DIR STEPS
"""
import json
import os
import sys

import dist_train  # noqa: F401  (before paddle, see compat.py)
import paddle
import paddle.distributed as pdist

from dist_train import dist
from dist_train.errors import InputError
from dist_train.training import preempt

calls = []
original = pdist.all_reduce


def counted_all_reduce(tensor, *args, **kwargs):
    calls.append(str(tensor.place))
    return original(tensor, *args, **kwargs)


def main(out_dir, steps):
    dist.init()
    if os.environ.get("PROBE_DEFAULT_BACKEND"):  # as on GPUs: the agreement builds a gloo group
        pdist.get_backend = lambda group=None: os.environ["PROBE_DEFAULT_BACKEND"]
    preempt.agree_to_stop()  # the first call opens the transport (shared memory or gloo group)
    pdist.all_reduce = counted_all_reduce
    stops = [preempt.agree_to_stop() for _ in range(steps)]
    per_step = list(calls)
    failure = InputError("/data/v_bad/img_00001.jpg: unreadable or empty image") \
        if dist.get_rank() == 1 else None
    try:
        preempt.agree_to_stop(failure)
        raised = None
    except InputError as error:
        raised = {"message": str(error), "on_every_rank": getattr(error, "on_every_rank", False)}
    with open(os.path.join(out_dir, f"rank{dist.get_rank()}.json"), "w") as f:
        json.dump({"stops": stops, "collectives": per_step, "raised": raised,
                   "device": paddle.device.get_device(),
                   "own_group": dist._state["cpu_group"] not in (None, "default")}, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
