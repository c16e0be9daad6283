"""Probe for tests/test_cpu_memory.py: minor page faults per step of an allocation pattern like
a training step's (8 x 4 MB alive, then all freed), with or without keep_freed_memory.
Usage: cpu_memory_probe.py tuned|default -> prints one JSON line."""
import json
import resource
import sys

import numpy as np


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def step():
    arrays = [np.ones(1 << 20, np.float32) for _ in range(8)]
    return sum(float(a[0]) for a in arrays)


def main():
    message = None
    if sys.argv[1] == "tuned":
        from dist_train.cpu_memory import keep_freed_memory
        message = keep_freed_memory()
    for _ in range(3):
        step()
    before = faults()
    for _ in range(10):
        step()
    print(json.dumps({"message": message, "faults_per_step": (faults() - before) / 10}))


if __name__ == "__main__":
    main()
