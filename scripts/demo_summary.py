"""Print the demo's summary: video-level top-1, where its files and pictures are, held-out
predictions.

    python scripts/demo_summary.py --run runs/demo --data data/synthetic [--seconds N]

Reads <run>/eval/report.json (dist_train/evaluate.py), <run>/predict/heldout.jsonl
(dist_train/predict.py --json) and <data>/heldout/heldout.txt (data_tools/make_synthetic.py).
Exit code 1 when a file is missing or a held-out video has no prediction.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def heldout_labels(data_dir: str) -> dict[str, str]:
    """Video file name -> true class name, from heldout.txt ("<Class>/<video>.avi <label>")."""
    path = os.path.join(data_dir, "heldout", "heldout.txt")
    labels = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            rel = line.split()[0]
            if "/" not in rel:
                raise ValueError(f"{path}:{number}: expected '<Class>/<video>.avi <label>', got {line!r}")
            labels[os.path.basename(rel)] = rel.split("/")[0]
    return labels


def heldout_results(predictions_path: str, labels: dict[str, str]) -> list[tuple[str, str, str, float]]:
    """(video, true class, predicted class, score) per held-out video, in heldout.txt order."""
    predicted = {}
    with open(predictions_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                predicted[os.path.basename(row["video"])] = row["topk"][0]
    missing = sorted(set(labels) - set(predicted))
    if missing:
        raise ValueError(f"{predictions_path}: no prediction for {', '.join(missing)}")
    return [(video, truth, predicted[video]["label"], float(predicted[video]["score"]))
            for video, truth in labels.items()]


def summary_lines(run_dir: str, data_dir: str, seconds: float | None) -> list[str]:
    eval_dir = os.path.join(run_dir, "eval")
    with open(os.path.join(eval_dir, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    results = heldout_results(os.path.join(run_dir, "predict", "heldout.jsonl"),
                              heldout_labels(data_dir))
    correct = sum(truth == pred for _, truth, pred, _ in results)
    lines = [
        f"video top-1: {report['video_top1']:.4f} ({report['num_videos']} test videos, "
        f"{report['num_clips']} clips; clip top-1 {report['clip_top1']:.4f}, "
        f"mean class accuracy {report['mean_class_accuracy']:.4f})",
        f"run directory:    {run_dir}",
        f"report:           {os.path.join(eval_dir, 'report.json')}",
        f"confusion matrix: {os.path.join(eval_dir, 'confusion_matrix.png')} (and .csv)",
        f"per-class chart:  {os.path.join(eval_dir, 'per_class_accuracy.png')}",
        f"training curves:  {os.path.join(run_dir, 'curves.png')} (series in curves.json)",
        f"exported model:   {os.path.join(run_dir, 'export')}",
        f"held-out videos (in neither list): {correct}/{len(results)} correct",
    ]
    lines += [f"  {video}: true {truth}, predicted {pred} ({score:.3f})"
              for video, truth, pred, score in results]
    lines.append(f"VisualDL:         visualdl --logdir {os.path.join(run_dir, 'vdl')} --host 127.0.0.1")
    lines.append(f"compare runs:     python scripts/plot_runs.py {run_dir} OTHER_RUN... --out runs.png")
    if seconds is not None:
        lines.append(f"demo time:        {seconds:.0f} s")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory of the demo")
    parser.add_argument("--data", required=True, help="synthetic dataset directory")
    parser.add_argument("--seconds", type=float, help="elapsed time to report")
    args = parser.parse_args(argv)
    try:
        lines = summary_lines(args.run, args.data, args.seconds)
    except (OSError, ValueError, KeyError) as e:
        print(f"demo_summary.py: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
