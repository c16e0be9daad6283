"""Training-speed benchmark on CPU with the demo config (configs/demo.yaml).

1. Trainer runs (dist_train/train.py, the real CLI) on a generated synthetic dataset:
   ``clips_per_s_1proc`` and ``clips_per_s_2proc`` (0 loader workers, OMP_NUM_THREADS=1 per
   process, 2 processes through paddle.distributed.launch), ``data_wait_fraction`` (1 process,
   1 loader worker, the demo's data.num_workers). Numbers come from the trainer's own
   metrics.jsonl (the first logged window is warm-up and dropped). 120 videos per class give
   22 steps per epoch, so per-epoch work does not dominate; 1- and 2-process runs alternate
   (``--rounds``): ``speedup_2proc`` is the median over rounds of the 2- to 1-process ratio
   (``speedup_2proc_of_medians``: the ratio of the medians), with every window's spread, the
   load average, and the fastest round of each (``*_best_round``, ``speedup_2proc_best_rounds``).
   Each round also runs two independent 1-process trainers at once, each on one rank's share
   of the batch (``clips_per_s_2independent``): what the machine gives two processes with no
   communication and no waiting; ``two_process_ceiling_trainer`` is that over one process, and
   ``efficiency_2proc`` the 2-process trainer's share of it (median rounds).
   After each round, benchmarks/bench_machine.py's CPU probe (``--machine-probe-s``) measures how
   evenly the hypervisor served the CPUs (``machine_lockstep_efficiency_per_round``: 1.0 when
   steady; ranks that wait for each other move at the slower CPU's pace).
   ``clips_per_s_2proc_gloo`` is the 2-process run with the shared-memory transport
   (sync BN sums, gradient average) switched off (DIST_TRAIN_SHM_ALLREDUCE=0): all over gloo;
   ``clips_per_s_2proc_plain_bn`` the 2-process run without sync BN (model.sync_bn=false).
2. Step micro-benchmarks of the demo network (benchmarks/bench_steps.py), a child process per
   setting (threads per process 1/2, layout NCDHW/NDHWC, eager vs paddle.jit.to_static, glibc's
   default malloc vs the trainer's train.cpu_keep_freed_memory), and which CPU kernels ran:
   kernel time per op from paddle.profiler, plus the count of oneDNN primitive executions
   (ONEDNN_VERBOSE=1; 0 means plain Paddle CPU kernels). Settings alternate over rounds.
3. A 2-rank step micro-benchmark (fixed input, one launched job, bench_steps.dp_bench): one process
   alone on the whole batch, two processes on half each without communication (the machine's
   own 2-process ceiling), and DataParallel with plain BN (gradients over gloo / shared memory)
   and sync BN (all over shared memory / all over gloo), interleaved so machine load hits all
   of them alike.

Ends by printing ONE JSON object on the last line.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

from bench_machine import cpu_rates
from bench_steps import PY, REPO, child_env, dp_child, run, step_child


def make_demo_data(root, videos_per_class):
    syn = os.path.join(root, "syn")
    run([PY, os.path.join(REPO, "data_tools", "make_synthetic.py"), "--out", syn,
         "--videos-per-class", str(videos_per_class)])
    run([PY, os.path.join(REPO, "data_tools", "extract_frames.py"), "--src",
         os.path.join(syn, "UCF-101"), "--dst", os.path.join(root, "frames"), "--workers", "2"])
    run([PY, os.path.join(REPO, "data_tools", "build_lists.py"), "--frames",
         os.path.join(root, "frames"), "--splits", os.path.join(syn, "ucfTrainTestlist"),
         "--out", os.path.join(root, "lists")])
    lists = sorted(os.listdir(os.path.join(root, "lists")))
    train = [n for n in lists if "train" in n][0]
    val = [n for n in lists if "val" in n or "test" in n][0]
    return os.path.join(root, "lists", train), os.path.join(root, "lists", val)


def train_overrides(root, train_list, val_list, run_name, workers, steps, extra=()):
    return ["-o", f"run.dir={os.path.join(root, run_name)}", "-o",
            f"data.root={os.path.join(root, 'frames')}", "-o", f"data.train_list={train_list}",
            "-o", f"data.val_list={val_list}", "-o", f"data.num_workers={workers}",
            "-o", f"train.max_steps={steps}", "-o", "val.every_epochs=0", "-o",
            "ckpt.every_epochs=0", "-o", "log.every_steps=5", "-o", "log.visualdl=false",
            "-o", "export.at_end=false", "-o", "train.epochs=1000"] + list(extra)


def train_rows(root, run_name):
    """The logged training windows of a run, after the first (warm-up)."""
    with open(os.path.join(root, run_name, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r.get("kind") == "train"][1:]


def trainer_rate(root, run_name, until=None):
    """(clips/s, data-wait fraction, per-window clips/s, sync-wait fraction or None) over the
    logged windows after the first (and, with ``until``, written no later than that time)."""
    rows = [r for r in train_rows(root, run_name) if until is None or r["time"] <= until]
    if not rows:
        raise RuntimeError(f"{run_name}: no training rows after warm-up; raise --steps")
    steps = [r["step_time"] for r in rows]
    clips = sum(r["clips_per_s"] * r["step_time"] for r in rows) / sum(steps)
    wait = sum(r["data_wait"] * r["step_time"] for r in rows) / sum(steps)
    sync = (sum(r["sync_wait"] * r["step_time"] for r in rows) / sum(steps)
            if all("sync_wait" in r for r in rows) else None)
    return clips, wait, [r["clips_per_s"] for r in rows], sync


def spread(values):
    return {"min": round(min(values), 2), "median": round(float(np.median(values)), 2),
            "max": round(max(values), 2), "n": len(values)}


def trainer_args(root, lists, run_name, workers, steps, extra=()):
    """dist_train/train.py and its arguments for a run of the demo config (without python)."""
    return [os.path.join(REPO, "dist_train", "train.py"), "-c",
            os.path.join(REPO, "configs", "demo.yaml")] + train_overrides(
                root, *lists, run_name, workers, steps, extra)


def train_cli(root, lists, run_name, workers, steps, nproc=1, threads=1, extra=(), env_extra=None):
    args = trainer_args(root, lists, run_name, workers, steps, extra)
    env = dict({"OMP_NUM_THREADS": str(threads)}, **(env_extra or {}))
    if nproc == 1:
        run([PY] + args, env, cwd=root)
    else:
        run([PY, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir",
             os.path.join(root, run_name + "_logs")] + args, env, cwd=root)
    return trainer_rate(root, run_name) + (os.getloadavg()[0],)


def train_cli_pair(root, lists, run_name, steps):
    """Two independent 1-process trainers at once, each on one rank's share of the demo batch:
    what two processes get from this machine with no communication and no waiting for each
    other. Returns (their clips/s summed, per-trainer clips/s)."""
    with open(os.path.join(REPO, "configs", "demo.yaml"), encoding="utf-8") as f:
        share = yaml.safe_load(f)["train"]["batch_size"] // 2
    procs = []
    for i in range(2):
        args = [PY] + trainer_args(root, lists, f"{run_name}_{i}", 0, steps,
                                   ["-o", f"train.batch_size={share}"])
        output = open(os.path.join(root, f"{run_name}_{i}.out"), "w+")  # no pipe to fill up
        procs.append((subprocess.Popen(args, env=child_env({"OMP_NUM_THREADS": "1"}), cwd=root,
                                       stdout=output, stderr=subprocess.STDOUT), output))
    for proc, output in procs:
        proc.wait(timeout=600)
        output.seek(0)
        text = output.read()
        output.close()
        if proc.returncode != 0:
            raise RuntimeError(f"independent trainer failed ({proc.returncode}):\n{text[-3000:]}")
    # Only windows logged while both ran: the one that finishes later runs alone at the end.
    both_ran_until = min(train_rows(root, f"{run_name}_{i}")[-1]["time"] for i in range(2))
    rates = [trainer_rate(root, f"{run_name}_{i}", until=both_ran_until)[0] for i in range(2)]
    return sum(rates), rates


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="end with one JSON line (default)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per trainer run")
    parser.add_argument("--videos-per-class", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternations of the 1- and 2-process trainer runs (median reported)")
    parser.add_argument("--machine-probe-s", type=float, default=8.0,
                        help="seconds of benchmarks/bench_machine.py's CPU probe after each round")
    parser.add_argument("--skip-trainer", action="store_true", help="step benchmarks only")
    args = parser.parse_args(argv)
    result = {"config": "configs/demo.yaml", "cpus": os.cpu_count(),
              "load_avg_1m_start": os.getloadavg()[0]}
    start = time.time()
    if not args.skip_trainer:
        with tempfile.TemporaryDirectory(prefix="bench_train_") as root:
            lists = make_demo_data(root, args.videos_per_class)
            result["data_setup_s"] = round(time.time() - start, 1)
            runs = {"1proc": [], "2proc": [], "2proc_gloo": [], "2proc_plain_bn": []}
            machine, independent = [], []
            for i in range(args.rounds):  # alternate: load changes hit every variant alike
                runs["1proc"].append(train_cli(root, lists, f"p1_{i}", 0, args.steps))
                independent.append(train_cli_pair(root, lists, f"i2_{i}", args.steps))
                runs["2proc"].append(train_cli(root, lists, f"p2_{i}", 0, args.steps, nproc=2))
                runs["2proc_gloo"].append(train_cli(root, lists, f"g2_{i}", 0, args.steps, nproc=2,
                                                    env_extra={"DIST_TRAIN_SHM_ALLREDUCE": "0"}))
                runs["2proc_plain_bn"].append(train_cli(root, lists, f"b2_{i}", 0, args.steps,
                                                        nproc=2, extra=["-o", "model.sync_bn=false"]))
                machine.append(cpu_rates(args.machine_probe_s))
            rate = {k: float(np.median([r[0] for r in v])) for k, v in runs.items()}
            _, wait, windows, _, load = train_cli(root, lists, "w1", 1, args.steps)
            # The runs of a round are adjacent in time: their ratio cancels the machine's slow
            # drifts, which the ratio of two medians does not. speedup_2proc is the median round.
            per_round = [two[0] / one[0] for one, two in zip(runs["1proc"], runs["2proc"])]
            ceiling = [pair[0] / one[0] for one, pair in zip(runs["1proc"], independent)]
            result.update(clips_per_s_1proc=rate["1proc"], clips_per_s_2proc=rate["2proc"],
                          speedup_2proc=float(np.median(per_round)),
                          speedup_2proc_of_medians=rate["2proc"] / rate["1proc"],
                          clips_per_s_2proc_gloo=rate["2proc_gloo"],
                          clips_per_s_2proc_plain_bn=rate["2proc_plain_bn"], data_wait_fraction=wait)
            result["speedup_2proc_per_round"] = [round(r, 3) for r in per_round]
            # Two independent trainers (no communication, no waiting) in the same round: the
            # machine's own 2-process ceiling, and the share of it the 2-process trainer reaches.
            result["clips_per_s_2independent"] = float(np.median([pair[0] for pair in independent]))
            result["two_process_ceiling_trainer_per_round"] = [round(c, 3) for c in ceiling]
            result["two_process_ceiling_trainer"] = float(np.median(ceiling))
            result["efficiency_2proc_per_round"] = [round(two[0] / pair[0], 3) for two, pair in
                                                    zip(runs["2proc"], independent)]
            result["efficiency_2proc"] = float(np.median(result["efficiency_2proc_per_round"]))
            # Noise on a shared VM only slows runs down (and a 2-process job more, see README):
            # the fastest round of each is what the code does undisturbed (as timeit's min).
            best = {k: max(r[0] for r in v) for k, v in runs.items()}
            result.update(clips_per_s_1proc_best_round=best["1proc"],
                          clips_per_s_2proc_best_round=best["2proc"],
                          speedup_2proc_best_rounds=best["2proc"] / best["1proc"])
            # How unevenly the hypervisor served the CPUs in each round (benchmarks/bench_machine.py):
            # ranks in lockstep move at the slower CPU's pace, one process at its own CPU's.
            result["machine_lockstep_efficiency_per_round"] = [m["lockstep_efficiency"]
                                                               for m in machine]
            result["machine_slow_window_fraction_per_round"] = [
                max(m["slow_window_fraction"].values()) for m in machine]
            # Share of the ranks' time spent waiting for each other (trainer's sync_wait metric):
            # the 2-process runs lose this to uneven ranks, which one process never does.
            result["sync_wait_fraction_2proc_per_round"] = [None if r[3] is None else round(r[3], 4)
                                                            for r in runs["2proc"]]
            result["trainer_runs"] = {
                k: {"clips_per_s": [round(r[0], 2) for r in v],
                    "windows_clips_per_s": spread([w for r in v for w in r[2]]),
                    "sync_wait_fraction": [None if r[3] is None else round(r[3], 4) for r in v],
                    "load_avg_1m_after": [round(r[4], 2) for r in v]} for k, v in runs.items()}
            result["trainer_runs"]["2independent"] = {
                "clips_per_s": [round(pair[0], 2) for pair in independent],
                "each_clips_per_s": [[round(r, 2) for r in pair[1]] for pair in independent]}
            result["trainer_runs"]["1proc_1worker"] = {"data_wait_fraction": round(wait, 4),
                                                       "windows_clips_per_s": spread(windows),
                                                       "load_avg_1m_after": round(load, 2)}
            result["trainer_steps_per_run"] = args.steps
            result["train_videos"] = sum(1 for _ in open(lists[0]))
    with tempfile.TemporaryDirectory(prefix="bench_dp_") as logs:
        result["step_2rank_ms"] = dp_child(6, logs)
        result["step_2rank_ms"]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    result["two_process_ceiling"] = result["step_2rank_ms"]["two_process_ceiling"]
    result["step_speedup_2rank_sync_bn"] = result["step_2rank_ms"]["speedup_sync_bn_shm"]
    settings = {"eager_NCDHW_1thread": ("NCDHW", False, 1, True),
                "eager_NCDHW_1thread_malloc_default": ("NCDHW", False, 1, False),
                "eager_NCDHW_2threads": ("NCDHW", False, 2, True),
                "eager_NDHWC_1thread": ("NDHWC", False, 1, True),
                "static_NCDHW_1thread": ("NCDHW", True, 1, True)}
    rates, first_losses, failures = {name: [] for name in settings}, {}, {}
    for _ in range(3):  # rounds of every setting, interleaved
        for name, (layout, compiled, threads, keep_freed) in settings.items():
            if name in failures:
                continue
            try:
                child = step_child(layout, compiled, threads, 5, keep_freed_memory=keep_freed)
                rates[name].append(child["clips_per_s"])
                first_losses[name] = child["loss0"]
            except RuntimeError as error:  # report (e.g. to_static unsupported), keep going
                failures[name] = f"failed: {str(error).strip().splitlines()[-1][:200]}"
    result["step_clips_per_s"] = {name: failures.get(name) or round(float(np.median(v)), 2)
                                  for name, v in rates.items()}
    result["step_clips_per_s_all_rounds"] = {name: [round(r, 2) for r in v] for name, v in rates.items()}
    result["step_load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    # Same seed and batch: every setting must give the same first loss (correctness check).
    reference = first_losses.get("eager_NCDHW_1thread")
    result["step_first_loss"] = first_losses
    result["step_first_loss_max_abs_diff"] = max(
        (abs(v - reference) for v in first_losses.values()), default=None) if reference else None
    kernels = step_child("NCDHW", False, 1, 1, profile=True, onednn_verbose=True)
    result["cpu_kernels"] = {"kernel_ms_per_step": kernels["kernel_ms"],
                             "kernel_total_ms": kernels["kernel_total_ms"],
                             "onednn_primitive_execs": kernels["onednn_primitive_execs"]}
    result["total_s"] = round(time.time() - start, 1)
    result["load_avg_1m_end"] = os.getloadavg()[0]
    result = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
