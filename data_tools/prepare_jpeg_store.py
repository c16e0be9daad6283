"""Prepare the compressed clip store (data.source: jpeg_store) from videos or frame folders.

Videos (mp4/webm/avi..., H.264 included) go straight into JPEG shards at a chosen fps, short side
and quality, with no folder of small files in between; frame folders keep their JPEG bytes
unless --short-side asks for a resize. Prints a size estimate first (from a sample of videos)
and checks free space; parallel (--workers); resumable and atomic per shard (re-run the same
command after a crash); progress with ETA. Split one dataset over N machines with --shard K/N
(same --out on shared storage, or one directory each and then --merge --parts DIR...).

Writes prepare_report.json (prepare_report.partKofN.json for a part) listing every failed video
with its error. Exit code: 0 when done, 1 when a video failed (the others are stored),
2 on bad arguments or a bad/inconsistent store (one line naming the file).
"""
import argparse
import sys

from dist_train import errors
from dist_train.data.lists import read_list
from dist_train.data.prepare.jpeg_store import prepare_store
from dist_train.data.prepare.jpeg_store_index import merge_store, parse_part

TOOL = "prepare_jpeg_store.py"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="store directory (use as data.root)")
    parser.add_argument("--src", help="video root, or frame root (<Class>/<video>/img_00001.jpg)")
    parser.add_argument("--source", choices=("video", "frames"), default="video")
    parser.add_argument("--lists", nargs="*", default=None,
                        help="clip lists; prepare only their videos (default: all under --src)")
    parser.add_argument("--fps", type=float, default=None,
                        help="resample videos to this frame rate (default: keep every frame)")
    parser.add_argument("--short-side", type=int, default=None,
                        help="resize so the short side has this size (default: keep)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (1-100)")
    parser.add_argument("--ext", default=".mp4",
                        help="video file extension, dropped from the list paths; '' keeps the "
                             "extension in the paths and takes any of .mp4 .webm .avi .mkv .mov")
    parser.add_argument("--template", default="img_{:05d}.jpg", help="frame file name template")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--videos-per-shard", type=int, default=500,
                        help="videos per shard file (fixed by the first run of a store)")
    parser.add_argument("--shard", default="1/1", metavar="K/N",
                        help="prepare part K of N (N machines split one dataset)")
    parser.add_argument("--estimate-sample", type=int, default=8,
                        help="videos prepared in memory for the size estimate (0: no estimate)")
    parser.add_argument("--max-missing-frames", type=int, default=0,
                        help="frames a video may decode fewer than its container declares")
    parser.add_argument("--no-space-check", action="store_true")
    parser.add_argument("--merge", action="store_true",
                        help="write the one index of a store whose parts are all prepared")
    parser.add_argument("--parts", nargs="*", default=(),
                        help="with --merge: part directories to move into --out first")
    return parser


def _main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.merge:
        report = merge_store(args.out, args.parts)
        failed = report["failed"]
    else:
        if not args.src:
            parser.error("give --src to prepare, or --merge")
        errors.require_path(args.src, "--src (the video or frame root)")
        errors.ensure_writable_dir(args.out, "--out")
        videos = None
        if args.lists:
            videos = sorted({e.video for path in args.lists for e in read_list(path)})
        summary = prepare_store(
            args.source, args.src, args.out, videos, args.fps, args.short_side, args.quality,
            args.template, args.ext, args.workers, args.videos_per_shard,
            parse_part(args.shard), args.estimate_sample, not args.no_space_check,
            args.max_missing_frames)
        failed = summary["failed"]
        print(f"store {summary['store']}: part {summary['part']}, {summary['prepared_now']} "
              f"videos prepared in {summary['seconds']:.1f} s"
              + ("" if summary["merged"] else " (merge when every part has finished)"))
    for item in failed:
        print(f"  FAILED {item['video']}: {item['error']}")
    if failed:
        print(f"{TOOL}: {len(failed)} video(s) failed (listed in the report in {args.out})",
              file=sys.stderr)
    return 1 if failed else 0


def main(argv=None):
    """Input problems (a bad or inconsistent store, a full disk): one line, exit 2."""
    return errors.run_tool(TOOL, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
