"""Run metrics on rank 0: ``<run.dir>/metrics.jsonl`` and VisualDL scalars.

``metrics.jsonl`` holds one JSON object per line:

- ``{"kind": "train", "epoch", "step", "steps_per_epoch", "global_step", "loss", "top1", "lr",
  "clips_per_s", "data_wait", ["sync_wait"], "step_time", "time"}`` every ``log.every_steps``
  optimizer steps. ``data_wait`` and ``sync_wait`` are fractions of the ranks' step time spent
  waiting for data and (CPU ranks on one host, shared-memory collectives) for the other ranks:
  a high ``sync_wait`` means unevenly fast ranks, e.g. a CPU core shared with other work;
- ``{"kind": "epoch", "epoch", "global_step", "loss", "top1", "lr", ["val_loss", "val_top1",
  "val_clips", "is_best"], "time"}`` at the end of every epoch (validation keys when validated).

On resume the file is cut back to the checkpoint: training rows after its global step and
epoch rows of epochs it had not finished go (they will be written again). VisualDL writes to
``<run.dir>/vdl/attempt_NNN``, a new folder per attempt, so a resumed run never appends to the
event file of a crashed one. With ``curves``, the pictures of these rows (``curves.png``,
``curves.json``) are redrawn after every validation and at ``close()``: see curves.py.
"""
from __future__ import annotations

import json
import os
import time

from dist_train.logs import get_logger
from dist_train.atomic import atomic_write_text

METRICS_FILE = "metrics.jsonl"
VDL_DIR = "vdl"


def read_metrics(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                # A line cut by a crash mid-write; everything before it is intact.
                get_logger().warning(f"{path} line {number}: incomplete row dropped")
    return rows


def keep_row(row: dict, global_step: int, epoch: int) -> bool:
    """Whether a row written before a resume from (global_step, epoch) stays."""
    if row.get("kind") == "epoch":
        return row.get("epoch", 0) < epoch
    return row.get("global_step", 0) <= global_step


def truncate_metrics(run_dir: str, global_step: int, epoch: int) -> int:
    """Cut ``metrics.jsonl`` back to a checkpoint; returns the number of rows removed."""
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.exists(path):
        return 0
    rows = read_metrics(path)
    kept = [r for r in rows if keep_row(r, global_step, epoch)]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return len(rows) - len(kept)


def next_attempt_dir(run_dir: str) -> str:
    root = os.path.join(run_dir, VDL_DIR)
    os.makedirs(root, exist_ok=True)
    numbers = [int(n[8:]) for n in os.listdir(root) if n.startswith("attempt_") and n[8:].isdigit()]
    return os.path.join(root, f"attempt_{max(numbers, default=0) + 1:03d}")


class MetricsLog:
    """Rank 0 writes; on other ranks every method does nothing (``enabled=False``)."""

    def __init__(self, run_dir: str, enabled: bool, visualdl: bool, curves: bool = False):
        self.enabled = enabled
        self.path = os.path.join(run_dir, METRICS_FILE)
        self.vdl = None
        self.curves = None
        if enabled and curves:
            from dist_train.training.curves import CurvesDrawer  # lazy: curves.py imports this module

            self.curves = CurvesDrawer(run_dir)
        if enabled and visualdl:
            try:
                from visualdl import LogWriter
            except ImportError:
                get_logger().warning("visualdl is not installed: no VisualDL scalars "
                                     "(pip install visualdl, or set log.visualdl=false)")
            else:
                self.vdl = LogWriter(logdir=next_attempt_dir(run_dir))

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        row = dict(row, time=round(time.time(), 3))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.vdl is not None:
            kind = row["kind"]
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in (
                        "epoch", "step", "global_step", "steps_per_epoch", "time"):
                    self.vdl.add_scalar(f"{kind}/{key}", value, row["global_step"])
        if self.curves is not None and row["kind"] == "epoch" and "val_top1" in row:
            self.curves.refresh()

    def close(self) -> None:
        if self.vdl is not None:
            self.vdl.close()
            self.vdl = None
        if self.curves is not None:
            self.curves.finish()
            self.curves = None
