"""Benchmark results for the README: collect bench outputs into a committed JSON, print markdown.

    python benchmarks/bench_data.py --json > /tmp/data.txt
    python benchmarks/bench_train.py --json > /tmp/train.txt
    python benchmarks/bench_report.py collect benchmarks/cpu_2core.json --data /tmp/data.txt \\
        --train /tmp/train.txt --note "quiet machine"
    python benchmarks/bench_report.py markdown benchmarks/cpu_2core.json   # table for the README

``collect`` takes the LAST line of each output (the one JSON object) and writes the file
atomically. The README table is generated from that file only.
"""
import argparse
import json
import os
import sys

# (key, label, target text or "") in README order.
DATA_ROWS = [
    ("jpeg_decode_bound_clips_per_s", "JPEG decode only (bound)", ""),
    ("jpeg_clips_per_s", "JPEG frames -> clip (multi-scale crop + resize + flip)",
     ">= 80% of the bound"),
    ("jpeg_fraction_of_bound", "JPEG clips / decode bound", ">= 0.8"),
    ("jpeg_decode_into_buffers_clips_per_s", "JPEG decode only, into reused buffers (as the reader does)",
     ""),
    ("jpeg_fraction_of_decode_into_buffers", "JPEG clips / decode into reused buffers", ""),
    ("video_clips_per_s", "raw video (XviD) -> clip", ""),
    ("packed_clips_per_s", "packed store -> clip (random 112 crop + flip, no resize)", ">= 3,000"),
    ("packed_multiscale_clips_per_s", "packed store -> clip (paper's multi-scale crop + resize + flip)",
     ""),
    ("packed_read_only_clips_per_s", "packed store, slicing only (a view of the map, no copy)", ""),
    ("memcpy_bound_clips_per_s", "memcpy of the same bytes (bound)", ""),
    ("packed_cold_read_clips_per_s", "packed store, cold page cache (fadvise)", ""),
    ("packed_stock_loader_clips_per_s", "stock paddle DataLoader, 1 worker (random crop)", ""),
    ("packed_loader_clips_per_s", "shared-memory loader, 1 worker (random crop)", ">= 1,500"),
    ("packed_loader_speedup_vs_stock", "shared-memory vs stock loader, 1 worker", ""),
    ("packed_multiscale_loader_clips_per_s", "shared-memory loader, 1 worker (multi-scale crop)", ""),
    ("packed_random_shm_loader_1w_2cpu_clips_per_s",
     "shared-memory loader, 1 worker on its own core (random crop)", ""),
]
TRAIN_ROWS = [
    ("clips_per_s_1proc", "trainer, 1 process (demo config)", ""),
    ("clips_per_s_2proc", "trainer, 2 processes", ">= 1.6 x 1 process"),
    ("clips_per_s_2proc_gloo", "trainer, 2 processes, all collectives over gloo (shared memory off)",
     ""),
    ("clips_per_s_2proc_plain_bn", "trainer, 2 processes, plain BN (model.sync_bn=false)", ""),
    ("speedup_2proc", "2-process speed-up (median round)", ">= 1.6"),
    ("speedup_2proc_per_round", "2-process speed-up of each round (adjacent runs)", ""),
    ("speedup_2proc_of_medians", "2-process speed-up (ratio of the median runs)", ""),
    ("clips_per_s_2independent", "machine: 2 independent 1-process trainers at once, half batch each",
     ""),
    ("two_process_ceiling_trainer_per_round",
     "machine: 2 independent trainers vs 1 process, each round (the ceiling)", ""),
    ("efficiency_2proc_per_round", "2-process trainer / 2 independent trainers, each round", ""),
    ("efficiency_2proc", "2-process trainer / 2 independent trainers (median round)", ""),
    ("clips_per_s_2proc_best_round", "trainer, 2 processes, fastest round", ""),
    ("speedup_2proc_best_rounds", "2-process speed-up, fastest round of each", ""),
    ("sync_wait_fraction_2proc_per_round",
     "trainer, 2 processes: share of time ranks waited for each other, each round", ""),
    ("machine_lockstep_efficiency_per_round",
     "machine: slowest CPU's pace / mean pace, probe after each round (1 = steady)", ""),
    ("machine_slow_window_fraction_per_round",
     "machine: share of 0.25 s windows the worse CPU ran below 75% speed, each round", ""),
    ("two_process_ceiling", "machine: 2 processes without communication vs 1 (step, fixed input)", ""),
    ("step_2rank_ms.speedup_plain_bn_gloo",
     "2-rank step vs 1 process: plain BN, DataParallel's gloo all-reduce", ""),
    ("step_2rank_ms.speedup_plain_bn", "2-rank step vs 1 process: plain BN, shared-memory gradients",
     ""),
    ("step_2rank_ms.speedup_sync_bn_shm",
     "2-rank step vs 1 process: sync BN, all over shared memory (the trainer's CPU path)", ""),
    ("step_2rank_ms.speedup_sync_bn_gloo", "2-rank step vs 1 process: sync BN, all over gloo", ""),
    ("data_wait_fraction", "data wait (1 process, 1 worker)", "< 5%"),
]


def last_json_line(path):
    """The last line starting with '{' (a wrapper may append lines such as an exit code)."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line.startswith("{")]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError) as error:
        raise SystemExit(f"{path}: the last line is not one JSON object ({error})")


def collect(out, data, train, note):
    result = json.load(open(out)) if os.path.exists(out) else {}
    if data:
        result["bench_data"] = last_json_line(data)
    if train:
        result["bench_train"] = last_json_line(train)
    if note:
        result["note"] = note
    tmp = f"{out}.tmp{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, out)


def fmt(value):
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, (int, float)):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return "n/a" if value is None else str(value)


def markdown(path):
    result = json.load(open(path, encoding="utf-8"))
    data, train = result.get("bench_data", {}), result.get("bench_train", {})
    machine = data.get("machine", {})
    lines = [f"Measured on {machine.get('cpu_model', '?')} ({machine.get('cpus', '?')} CPUs); "
             f"{result.get('note', '')}".rstrip(), "",
             "| data path, one CPU core (clips/s, 16x112x112 uint8) | measured | target |",
             "|---|---:|---|"]
    lines += [f"| {label} | {fmt(data.get(key))} | {target} |" for key, label, target in DATA_ROWS
              if key in data]
    if train:
        lines += ["", "| training, CPU (demo config) | measured | target |", "|---|---:|---|"]
        for key, label, target in TRAIN_ROWS:
            value = train
            for part in key.split("."):  # "a.b": a nested value
                value = value.get(part) if isinstance(value, dict) else None
            shown = f"{100 * value:.1f}%" if key == "data_wait_fraction" and value is not None \
                else fmt(value)
            lines.append(f"| {label} | {shown} | {target} |")
        for name, rate in train.get("step_clips_per_s", {}).items():
            lines.append(f"| step only: {name.replace('_', ' ')} | {fmt(rate)} | |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="merge bench outputs into a results JSON")
    c.add_argument("out")
    c.add_argument("--data", help="output of bench_data.py")
    c.add_argument("--train", help="output of bench_train.py")
    c.add_argument("--note", help="machine load and other context")
    m = sub.add_parser("markdown", help="print the README table")
    m.add_argument("path")
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.out, args.data, args.train, args.note)
    else:
        sys.stdout.write(markdown(args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
