"""Extract JPEG frames from videos: SRC/<Class>/<video>.avi -> DST/<Class>/<video>/img_00001.jpg.

Resumable (complete videos are skipped), atomic per video, parallel. Damaged videos are listed in
DST/extract_report.json; the exit code is 1 when any video failed.
"""
import argparse
import sys

from dist_train.data.prepare.extract import extract_all


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", required=True, help="video root: one folder per class, or "
                        "videos directly in it (a flat Kinetics copy), or both")
    parser.add_argument("--dst", required=True, help="frame root to write")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--short-side", type=int, default=None,
                        help="resize frames so the short side has this size (default: keep)")
    parser.add_argument("--template", default="img_{:05d}.jpg", help="frame file name template")
    parser.add_argument("--ext", default=".avi", help="video file extension(s), e.g. "
                        "'.mp4,.webm,.mkv' for Kinetics")
    parser.add_argument("--tolerate-missing-frames", type=int, default=0,
                        help="accept videos decoding up to N frames fewer than declared")
    args = parser.parse_args(argv)
    report = extract_all(args.src, args.dst, args.workers, args.short_side, args.template,
                         args.ext, args.tolerate_missing_frames)
    print(f"{report['total']} videos: {report['extracted']} extracted, "
          f"{report['skipped_complete']} already complete, {report['failed_count']} failed "
          f"(report: {args.dst}/extract_report.json)")
    for failure in report["failed"]:
        print(f"  FAILED {failure['error']}")
    return 1 if report["failed_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
