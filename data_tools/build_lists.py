"""Build clip lists '<Class>/<video> <num_frames> <label>' from official split files.

Writes OUT/<dataset>_train_split<N>.txt and OUT/<dataset>_val_split<N>.txt (the test list of the
split serves as validation, as in the paper).
"""
import argparse
import os
import sys

from dist_train import errors
from dist_train.data.lists import build_split_lists, list_file_names, write_list


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", required=True, help="frame root (<Class>/<video>/img_*.jpg)")
    parser.add_argument("--splits", required=True, help="split folder (ucfTrainTestlist or "
                        "HMDB-51 testTrainMulti_7030_splits)")
    parser.add_argument("--split", type=int, choices=(1, 2, 3), default=1)
    parser.add_argument("--out", required=True, help="folder for the list files")
    parser.add_argument("--dataset", choices=("ucf101", "hmdb51"), default="ucf101")
    parser.add_argument("--template", default="img_{:05d}.jpg")
    parser.add_argument("--allow-missing", action="store_true",
                        help="leave out videos without usable frames and report their count")
    args = parser.parse_args(argv)
    errors.require_path(args.frames, "--frames (the frame root)")
    errors.require_path(args.splits, "--splits (the split folder)")
    errors.ensure_writable_dir(args.out, "--out")
    train, val, classes, problems = build_split_lists(
        args.frames, args.splits, args.split, args.dataset, args.template, args.allow_missing)
    train_name, val_name = list_file_names(args.dataset, args.split)
    write_list(os.path.join(args.out, train_name), train)
    write_list(os.path.join(args.out, val_name), val)
    print(f"{len(classes)} classes; {len(train)} train and {len(val)} val videos -> {args.out}")
    if problems:
        print(f"{len(problems)} video(s) left out (missing or incomplete frames):")
        for problem in problems[:20]:
            print(f"  {problem}")
    return 0


def main(argv=None):
    """Input problems: one 'build_lists.py: error:' line, exit 2 (dist_train/errors.py)."""
    return errors.run_tool("build_lists.py", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
