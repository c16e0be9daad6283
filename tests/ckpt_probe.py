"""Run under paddle.distributed.launch by tests/test_checkpoint_dist.py: every rank calls the
checkpoint collectives; writes what it saw to <out>/rank<r>.json."""
import json
import os
import random
import sys
import time

import numpy as np
import paddle

from ckpt_models import make_training, train_state, train_step
from dist_train import checkpoint as ck
from dist_train import dist

RANK0_WRITE_DELAY_S = 2.0


def _draws():
    return [random.random(), np.random.rand(3).tolist(), paddle.rand([3]).numpy().tolist()]


def main(out_dir, run_dir, one_rank_ckpt):
    paddle.set_device("cpu")
    dist.init()
    rank = dist.get_rank()
    model, opt, sched, scaler = make_training(seed=0)  # identical on both ranks
    train_step(model, opt, sched, scaler, 0)
    random.seed(10 + rank), np.random.seed(20 + rank), paddle.seed(30 + rank)
    result = {"rank": rank, "world": dist.get_world_size()}
    if rank == 0:  # a slow writer: rank 1 must wait for the files at the barrier
        write = ck._write_checkpoint_dir

        def slow_write(*args, **kwargs):
            time.sleep(RANK0_WRITE_DELAY_S)
            return write(*args, **kwargs)

        ck._write_checkpoint_dir = slow_write
    start = time.monotonic()
    path = ck.save_checkpoint(run_dir, "step_000001", model=model, optimizer=opt, scaler=scaler,
                              train_state=train_state(1), cfg=None, keep_last=2)
    result["save_s"] = time.monotonic() - start
    result["path"] = path
    result["complete_on_return"] = ck.checkpoint_problem(path, verify_sha256=True) is None
    result["draws_after_save"] = _draws()
    result["resolved"] = ck.resolve_resume(run_dir, "auto")

    # a save that fails on rank 0 fails on every rank, and latest stays
    if rank == 0:
        os.environ[ck.FAULT_ENV] = "before_rename"
    try:
        ck.save_checkpoint(run_dir, "step_000002", model=model, optimizer=opt, scaler=scaler,
                           train_state=train_state(2), cfg=None, keep_last=2)
        result["fault"] = None
    except Exception as e:  # recorded for the test to check type and message
        result["fault"] = [type(e).__name__, str(e)]
    os.environ.pop(ck.FAULT_ENV, None)

    # the reverse direction: a 1-rank checkpoint resumed by 2 ranks
    model2, opt2, sched2, scaler2 = make_training(seed=50 + rank)
    result["one_rank_state"] = ck.load_checkpoint(one_rank_ckpt, model=model2, optimizer=opt2,
                                                  scaler=scaler2)
    result["one_rank_fc"] = model2.fc.weight.numpy().tolist()
    result["one_rank_lr"] = sched2.last_lr
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
