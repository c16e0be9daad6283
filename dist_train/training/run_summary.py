"""A run directory's numbers at a glance, from the files training and evaluation leave there:
best validation clip top-1 and its epoch, video-level top-1 (``eval/report.json``), wall time
over all attempts, median clips/s, data wait; and the time axis of a run with several attempts.

Attempts come from rank 0's ``train.log`` (appended by every attempt; the trainer's first line
"rank 0/<world> on <device>, ..." starts one): an attempt lasts from its first to its last line,
so the time a killed attempt spent after its last checkpoint counts, and the time between
attempts does not. Without ``train.log`` the metrics rows' own times stand in (one attempt).
Log times are local times of the machine that reads them (the machine that trained, normally).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import time

LOG_FILE = "train.log"
REPORT = os.path.join("eval", "report.json")
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \[rank 0\] ")
ATTEMPT_START = re.compile(r"^\S+ \S+ \[rank 0\] INFO rank 0/\d+ on ")  # training/loop.py's first line


def attempts(run_dir: str, rows: list[dict]) -> list[tuple[float, float]]:
    """(start, end) in seconds since the epoch of every attempt, oldest first."""
    spans: list[list[float]] = []
    path = os.path.join(run_dir, LOG_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                match = LOG_LINE.match(line)
                if not match:
                    continue  # a traceback or message continuation line
                stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
                if ATTEMPT_START.match(line) or not spans:
                    spans.append([stamp, stamp])
                spans[-1][1] = stamp
    if not spans:
        times = [r["time"] for r in rows if isinstance(r.get("time"), (int, float))]
        if times:
            spans = [[min(times), max(times)]]
    return [(start, end) for start, end in spans]


def training_seconds(times: list[float], spans: list[tuple[float, float]]) -> list[float]:
    """Seconds of training (attempts only, the gaps between them left out) at each time."""
    out = []
    for t in times:
        before = 0.0
        offset = spans[0][0] if spans else t
        for start, end in spans:
            if t + 1.0 < start:  # log times have 1 s resolution
                break
            offset = start - before
            before += end - start
        out.append(t - offset)
    return out


def shown(value, spec: str = "{}") -> str:
    """``spec.format(value)``, or '-' for a number nothing gave."""
    return "-" if value is None else spec.format(value)


def format_seconds(seconds) -> str:
    """'-', '42 s', '12 min 05 s' or '3 h 07 min'."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def video_top1(run_dir: str):
    path = os.path.join(run_dir, REPORT)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("video_top1")


def summarize(run_dir: str, rows: list[dict]) -> dict:
    """Best validation clip top-1 and its epoch (1-based), video top-1, wall time and attempts,
    median clips/s, mean data wait in percent, last global step; None where nothing says."""
    validated = [r for r in rows if r.get("kind") == "epoch" and isinstance(r.get("val_top1"), (int, float))]
    best = None
    for r in validated:  # the first of equal values, as training's is_best does
        if best is None or r["val_top1"] > best["val_top1"]:
            best = r
    train = [r for r in rows if r.get("kind") == "train"]
    speeds = [r["clips_per_s"] for r in train if isinstance(r.get("clips_per_s"), (int, float))]
    waits = [r["data_wait"] for r in train if isinstance(r.get("data_wait"), (int, float))]
    spans = attempts(run_dir, rows)
    steps = [r["global_step"] for r in rows if isinstance(r.get("global_step"), int)]
    return {
        "best_val_top1": best["val_top1"] if best else None,
        "best_epoch": best["epoch"] + 1 if best else None,
        "video_top1": video_top1(run_dir),
        "wall_s": sum(end - start for start, end in spans) if spans else None,
        "attempts": len(spans),
        "median_clips_per_s": statistics.median(speeds) if speeds else None,
        "data_wait_pct": 100.0 * statistics.fmean(waits) if waits else None,
        "global_step": max(steps) if steps else None,
    }
