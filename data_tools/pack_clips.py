"""Pack frame folders or raw videos into a memory-mappable uint8 clip store (data.source: packed).

Prints the estimated size first (UCF-101 at short side 128 is about 160 GB) and checks free space
(and RAM when the store is in /dev/shm); parallel; resumable (re-runs skip packed videos); atomic
(shards renamed when complete, index rewritten atomically). --verify re-reads every video and
checks sizes and CRC32 checksums. Exit code 1 when a video failed or verification found problems.
"""
import argparse
import sys

from dist_train import errors
from dist_train.data.lists import read_list
from dist_train.data.prepare.pack_store import pack_store, print_summary, verify_store


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", help="frame root (<Class>/<video>/img_00001.jpg) or video root")
    parser.add_argument("--source", choices=("frames", "video"), default="frames")
    parser.add_argument("--out", required=True, help="store directory (use as data.root)")
    parser.add_argument("--short-side", type=int, default=None,
                        help="resize so the short side has this size (default: keep; keep it "
                             "for bit-exact equality with the source reader; data.train_crop "
                             "random needs >= data.crop_size, e.g. 128 for 112 crops)")
    parser.add_argument("--lists", nargs="*", default=None,
                        help="clip lists; pack only their videos (default: all under --src)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-gb", type=float, default=1.0, help="target shard size")
    parser.add_argument("--template", default="img_{:05d}.jpg", help="frame file name template")
    parser.add_argument("--ext", default=".avi", help="video file extension")
    parser.add_argument("--no-space-check", action="store_true")
    parser.add_argument("--verify", action="store_true",
                        help="re-read the store and check sizes and checksums (after packing, "
                             "or alone when --src is not given)")
    args = parser.parse_args(argv)
    status = 0
    if args.src:
        errors.require_path(args.src, "--src (the frame or video root)")
        errors.ensure_writable_dir(args.out, "--out")
        videos = None
        if args.lists:
            videos = sorted({e.video for path in args.lists for e in read_list(path)})
        summary = pack_store(args.source, args.src, args.out, args.short_side, args.template,
                             args.ext, videos, args.workers, args.shard_gb,
                             not args.no_space_check)
        print_summary(summary)
        status = 1 if summary["failed"] else 0
    elif args.verify:
        errors.require_path(args.out, "--out (the store to verify)")
    else:
        parser.error("give --src to pack, or --verify to check an existing store")
    if args.verify:
        problems = verify_store(args.out, log=print)
        for problem in problems:
            print(f"  PROBLEM {problem}")
        status = status or (1 if problems else 0)
    return status


def main(argv=None):
    """Input problems: one 'pack_clips.py: error:' line, exit 2 (dist_train/errors.py)."""
    return errors.run_tool("pack_clips.py", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
