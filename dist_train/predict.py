"""Classify raw videos with an exported model (paddle.inference), sampled like evaluation.

    python dist_train/predict.py --model DIR --video FILE_OR_DIR [--topk 5] [--json]
                                 [--device cpu|gpu|gpu:N]

Prints the top-k class names with probabilities per video; --timeline adds one line per clip
with its start and end in seconds (the decoder's timestamps of its first and last frame). With
--json: one JSON object per video (one line each), schema in README ("Predict"). Videos of any
length are streamed in bounded memory. Progress and errors go to stderr; an unreadable video
gets an error line naming it, the others continue, and the exit code is 1 if any video failed.
"""
from __future__ import annotations

import os
import sys

# `python dist_train/predict.py` puts dist_train/ first on sys.path, where our subpackages (data,
# models, dist, ...) would shadow installed top-level modules of the same names.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import json


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="export directory (with meta.json)")
    parser.add_argument("--video", required=True, help="a video file or a directory of videos")
    parser.add_argument("--topk", type=int, default=5, help="classes shown per video")
    parser.add_argument("--timeline", action="store_true",
                        help="also the top-k of every clip with its start/end time in seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object per video on stdout")
    parser.add_argument("--device", default="cpu", help="cpu, gpu (GPU 0) or gpu:N")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per inference call")
    parser.add_argument("--threads", type=int, help="CPU math threads (default: Paddle's)")
    return parser.parse_args(argv)


def _scores_text(topk: list[dict]) -> str:
    return "  ".join(f"{t['label']} {t['score']:.4f}" for t in topk)


def main(argv=None) -> int:
    args = parse_args(argv)
    from dist_train.deploy import predict as deploy_predict

    try:
        if args.batch_size < 1 or args.topk < 1:
            raise ValueError("--batch-size and --topk must be at least 1")
        paths = deploy_predict.find_videos(args.video)
        model = deploy_predict.InferenceModel(args.model, args.device, args.threads)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = len(paths)

    def on_result(i, result):
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"{result['video']}: {_scores_text(result['topk'])}", flush=True)
            for c in result.get("timeline", []):
                print(f"  clip {c['clip']:4d}  {c['start']:9.3f} - {c['end']:9.3f} s  "
                      f"{_scores_text(c['topk'])}", flush=True)
        if total > 1:
            print(f"[{i + 1}/{total}] done {result['video']}", file=sys.stderr, flush=True)

    def on_error(i, path, message):
        # The reader's message starts with the path of the video.
        print(f"[{i + 1}/{total}] ERROR {message}", file=sys.stderr, flush=True)

    run = deploy_predict.predict_videos(model, paths, args.topk, args.batch_size, on_result,
                                        on_error, timeline=args.timeline)
    if run.failures:
        print(f"{len(run.failures)} of {total} videos failed: "
              + ", ".join(path for path, _ in run.failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
