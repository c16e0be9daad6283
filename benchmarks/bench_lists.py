"""Kinetics list building at full scale: 300,000 synthetic CSV rows against a synthetic listing.

Writes a Kinetics-700-sized annotation CSV (700 classes with spaces, parentheses, apostrophes
and commas; ids with '_' and '-'), and a listing of clip paths in renamed per-label folders
with 7% of the clips absent, a few duplicated and unlisted. Times reading the CSV, matching and
assembling the lists (``prepare.kinetics.kinetics_lists``; frame counts come from the listing,
as counting needs the real files) and writing the list files (``total``), then reading the
train list back. Wall and CPU seconds per stage; prints one JSON object, with ``--out`` also
writes it (benchmarks/lists_kinetics.json is a committed run).

    python benchmarks/bench_lists.py [--rows 300000] [--out benchmarks/lists_kinetics.json]
"""
import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

from dist_train.atomic import atomic_write_text
from dist_train.data.lists import read_list, write_generated_lists
from dist_train.data.prepare.kinetics import clip_id, kinetics_lists, read_kinetics_csv

ID_CHARS = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"))


def synthetic_rows(n, num_classes, rng):
    """[(label, youtube_id, start, end, split)]: 92% train, 8% val; random 11-character ids."""
    labels = [f"class {k:03d} (kind {k % 7}) it's, \"quoted\"" for k in range(num_classes)]
    ids = ["".join(chars) for chars in ID_CHARS[rng.integers(0, len(ID_CHARS), (n, 11))]]
    starts = rng.integers(0, 600, n)
    classes = rng.integers(0, num_classes, n)
    splits = np.where(rng.random(n) < 0.92, "train", "val")
    return [(labels[c], i, int(s), int(s) + 10, str(sp))
            for c, i, s, sp in zip(classes, ids, starts, splits)]


def _stages(t):
    return {"read_csv": round(t[1] - t[0], 3), "match_and_assemble": round(t[2] - t[1], 3),
            "write_lists": round(t[3] - t[2], 3), "total": round(t[3] - t[0], 3),
            "read_train_list": round(t[4] - t[3], 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--classes", type=int, default=700)
    parser.add_argument("--missing", type=float, default=0.07)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    rows = synthetic_rows(args.rows, args.classes, rng)
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = os.path.join(tmp, "kinetics_synthetic.csv")
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
            writer.writerows([*row, 0] for row in rows)
        present = rng.random(len(rows)) >= args.missing
        listing = [f"{label.replace(' ', '_').replace(chr(39), '')}/{clip_id(i, s, e)}.mp4"
                   for (label, i, s, e, _), keep in zip(rows, present) if keep]
        listing += [f"unlisted/zz{k:09d}_000000_000010.mp4" for k in range(100)]
        listing += [p[:-4] + ".mkv" for p in listing[:100]]  # duplicates
        listing.sort()
        frames = {p: (250, None) for p in listing}

        wall, cpu = [], []

        def mark():
            wall.append(time.perf_counter())
            cpu.append(time.process_time())

        mark()
        parsed = read_kinetics_csv(csv_path)
        mark()
        generated = kinetics_lists(parsed, listing, lambda paths: {p: frames[p] for p in paths})
        mark()
        written = write_generated_lists(os.path.join(tmp, "lists"), "kinetics", generated, 0.2)
        mark()
        entries = read_list(written["train"])
        mark()
    splits = generated.report["splits"]
    result = {
        "benchmark": "kinetics_lists",
        "rows": len(parsed), "listing": len(listing), "classes": len(generated.classes),
        "listed": {s: v["listed"] for s, v in splits.items()},
        "missing": {s: v["missing"] for s, v in splits.items()},
        "seconds": _stages(wall),
        "cpu_seconds": _stages(cpu),  # this process's CPU time: steadier on a shared VM
        "train_list_entries": len(entries),
        "load_average_1min": round(load, 2),  # other processes on the machine at the start
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
