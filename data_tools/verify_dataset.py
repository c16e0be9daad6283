"""Check clip lists against frame folders. Every problem (file and list line) goes to a JSON
report (default: verify_report.json beside the first list); one summary line names it. Exit 1
when any problem was found, 2 when the check could not start."""
import argparse
import json
import os
import sys

from dist_train import errors
from dist_train.atomic import atomic_write_text
from dist_train.data.prepare.verify import verify_dataset


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", required=True, help="frame root")
    parser.add_argument("--list", nargs="+", required=True, help="clip list file(s)")
    parser.add_argument("--template", default="img_{:05d}.jpg")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="expected number of classes (default: inferred from the labels)")
    parser.add_argument("--no-decode", action="store_true", help="skip decoding every JPEG")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report", help="report file (default: verify_report.json beside the "
                        "first list)")
    args = parser.parse_args(argv)
    errors.require_path(args.frames, "--frames (the frame root)")
    for path in args.list:
        errors.require_path(path, "--list", "file")
    report_path = os.path.abspath(args.report or os.path.join(
        os.path.dirname(os.path.abspath(args.list[0])), "verify_report.json"))
    errors.ensure_writable_dir(os.path.dirname(report_path), "--report's folder")
    report = verify_dataset(args.frames, args.list, args.template, args.num_classes,
                            not args.no_decode, args.workers)
    try:
        atomic_write_text(report_path, json.dumps(report, indent=1) + "\n")
    except OSError as error:
        raise errors.write_error(error, report_path) from error
    print(f"{report['videos']} videos in {len(report['lists'])} list(s), {report['classes']} "
          f"classes: {len(report['problems'])} problem(s)"
          + (f", each named in {report_path}" if report["problems"] else f"; report {report_path}"))
    return 1 if report["problems"] else 0


def main(argv=None):
    """Input problems: one 'verify_dataset.py: error:' line, exit 2 (dist_train/errors.py)."""
    return errors.run_tool("verify_dataset.py", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
