"""Training curves as a picture: ``<run.dir>/curves.png`` and ``curves.json``, drawn from
``metrics.jsonl`` alone.

The picture shows, over global step with the epoch ends marked (numbered on top): training
loss (and validation loss), train and validation clip top-1, learning rate, clips/s, and the
share of the step time spent waiting for data (and for the other ranks). A resumed run's
``metrics.jsonl`` is cut back to its checkpoint (metrics.py), so it draws as one curve.

Rank 0's ``MetricsLog`` calls ``CurvesDrawer.refresh()`` after each validation and
``finish()`` at the end. The drawing runs in a child process, ``python -m
dist_train.training.curves RUN_DIR`` (also the way to draw a run by hand): the training thread
only starts it (milliseconds, logged beside the drawing time) and runs on while it draws at a
lower CPU priority. One drawing at a time: rows that come while one runs are drawn by the next.
At the end it waits (at most FINISH_TIMEOUT_S) for a last picture of every row. The child imports
no Paddle, so Paddle 2.6's zlib clash (compat.py) cannot reach its PNG encoder, and a crash while
drawing cannot take the run with it. A drawing that fails or times out is a warning: the picture
is a view, ``metrics.jsonl`` the record.

``curves.json``, written after the picture it describes: ``{"format_version": 1, "image":
"curves.png", "width", "height" (pixels), "x": "global_step", "rows" (rows of metrics.jsonl
read), "epoch_ends" (global step of each finished epoch), "series": {name: {"panel", "source"
("train.loss": key "loss" of the "train" rows), "x": [...], "y": [...]}}}``; only series with
points are listed, their values as in metrics.jsonl (fractions, not percent).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

from dist_train.atomic import atomic_write_bytes, atomic_write_text
from dist_train.logs import get_logger
from dist_train.training.metrics import METRICS_FILE, read_metrics
from dist_train.training.run_summary import format_seconds, shown, summarize

CURVES_PNG, CURVES_JSON = "curves.png", "curves.json"
FORMAT_VERSION = 1
SIZE_INCHES, DPI = (12.0, 9.0), 100  # 1200 x 900 pixels
# (name, row kind, key, panel, legend label)
SERIES = (
    ("train_loss", "train", "loss", "loss", "train (logged steps)"),
    ("val_loss", "epoch", "val_loss", "loss", "validation"),
    ("train_top1", "train", "top1", "top1", "train (logged steps)"),
    ("val_top1", "epoch", "val_top1", "top1", "validation"),
    ("lr", "train", "lr", "lr", "learning rate"),
    ("clips_per_s", "train", "clips_per_s", "speed", "clips/s"),
    ("data_wait", "train", "data_wait", "wait", "waiting for data"),
    ("sync_wait", "train", "sync_wait", "wait", "waiting for other ranks"),
)
# panel -> (title, y label, values shown in percent)
PANELS = {
    "loss": ("loss", "cross-entropy", False),
    "top1": ("clip top-1", "%", True),
    "lr": ("learning rate", "lr", False),
    "speed": ("speed (all ranks)", "clips/s", False),
    "wait": ("waiting, share of the step time", "%", True),
}
FINISH_TIMEOUT_S = 15.0  # under the 20 s barrier other ranks wait at after a preemption
DRAWING_NICE = 10  # while training runs, the drawing gets the CPU the training leaves


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_rows(run_dir: str) -> list[dict]:
    return read_metrics(os.path.join(run_dir, METRICS_FILE))


def build_series(rows: list[dict]) -> dict[str, dict]:
    """Series name -> {"panel", "source", "x" (global steps), "y"}, for series with points."""
    series = {}
    for name, kind, key, panel, _ in SERIES:
        points = [(r["global_step"], r[key]) for r in rows
                  if r.get("kind") == kind and is_number(r.get(key)) and is_number(r.get("global_step"))]
        if points:
            series[name] = {"panel": panel, "source": f"{kind}.{key}",
                            "x": [p[0] for p in points], "y": [p[1] for p in points]}
    return series


def epoch_ends(rows: list[dict]) -> list[int]:
    return [r["global_step"] for r in rows if r.get("kind") == "epoch" and is_number(r.get("global_step"))]


def new_figure(rows: int = 3, cols: int = 2):
    """A matplotlib Figure on the Agg canvas (no pyplot: no global state, safe off the main thread)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=SIZE_INCHES, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, cols, squeeze=False)


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)  # no bbox_inches: the size stays SIZE_INCHES x DPI
    return buffer.getvalue()


def panel_axes(axes) -> dict:
    """Panel name -> axes, in the order of PANELS, row by row; the last cell is left free."""
    cells = list(axes.flat)
    return dict(zip(PANELS, cells))


def style_panels(panels: dict, x_label: str) -> None:
    for name, ax in panels.items():
        title, y_label, _ = PANELS[name]
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(y_label)
        ax.set_xlabel(x_label)
        ax.grid(True, alpha=0.3)
    if panels["lr"].has_data() and panels["lr"].get_ylim()[0] > 0:
        panels["lr"].set_yscale("log")


def plot_series(ax, name: str, x, y, percent: bool, color: str, label: str) -> None:
    scale = 100.0 if percent else 1.0
    values = [v * scale for v in y]
    if name.startswith("val_"):  # once per validation: markers
        ax.plot(x, values, "o-", color=color, markersize=4, linewidth=1.5, label=label)
    else:  # waiting for the other ranks dotted, beside waiting for data in the same colour
        ax.plot(x, values, ":" if name == "sync_wait" else "-", color=color, linewidth=1.0,
                alpha=0.85, label=label)


def mark_epochs(panels: dict, ends: list[int]) -> None:
    """A thin line at every epoch end; the top panels number them along their upper edge."""
    if not ends:
        return
    every = max(1, math.ceil(len(ends) / 20))
    for name, ax in panels.items():
        for end in ends:
            ax.axvline(end, color="0.8", linewidth=0.6, zorder=0)
    for ax in list(panels.values())[:2]:
        top = ax.secondary_xaxis("top")
        top.set_ticks(ends[every - 1::every], [str(i) for i in range(every, len(ends) + 1, every)])
        top.tick_params(labelsize=7, length=2)
        top.set_xlabel("epoch", fontsize=8)


def draw_run(run_dir: str, out_png: str | None = None) -> dict:
    """Draw ``run_dir``'s metrics into ``curves.png`` (atomic), then write ``curves.json``;
    returns the curves.json content."""
    out_png = out_png or os.path.join(run_dir, CURVES_PNG)
    rows = read_rows(run_dir)
    series = build_series(rows)
    ends = epoch_ends(rows)
    figure, axes = new_figure()
    panels = panel_axes(axes)
    colors = {"train": "C0", "epoch": "C1"}
    for name, kind, _, panel, label in SERIES:
        if name in series:
            s = series[name]
            color = "C2" if name == "sync_wait" else colors[kind]
            plot_series(panels[panel], name, s["x"], s["y"], PANELS[panel][2], color, label)
    style_panels(panels, "global step")
    mark_epochs(panels, ends)
    for ax in (panels["loss"], panels["top1"], panels["wait"]):
        if ax.has_data():
            ax.legend(fontsize=8, loc="best")
    summary_cell = list(axes.flat)[len(PANELS)]
    summary_cell.axis("off")
    summary_cell.text(0.0, 1.0, "\n".join(summary_text(run_dir, rows)), va="top", family="monospace",
                      fontsize=9, transform=summary_cell.transAxes)
    figure.suptitle(f"{os.path.basename(os.path.abspath(run_dir))}: training curves")
    figure.tight_layout()
    atomic_write_bytes(out_png, png_bytes(figure))
    width, height = (int(round(v * DPI)) for v in SIZE_INCHES)
    info = {"format_version": FORMAT_VERSION, "image": os.path.basename(out_png), "width": width,
            "height": height, "x": "global_step", "rows": len(rows), "epoch_ends": ends,
            "series": series}
    atomic_write_text(os.path.join(os.path.dirname(os.path.abspath(out_png)), CURVES_JSON),
                      json.dumps(info) + "\n")
    return info


def summary_text(run_dir: str, rows: list[dict]) -> list[str]:
    s = summarize(run_dir, rows)
    return [f"epochs finished  {len(epoch_ends(rows))}",
            f"global steps     {shown(s['global_step'])}",
            f"best val top-1   {shown(s['best_val_top1'], '{:.4f}')} (epoch {shown(s['best_epoch'])})",
            f"median clips/s   {shown(s['median_clips_per_s'], '{:.1f}')}",
            f"data wait        {shown(s['data_wait_pct'], '{:.1f} %')}",
            f"wall time        {format_seconds(s['wall_s'])} over {s['attempts']} attempt(s)"]


class CurvesDrawer:
    """Rank 0: keeps ``curves.png`` current through child processes, one at a time."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.proc = None
        self.output = None  # the running drawing's stdout and stderr
        self.start_cost_s = 0.0  # time the training thread spent starting the last drawing
        self.drawn_size = -1  # bytes of metrics.jsonl the last drawing read (at least)
        self.started_size = -1  # bytes of metrics.jsonl when the running drawing started

    def metrics_size(self) -> int:
        try:
            return os.path.getsize(os.path.join(self.run_dir, METRICS_FILE))
        except OSError:
            return -1

    def refresh(self) -> None:
        """Start a drawing unless one is still running (the next refresh or finish() catches up)."""
        self.collect(wait=False)
        if self.proc is None:
            self.start(nice=DRAWING_NICE)

    def finish(self, timeout_s: float = FINISH_TIMEOUT_S) -> None:
        """A last drawing of every row, at full CPU priority. A drawing still running on fewer
        rows is stopped first (SIGTERM: it removes its temporary file), not waited for."""
        deadline = time.monotonic() + timeout_s
        if self.proc is not None and self.proc.poll() is None and self.metrics_size() != self.started_size:
            self.stop()
            get_logger().info("curves: stopped a drawing that started before the last rows")
        self.collect(wait=True, timeout_s=timeout_s)
        if self.metrics_size() != self.drawn_size and self.start(nice=0):  # training is over
            self.collect(wait=True, timeout_s=max(1.0, deadline - time.monotonic()))

    def start(self, nice: int) -> bool:
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.drawn_size = self.started_size = self.metrics_size()
        self.output = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # a file: no pipe to fill
        tick = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dist_train.training.curves", self.run_dir, "--nice", str(nice)],
                stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT, env=env)
        except OSError as e:
            self.output.close()
            get_logger().warning(f"curves: cannot start the drawing process ({e}); "
                                 f"{CURVES_PNG} not updated, training goes on")
            return False
        self.start_cost_s = time.perf_counter() - tick
        return True

    def stop(self) -> None:
        """End the running drawing (SIGTERM, then SIGKILL after 5 s) and forget it."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.output.close()

    def collect(self, wait: bool, timeout_s: float = FINISH_TIMEOUT_S) -> None:
        """Reap a finished drawing (or wait for it); a failure or a timeout is a warning."""
        proc, log = self.proc, get_logger()
        if proc is None or (not wait and proc.poll() is None):
            return
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            log.warning(f"curves: drawing {CURVES_PNG} took over {timeout_s:.0f} s and was stopped; "
                        f"draw it later with: python -m dist_train.training.curves {self.run_dir}")
            return
        self.proc = None
        self.output.seek(0)
        lines = [line for line in self.output.read().splitlines() if line.strip()]
        self.output.close()
        if proc.returncode != 0:
            log.warning(f"curves: {CURVES_PNG} not updated (exit code {proc.returncode}: "
                        f"{lines[-1] if lines else 'no message'}); training goes on")
            return
        try:
            done = json.loads(lines[-1])
        except (ValueError, IndexError):
            done = {}
        # The child may have read rows written after it started: finish() need not draw them again.
        self.drawn_size = max(self.drawn_size, done.get("metrics_bytes", -1))
        log.info(f"curves: {os.path.join(self.run_dir, CURVES_PNG)} drawn from {done.get('rows')} "
                 f"rows in {done.get('seconds')} s in a child process (the training thread spent "
                 f"{1000 * self.start_cost_s:.1f} ms starting it)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Draw <run.dir>/curves.png and curves.json "
                                                 "from <run.dir>/metrics.jsonl.")
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="picture path (default <run_dir>/curves.png; curves.json beside it)")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by N")
    args = parser.parse_args(argv)
    tick = time.perf_counter()
    # SIGTERM (finish() stopping a superseded drawing) raises SystemExit, so atomic_open
    # removes its temporary file.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    if args.nice:
        os.nice(args.nice)
    if not os.path.isfile(os.path.join(args.run_dir, METRICS_FILE)):
        print(f"curves: error: {os.path.join(args.run_dir, METRICS_FILE)} does not exist "
              "(give a run directory of dist_train/train.py)", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("curves: error: matplotlib is not installed (pip install matplotlib, or set "
              "log.curves=false)", file=sys.stderr)
        return 2
    try:
        size = os.path.getsize(os.path.join(args.run_dir, METRICS_FILE))  # before reading it
        info = draw_run(args.run_dir, args.out)
    except OSError as e:
        print(f"curves: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"rows": info["rows"], "metrics_bytes": size,
                      "seconds": round(time.perf_counter() - tick, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
