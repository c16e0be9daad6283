"""Compare runs: overlay their training curves in one PNG and print a table of their numbers.

    python scripts/plot_runs.py RUN_DIR... --out FILE [--x step|epoch|samples|time]

Each RUN_DIR is a run directory of dist_train/train.py (its metrics.jsonl; config.yaml for
--x samples; train.log for wall time and --x time; eval/report.json for video-level top-1).
--x: global step (default), epoch (fractional: global step / steps per epoch), samples
(global step x train.batch_size) or time (minutes of training, the gaps between attempts left
out). The table: best validation clip top-1 and the epoch it was reached (1-based), video-level
top-1, wall time over all attempts, median clips/s and mean data wait over the logged steps.
Exit code 2 when a RUN_DIR has no metrics.jsonl, --x samples finds no train.batch_size or
--out cannot be written.
"""
from __future__ import annotations

import argparse
import os
import sys

import yaml

from dist_train.atomic import atomic_write_bytes
from dist_train.training import curves, run_summary
from dist_train.training.metrics import METRICS_FILE, read_metrics

X_LABELS = {"step": "global step", "epoch": "epoch", "samples": "training samples",
            "time": "training time (min)"}


class RunError(ValueError):
    """A run directory this script cannot use; the message says which and why."""


def steps_per_epoch(rows: list[dict]):
    for r in rows:
        if r.get("kind") == "train" and curves.is_number(r.get("steps_per_epoch")):
            return r["steps_per_epoch"]
    ends = [(r["epoch"], r["global_step"]) for r in rows if r.get("kind") == "epoch"]
    return ends[0][1] / (ends[0][0] + 1) if ends else None


def batch_size(run_dir: str) -> int:
    path = os.path.join(run_dir, "config.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            value = (yaml.safe_load(f) or {}).get("train", {}).get("batch_size")
    except OSError as e:
        raise RunError(f"{path}: cannot read it ({e.strerror}); --x samples needs train.batch_size") from e
    if not curves.is_number(value):
        raise RunError(f"{path}: no train.batch_size; use another --x than samples")
    return value


def x_mapper(run_dir: str, rows: list[dict], mode: str):
    """A function: list of global steps (and the rows' times, for --x time) -> x values."""
    if mode == "step":
        return lambda steps, times: list(steps)
    if mode == "epoch":
        per_epoch = steps_per_epoch(rows)
        if not per_epoch:
            raise RunError(f"{run_dir}: no row says how many steps an epoch has; use --x step")
        return lambda steps, times: [s / per_epoch for s in steps]
    if mode == "samples":
        size = batch_size(run_dir)
        return lambda steps, times: [s * size for s in steps]
    spans = run_summary.attempts(run_dir, rows)
    return lambda steps, times: [t / 60.0 for t in run_summary.training_seconds(times, spans)]


def load_run(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.isfile(path):
        raise RunError(f"{path} does not exist: give run directories of dist_train/train.py")
    return read_metrics(path)


def draw(runs: dict[str, list[dict]], mode: str, out: str) -> None:
    figure, axes = curves.new_figure()
    panels = curves.panel_axes(axes)
    for index, (run_dir, rows) in enumerate(runs.items()):
        color = f"C{index % 10}"
        to_x = x_mapper(run_dir, rows, mode)
        for name, kind, key, panel, _ in curves.SERIES:
            picked = [r for r in rows if r.get("kind") == kind and curves.is_number(r.get(key))]
            if not picked:
                continue
            x = to_x([r["global_step"] for r in picked], [r.get("time", 0.0) for r in picked])
            curves.plot_series(panels[panel], name, x, [r[key] for r in picked],
                               curves.PANELS[panel][2], color, None)
    curves.style_panels(panels, X_LABELS[mode])
    legend_cell = list(axes.flat)[len(curves.PANELS)]
    legend_cell.axis("off")
    for index, run_dir in enumerate(runs):
        legend_cell.plot([], [], "-", color=f"C{index % 10}", linewidth=3, label=run_dir)
    legend_cell.plot([], [], "-", color="0.4", linewidth=1, label="train (logged steps)")
    legend_cell.plot([], [], "o-", color="0.4", markersize=4, label="validation")
    legend_cell.plot([], [], ":", color="0.4", label="waiting for other ranks")
    legend_cell.legend(loc="upper left", fontsize=9, frameon=False)
    figure.suptitle(f"{len(runs)} runs over {X_LABELS[mode]}")
    figure.tight_layout()
    atomic_write_bytes(out, curves.png_bytes(figure))


def table(runs: dict[str, list[dict]]) -> list[str]:
    header = ("run", "best val top-1", "epoch", "video top-1", "wall time", "attempts",
              "clips/s (median)", "data wait")
    body = []
    for run_dir, rows in runs.items():
        s = run_summary.summarize(run_dir, rows)
        shown = run_summary.shown
        body.append((run_dir, shown(s["best_val_top1"], "{:.4f}"), shown(s["best_epoch"]),
                     shown(s["video_top1"], "{:.4f}"), run_summary.format_seconds(s["wall_s"]),
                     str(s["attempts"]), shown(s["median_clips_per_s"], "{:.1f}"),
                     shown(s["data_wait_pct"], "{:.1f}%")))
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip()
            for row in [header, *body]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories to compare")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--x", choices=sorted(X_LABELS), default="step", help="x axis (default step)")
    args = parser.parse_args(argv)
    try:
        runs = {run_dir: load_run(run_dir) for run_dir in args.runs}
        draw(runs, args.x, args.out)
    except RunError as e:
        print(f"plot_runs.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the picture: an unwritable --out
        print(f"plot_runs.py: error: cannot write {args.out}: {e}", file=sys.stderr)
        return 2
    print("\n".join(table(runs)))
    print(f"picture: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
