"""Video-level evaluation (the paper's protocol): every non-overlapping clip of each video,
softmax averaged per video. Single process or under ``python -m paddle.distributed.launch``.
``-o eval.protocol=10x3`` takes 10 evenly spaced clips x 3 crops instead (common on Kinetics).

    python dist_train/evaluate.py -c CONFIG --weights PATH [-o key=value ...] [--crops 1|3]

PATH is a .pdparams weights file or a checkpoint directory. Writes <run.dir>/eval/report.json,
confusion_matrix.csv/.png, per_class_accuracy.png and video_probs.npz (or into --out-dir).
"""
from __future__ import annotations

import os
import sys

# `python dist_train/evaluate.py` puts dist_train/ first on sys.path, where our subpackages (data,
# models, dist, ...) would shadow installed top-level modules of the same names.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", help="YAML config (only what differs from the defaults)")
    parser.add_argument("--weights", required=True, help=".pdparams file or checkpoint directory")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. -o eval.batch_size=16)")
    parser.add_argument("--crops", type=int, choices=(1, 3),
                        help="spatial crops per clip (default: data.test_crops; eval.protocol "
                        "paper only, 10x3 always takes 3)")
    parser.add_argument("--out-dir", help="where to write the report (default <run.dir>/eval)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import dist_train  # noqa: F401  (before Paddle: the report's PNGs need zlib loaded first, see compat.py)
    import paddle

    from dist_train import cpu_memory, dist
    from dist_train.evaluation import video_level
    from dist_train.checkpoint import CheckpointError
    from dist_train.config import ConfigError, load_config
    from dist_train.data.lists import DataError
    from dist_train.logs import setup_logging

    try:
        cfg = load_config(args.config, args.override)
        if args.crops is not None:
            if cfg["eval.protocol"] != "paper" and args.crops != 3:
                raise ConfigError(f"--crops {args.crops}: eval.protocol {cfg['eval.protocol']} "
                                  "always takes 3 crops (--crops applies to eval.protocol paper)")
            cfg = cfg.replace(**{"data.test_crops": args.crops})
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dist.init()
    log = setup_logging(cfg["run.dir"], dist.get_rank(), filename="eval.log")
    if cfg["train.cpu_keep_freed_memory"] and not paddle.device.get_device().startswith("gpu"):
        log.info(cpu_memory.keep_freed_memory())
    try:
        report = video_level.evaluate_videos(cfg, args.weights, args.out_dir)
    except (CheckpointError, DataError, video_level.EvalDataError) as e:
        print(f"error (rank {dist.get_rank()}): {e}", file=sys.stderr)
        return 2
    if dist.is_main_process():
        print(f"video_top1 {report['video_top1']:.4f}  video_top5 {report['video_top5']:.4f}  "
              f"clip_top1 {report['clip_top1']:.4f}  mean_class_accuracy "
              f"{report['mean_class_accuracy']:.4f}  videos {report['num_videos']}  "
              f"clips {report['num_clips']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
