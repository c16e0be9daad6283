"""Write the synthetic motion dataset in the UCF-101 layout (see dist_train/data/prepare/synthetic.py).

The defaults write the demo dataset of configs/demo.yaml (4 classes x 300 videos, 64x80).
"""
import argparse
import sys
import time

from dist_train import errors
from dist_train.data.prepare.synthetic import make_synthetic


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="output directory (UCF-101/, "
                        "ucfTrainTestlist/, heldout/, synthetic.json)")
    parser.add_argument("--classes", type=int, default=4, help="number of classes (even, <= 12)")
    parser.add_argument("--videos-per-class", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=80)
    parser.add_argument("--min-frames", type=int, default=12)
    parser.add_argument("--max-frames", type=int, default=24)
    parser.add_argument("--fourcc", default="XVID", help="AVI codec: XVID (like UCF-101) or MJPG")
    args = parser.parse_args(argv)
    errors.ensure_writable_dir(args.out, "--out")
    start = time.time()
    manifest = make_synthetic(args.out, args.classes, args.videos_per_class, args.seed,
                              args.height, args.width, args.min_frames, args.max_frames,
                              args.fourcc)
    print(f"wrote {len(manifest['classes'])} classes, {manifest['num_train']} train + "
          f"{manifest['num_test']} test videos (+{len(manifest['classes'])} held out in "
          f"{args.out}/heldout) in {time.time() - start:.1f}s")
    return 0


def main(argv=None):
    """Input problems: one 'make_synthetic.py: error:' line, exit 2 (dist_train/errors.py)."""
    return errors.run_tool("make_synthetic.py", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
