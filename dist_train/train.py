"""Train a 3D CNN on clip lists, on one process or under ``paddle.distributed.launch``.

    python dist_train/train.py -c configs/demo.yaml [-o key=value ...] [--resume auto|none|PATH]
        [--weights PATH] [--debug] [--accept-config-change]
    python -m paddle.distributed.launch --nproc_per_node 2 dist_train/train.py -c ... (CPU)
    python -m paddle.distributed.launch --devices 0,1 dist_train/train.py -c ...       (GPU)

``train.batch_size`` is the GLOBAL batch of one optimizer step; each rank takes
batch_size / world_size samples of it and splits them into ``train.accum_steps`` micro-batches.
``--debug``: one process, no loader workers, a small subset (3 global batches, 8 validation
videos, at most 2 epochs), a NaN/Inf check of loss and gradients every step, a log line every
step, run directory ``<run.dir>-debug``.

SIGTERM/SIGINT: the ranks agree (one all-reduce per step) to stop after the same step, save a
checkpoint there, shut the loaders down, rank 0 writes ``<run.dir>/PREEMPTED``, and every rank
exits with preempt.PREEMPTED_EXIT_CODE (75); see dist_train/training/preempt.py.
``DIST_TRAIN_SAMPLE_LOG=1`` (tests): each rank appends, per global step, the dataset keys of
its share of the batch and a hash of every clip (and label) the loader delivered to
``<run.dir>/samples.rank<R>.jsonl``; a resume cuts the file back to the checkpoint's step.
"""
from __future__ import annotations

import os
import sys

# `python dist_train/train.py` puts dist_train/ first on sys.path, where our subpackages (data,
# models, dist, ...) would shadow installed top-level modules of the same names.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse  # noqa: E402

import dist_train  # noqa: E402,F401  (first: loads zlib before Paddle 2.6 can shadow it, see compat.py)
from dist_train import errors  # noqa: E402
from dist_train.deploy.export import export_at_end  # noqa: E402
from dist_train.training import loop  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", help="YAML file listing what differs from the defaults")
    parser.add_argument("-o", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable), e.g. -o train.lr=0.01")
    parser.add_argument("--resume", default="none",
                        help="auto (newest complete checkpoint of run.dir), none, or a checkpoint path")
    parser.add_argument("--weights", help="initial weights (.pdparams or checkpoint dir); a "
                        "classifier head of another size is left new. Ignored when resuming")
    parser.add_argument("--debug", action="store_true", help="one process, small subset, NaN checks")
    parser.add_argument("--accept-config-change", action="store_true",
                        help="continue a run directory whose saved config differs")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # Input problems: one line naming the file/key and the fix, exit 2; bugs keep their traceback.
    return errors.run_tool("train.py", lambda _: loop.train(args, at_end=export_at_end),
                           rank=loop.current_rank, on_input_error=loop.record_input_error)


if __name__ == "__main__":
    sys.exit(main())
