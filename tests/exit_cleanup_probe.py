"""Probe for tests/test_data_multiproc.py: a process that exits while protected stock-DataLoader
workers are alive. register_parent_cleanup SIGKILLs them at exit; Paddle's SIGCHLD handler must
not turn those kills into a "DataLoader process ... killed by signal" error on stderr.
Usage: exit_cleanup_probe.py
"""
import atexit
import time

import numpy as np

import dist_train  # noqa: F401  (before paddle, see compat.py)
import paddle

from dist_train.data import workers


class Zeros(paddle.io.Dataset):
    def __len__(self):
        return 100

    def __getitem__(self, index):
        return np.zeros(3, np.float32)


def main():
    # Runs after the cleanup (atexit is last in, first out): Python code that a pending SIGCHLD
    # handler would interrupt, as pytest's own exit code does.
    atexit.register(lambda: [time.sleep(0.01) for _ in range(30)])
    workers.register_parent_cleanup()
    loader = paddle.io.DataLoader(Zeros(), batch_size=2, num_workers=2, persistent_workers=True,
                                  worker_init_fn=workers.worker_init_fn)
    batches = iter(loader)
    next(batches)
    print("exiting with workers alive", flush=True)
    return batches  # kept alive until exit


if __name__ == "__main__":
    alive = main()
