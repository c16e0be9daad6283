"""Is this machine's CPU time steady? A probe for the noise in the 2-process benchmarks.

Every CPU of this process's affinity set runs the same fixed numpy work (a 256 KB loop that
stays in L2), pinned to it, all at the same time, for ``--seconds``; each counts the work units
it finishes in every ``--window`` of a shared clock. A CPU whose host core is busy with another
guest (the hypervisor does not report it as steal time here) finishes fewer units.

- ``cpu_rates_units_per_s``: per CPU, min / median / max over the windows;
- ``slow_window_fraction``: per CPU, the fraction of windows below 75% of the undisturbed rate
  (the 90th percentile over every CPU's windows);
- ``lockstep_efficiency``: sum over windows of the slowest CPU's rate / sum of the mean rate,
  over every CPU of the affinity set, all loaded at once (on a larger host, pin the probe to
  the CPUs the ranks use: ``taskset -c 0,1 python benchmarks/bench_machine.py``). Ranks that wait
  for each other every step (data parallelism) move at the slowest CPU's pace, one process at
  its own CPU's: with steady CPUs this is 1.0, and a 2-process speed-up over one process is
  bounded by about ``lockstep_efficiency x`` the speed-up of two processes that never wait
  for each other (bench_train's ``two_process_ceiling*``).

    python benchmarks/bench_machine.py --seconds 20      # one JSON line
"""
import argparse
import json
import multiprocessing
import os
import sys
import time

import numpy as np

SLOW_BELOW = 0.75  # of the undisturbed rate


def _cpu_worker(cpu, start_at, seconds, window_s, results):
    os.sched_setaffinity(0, {cpu})
    a = np.ones(1 << 15, np.float32)
    b = np.full(1 << 15, 1e-3, np.float32)
    counts = [0] * int(round(seconds / window_s))
    while time.monotonic() < start_at:  # every CPU starts on the same tick of the shared clock
        time.sleep(0.001)
    while True:
        for _ in range(20):
            np.multiply(a, 0.999, out=a)
            np.add(a, b, out=a)
        window = int((time.monotonic() - start_at) / window_s)
        if window >= len(counts):
            break
        counts[window] += 1
    results.put((cpu, counts))


def cpu_rates(seconds=6.0, window_s=0.25):
    """Run the probe on every CPU at once; returns the summary described in the module doc."""
    cpus = sorted(os.sched_getaffinity(0))
    ctx = multiprocessing.get_context("fork")  # numpy only in the parent: fork is safe here
    results = ctx.Queue()
    start_at = time.monotonic() + 0.5
    procs = [ctx.Process(target=_cpu_worker, args=(cpu, start_at, seconds, window_s, results))
             for cpu in cpus]
    for p in procs:
        p.start()
    counts = dict(results.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"CPU probe process {p.pid} ended with {p.exitcode}")
    rates = np.array([counts[c] for c in cpus], np.float64) / window_s  # [cpu, window]
    return dict({"seconds": seconds, "window_s": window_s}, **summarise(cpus, rates))


def summarise(cpus, rates):
    """The probe's figures from ``rates`` [cpu, window] (work units per second)."""
    undisturbed = float(np.percentile(rates, 90))
    return {"cpus": list(cpus), "undisturbed_units_per_s": round(undisturbed, 1),
            "cpu_rates_units_per_s": {str(c): {"min": round(float(r.min()), 1),
                                               "median": round(float(np.median(r)), 1),
                                               "max": round(float(r.max()), 1)}
                                      for c, r in zip(cpus, rates)},
            "slow_window_fraction": {str(c): round(float(np.mean(r < SLOW_BELOW * undisturbed)), 3)
                                     for c, r in zip(cpus, rates)},
            "lockstep_efficiency": round(float(rates.min(axis=0).sum() / rates.mean(axis=0).sum()), 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--window", type=float, default=0.25, help="seconds per counted window")
    args = parser.parse_args(argv)
    if args.seconds < args.window or args.window <= 0:
        parser.error("--seconds must be at least one --window, and --window > 0")
    print(json.dumps(cpu_rates(args.seconds, args.window)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
