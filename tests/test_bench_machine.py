"""benchmarks/bench_machine.py: the CPU-steadiness probe behind the 2-process benchmark figures."""
import os
import sys

import numpy as np
import pytest

from helpers import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import bench_machine  # noqa: E402


def test_lockstep_efficiency_is_the_slowest_cpus_share():
    # CPU 1 runs at half speed in half of the windows: lockstep ranks lose those halves.
    rates = np.array([[100.0] * 4, [100.0, 50.0, 100.0, 50.0]])
    summary = bench_machine.summarise([0, 1], rates)
    assert summary["lockstep_efficiency"] == pytest.approx(300 / 350, abs=1e-3)
    assert summary["slow_window_fraction"] == {"0": 0.0, "1": 0.5}
    assert summary["cpu_rates_units_per_s"]["1"] == {"min": 50.0, "median": 75.0, "max": 100.0}
    steady = bench_machine.summarise([0, 1], np.full((2, 4), 80.0))
    assert steady["lockstep_efficiency"] == 1.0 and steady["slow_window_fraction"]["0"] == 0.0


def test_probe_runs_on_every_cpu_of_the_affinity_set():
    result = bench_machine.cpu_rates(seconds=1.0, window_s=0.25)
    assert result["cpus"] == sorted(os.sched_getaffinity(0))
    for rates in result["cpu_rates_units_per_s"].values():  # (a slow fork may miss a window)
        assert 0 <= rates["min"] <= rates["median"] <= rates["max"] and rates["median"] > 0
    assert 0 < result["lockstep_efficiency"] <= 1.0
