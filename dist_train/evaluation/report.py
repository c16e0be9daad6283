"""Files of a video-level evaluation: report.json, confusion matrix (CSV + PNG), probabilities.

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


def write_eval_outputs(out_dir: str, report: dict, probs, names) -> None:
    os.makedirs(out_dir, exist_ok=True)
    confusion = report["confusion_matrix"]
    atomic_write_text(os.path.join(out_dir, CONFUSION_CSV), confusion_csv(confusion, names))
    save_confusion_png(os.path.join(out_dir, CONFUSION_PNG), confusion, names)
    labels = np.array([v["label"] for v in report["videos"]], dtype=np.int64)
    videos = np.array([v["video"] for v in report["videos"]])
    atomic_write_bytes(os.path.join(out_dir, PROBS_FILE), _file_bytes(
        lambda f: np.savez(f, probs=np.asarray(probs, np.float64), labels=labels, videos=videos)))
    body = {k: v for k, v in report.items() if k != "confusion_matrix"}
    body["confusion_matrix_csv"] = CONFUSION_CSV
    body["class_names"] = list(names)
    # The report last: its presence means the other files are complete.
    atomic_write_text(os.path.join(out_dir, REPORT_FILE), json.dumps(body, indent=1) + "\n")
