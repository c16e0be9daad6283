"""Run by tests/test_preempt.py: a trainer-like process with one DataLoader worker.

Writes <out>/worker_pid once data flows, <out>/flag when SIGTERM set the stop flag, and
<out>/after_flag with the number of batches received since. The dataset sleeps 30 s per item
while <out>/slow exists (and writes <out>/busy when it starts such an item), so a worker is busy
(not polling Paddle's own parent check) when the test kills its parent."""
import os
import sys
import time

import numpy as np
import paddle

from dist_train.training import preempt
from dist_train.data.workers import protect_worker, worker_init_fn


class PidDataset(paddle.io.Dataset):
    def __init__(self, out_dir):
        self.out_dir = out_dir

    def __len__(self):
        return 1_000_000

    def __getitem__(self, index):
        if os.path.exists(os.path.join(self.out_dir, "slow")):
            _write(os.path.join(self.out_dir, "busy"), str(os.getpid()))  # the test waits for it
            time.sleep(30)
        else:
            time.sleep(0.02)
        return np.array([os.getpid(), index], dtype=np.int64)


def watchdog_only(worker_id):
    protect_worker(use_prctl=False, poll_s=0.2)


def _write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main(out_dir, mode):
    preempt.install_handlers()
    init = {"prctl": worker_init_fn, "watchdog": watchdog_only, "none": None}[mode]
    loader = paddle.io.DataLoader(PidDataset(out_dir), batch_size=1, num_workers=1,
                                  worker_init_fn=init)
    after_flag = None
    for batch in loader:
        worker_pid = int(batch.numpy()[0, 0])
        if not os.path.exists(os.path.join(out_dir, "worker_pid")):
            _write(os.path.join(out_dir, "worker_pid"), str(worker_pid))
        if preempt.stop_requested():
            if after_flag is None:
                after_flag = 0
                _write(os.path.join(out_dir, "flag"), str(preempt.requested_signal()))
            after_flag += 1
            _write(os.path.join(out_dir, "after_flag"), str(after_flag))


if __name__ == "__main__":
    main(*sys.argv[1:3])
