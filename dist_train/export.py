"""Export a trained model for paddle.inference (preprocessing + network, uint8 input).

    python dist_train/export.py -c CONFIG --weights PATH --out DIR [--format pir|legacy]

Writes DIR/model.json (Paddle 3, pir) or DIR/model.pdmodel (legacy), DIR/model.pdiparams and
DIR/meta.json (class names, clip sampling, normalisation, versions).
"""
from __future__ import annotations

import os
import sys

# `python dist_train/export.py` puts dist_train/ first on sys.path, where our subpackages (data,
# models, dist, ...) would shadow installed top-level modules of the same names.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", help="YAML config of the model (as used for training)")
    parser.add_argument("--weights", required=True, help=".pdparams file or checkpoint directory")
    parser.add_argument("--out", required=True, help="export directory (replaced atomically)")
    parser.add_argument("--format", choices=("auto", "pir", "legacy"),
                        help="program format (default: export.format; auto = pir on Paddle 3, legacy on 2.x)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from dist_train import errors

    return errors.run_tool("export.py", lambda _: export(args))


def export(args) -> int:
    from dist_train import compat
    from dist_train.config import load_config

    cfg = load_config(args.config, args.override)
    if (args.format or cfg["export.format"]) == "legacy":
        compat.request_legacy_program_format()  # before Paddle is imported below
    from dist_train.deploy.export import export_model, read_meta

    try:
        out = export_model(cfg, args.weights, args.out, args.format)
    except ValueError as e:  # a bad format or normalisation in the config or weights' meta
        from dist_train.errors import InputError

        raise InputError(str(e)) from e
    print(f"exported {args.weights} -> {out} ({read_meta(out)['format']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
