"""The shared-memory loader's close() ends workers that are still busy: they ignore SIGTERM
(data/workers.py), so close() must not rely on terminate(). Found by a resume test that stopped
at train.max_steps in the middle of an epoch on a loaded machine and then hung for 300 s."""
import pytest

from helpers import run_cli

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)

PROBE = """
import time
import numpy as np
from dist_train.data.loader import ShmBatchLoader

class Slow:
    clip_layout = ((3, 2, 4, 4), np.uint8)
    def __len__(self):
        return 64
    def __getitem__(self, key):
        time.sleep(0 if key == 0 else 20)  # every batch after the first keeps its worker busy
        return np.zeros((3, 2, 4, 4), np.uint8), key

loader = ShmBatchLoader(Slow(), [[i] for i in range(8)], num_workers=1, prefetch_batches=2)
for batch in loader:
    break  # abandoned mid-epoch, like a stop at train.max_steps: the worker is inside an item
start = time.monotonic()
loader.close()
print("closed after", round(time.monotonic() - start, 1), "s")
"""


def test_close_ends_a_busy_worker_that_ignores_sigterm():
    proc = run_cli(["-c", PROBE], timeout=60)  # hangs (then fails here) if close() waits forever
    seconds = float(proc.stdout.split("closed after")[1].split()[0])
    assert seconds < 15, proc.stdout  # its 5 s grace, then SIGKILL; not the 20 s item
