"""Files of a video-level evaluation: report.json, confusion matrix (CSV + PNG), per-class
accuracy chart (PNG), probabilities. report.json names the other files.

Every file is written to a temporary name beside its target and renamed into place.
"""
from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from dist_train.atomic import atomic_write_bytes, atomic_write_text

REPORT_FILE = "report.json"
CONFUSION_CSV = "confusion_matrix.csv"
CONFUSION_PNG = "confusion_matrix.png"
PER_CLASS_PNG = "per_class_accuracy.png"
NAMED_WORST = 15  # with more classes than this, the chart names only the worst ones
PROBS_FILE = "video_probs.npz"


def _file_bytes(write) -> bytes:
    """What ``write(file_object)`` writes, as bytes (for savefig / np.savez)."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def confusion_csv(confusion, names) -> str:
    """Rows: true class; columns: predicted class; first row and column are class names."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ predicted", *names])
    for name, row in zip(names, confusion):
        writer.writerow([name, *[int(x) for x in row]])
    return buffer.getvalue()


def save_confusion_png(path: str, confusion, names) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    rates = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    n = len(names)
    side = min(30.0, max(5.0, 0.18 * n + 3))
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Video-level confusion matrix (row-normalised)")
    ticks = np.arange(n)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    fontsize = 8 if n <= 30 else 5
    ax.set_xticklabels(names, rotation=90, fontsize=fontsize)
    ax.set_yticklabels(names, fontsize=fontsize)
    fig.tight_layout()
    try:
        atomic_write_bytes(path, _file_bytes(lambda f: fig.savefig(f, format="png", dpi=100)))
    finally:
        plt.close(fig)


def save_per_class_png(path: str, per_class: dict, mean_class_accuracy: float) -> None:
    """One bar per class with test videos, sorted worst first (at the top); the NAMED_WORST worst
    classes are named, with their number of videos (every class when there are no more)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    ranked = sorted((v["accuracy"], name, v["videos"]) for name, v in per_class.items()
                    if v["accuracy"] is not None)
    absent = len(per_class) - len(ranked)
    n, named = len(ranked), min(len(ranked), NAMED_WORST)
    fig, ax = plt.subplots(figsize=(9.0, min(16.0, max(3.0, (0.3 if n <= NAMED_WORST else 0.1) * n + 1.8))))
    positions = np.arange(n)
    accuracy = [a for a, _, _ in ranked]
    worst = "C3" if named < n else "C0"  # red marks the named few among many
    ax.barh(positions, accuracy, height=0.8, color=[worst] * named + ["C0"] * (n - named))
    ax.set_yticks(positions[:named])
    ax.set_yticklabels([f"{name} ({videos})" for _, name, videos in ranked[:named]],
                       fontsize=8 if named <= 30 else 6)
    for position, value in zip(positions[:named], accuracy[:named]):
        ax.text(min(value, 1.0) + 0.01, position, f"{value:.2f}", va="center", fontsize=7)
    ax.axvline(mean_class_accuracy, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlim(0.0, 1.08)
    ax.set_ylim(n - 0.5, -0.5)  # worst at the top
    ax.set_xlabel("video-level accuracy of the class")
    ax.set_ylabel("class (test videos)" if named == n else f"{named} worst of {n} classes (test videos)")
    title = f"Video-level accuracy per class, worst first (dashed: mean {mean_class_accuracy:.3f})"
    if absent:
        title += f"\n({absent} class{'es' if absent > 1 else ''} without test videos not shown)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write_bytes(path, _file_bytes(lambda f: fig.savefig(f, format="png", dpi=100)))
    finally:
        plt.close(fig)


def write_eval_outputs(out_dir: str, report: dict, probs, names) -> None:
    os.makedirs(out_dir, exist_ok=True)
    confusion = report["confusion_matrix"]
    atomic_write_text(os.path.join(out_dir, CONFUSION_CSV), confusion_csv(confusion, names))
    save_confusion_png(os.path.join(out_dir, CONFUSION_PNG), confusion, names)
    save_per_class_png(os.path.join(out_dir, PER_CLASS_PNG), report["per_class_accuracy"],
                       report["mean_class_accuracy"])
    labels = np.array([v["label"] for v in report["videos"]], dtype=np.int64)
    videos = np.array([v["video"] for v in report["videos"]])
    atomic_write_bytes(os.path.join(out_dir, PROBS_FILE), _file_bytes(
        lambda f: np.savez(f, probs=np.asarray(probs, np.float64), labels=labels, videos=videos)))
    body = {k: v for k, v in report.items() if k != "confusion_matrix"}
    body["confusion_matrix_csv"] = CONFUSION_CSV
    body["confusion_matrix_png"] = CONFUSION_PNG
    body["per_class_accuracy_png"] = PER_CLASS_PNG
    body["class_names"] = list(names)
    # The report last: its presence means the other files are complete.
    atomic_write_text(os.path.join(out_dir, REPORT_FILE), json.dumps(body, indent=1) + "\n")
