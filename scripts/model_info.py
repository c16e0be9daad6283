"""Print a model's trainable parameters, GMACs per clip (counted by forward hooks) and the
output shape of every stage.

Example: python scripts/model_info.py --model resnet-18 --shortcut B --classes 101
"""
import argparse
import json
import sys

from dist_train import errors
from dist_train.models import MODELS, model_options
from dist_train.models.info import describe_model


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=sorted(MODELS), metavar="NAME")
    parser.add_argument("--shortcut", choices=["A", "B"])
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    options = {}
    if args.shortcut is not None:
        if "shortcut" not in model_options(args.model):
            parser.error(f"--shortcut does not apply to {args.model}")
        options["shortcut"] = args.shortcut
    info = describe_model(args.model, args.classes, args.frames, args.size, **options)
    if args.json:
        print(json.dumps({"model": args.model, "num_classes": args.classes,
                          "input": [3, args.frames, args.size, args.size], **info}))
        return 0
    print(f"{args.model} ({args.classes} classes), input 3x{args.frames}x{args.size}x{args.size}")
    print(f"trainable parameters: {info['params']:,}")
    print(f"GMACs per clip:       {info['gmacs']:.3f}")
    for stage in info["stages"]:
        print(f"  {stage['name']:<24} {'x'.join(str(v) for v in stage['shape'])}")
    return 0


def main(argv=None):
    """Input problems: one 'model_info.py: error:' line, exit 2 (dist_train/errors.py)."""
    return errors.run_tool("model_info.py", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
