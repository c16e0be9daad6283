"""Convert a released 3D-ResNets-PyTorch checkpoint (.pth) into Paddle weights.

Example:
  python data_tools/convert_pretrained.py --src resnet-18-kinetics.pth \
      --dst pretrained/resnet-18-kinetics.pdparams --model resnet-18 --verify
"""
import argparse
import os
import sys

import numpy as np

from dist_train import errors
from dist_train.models import MODELS, NORMALIZATION_PRESETS
from dist_train.models.convert import (StateDictMismatch, convert_checkpoint,
                                       converted_model_logits, meta_path_for)


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="PyTorch checkpoint (.pth)")
    parser.add_argument("--dst", required=True, help="output .pdparams (meta.json beside it)")
    parser.add_argument("--model", required=True, choices=sorted(MODELS), metavar="NAME",
                        help="model name, e.g. resnet-18, resnext-101, densenet-121")
    parser.add_argument("--shortcut", choices=["A", "B"],
                        help="default: what the file holds (A without projection shortcuts)")
    parser.add_argument("--classes", type=int, help="class count of the file's head "
                        "(default: read from the file)")
    parser.add_argument("--norm", choices=sorted(NORMALIZATION_PRESETS),
                        help="normalisation the weights expect (default: from the file name)")
    parser.add_argument("--verify", action="store_true", help="print the logits of the fixed "
                        "seeded input so they can be compared with PyTorch")
    args = parser.parse_args(argv)
    errors.require_path(args.src, "--src (the PyTorch checkpoint)", "file")
    errors.ensure_writable_dir(os.path.dirname(os.path.abspath(args.dst)), "--dst")
    try:
        meta = convert_checkpoint(args.src, args.dst, args.model, args.shortcut, args.classes,
                                  args.norm)
    except (StateDictMismatch, ValueError, RuntimeError) as exc:  # not a checkpoint of --model
        raise errors.InputError(f"{args.src}: {exc}") from exc
    print(f"wrote {meta['dst']} ({meta['converted_keys']} tensors) and {meta_path_for(meta['dst'])}")
    print(f"model {meta['model']}, shortcut {meta['shortcut']}, {meta['num_classes']} classes, "
          f"normalisation mean {meta['normalization']['mean']} std {meta['normalization']['std']}")
    if args.verify:
        logits = converted_model_logits(meta["dst"])
        print("verify input: numpy.random.RandomState(0).standard_normal((1, 3, 16, 112, 112))"
              ".astype('float32'), model in eval mode")
        print("logits[:10]:", np.array2string(logits[:10], precision=6, separator=", "))
        print(f"argmax {int(logits.argmax())}, sum {float(logits.sum()):.6f}")
    return 0


def main(argv=None):
    """Input problems: one 'convert_pretrained.py: error:' line, exit 2 (dist_train/errors.py)."""
    return errors.run_tool("convert_pretrained.py", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
