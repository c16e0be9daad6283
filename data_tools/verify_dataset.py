"""Check clip lists against frame folders; exit code 1 and a report naming each bad file."""
import argparse
import sys

from dist_train import errors
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
    args = parser.parse_args(argv)
    errors.require_path(args.frames, "--frames (the frame root)")
    for path in args.list:
        errors.require_path(path, "--list", "file")
    report = verify_dataset(args.frames, args.list, args.template, args.num_classes,
                            not args.no_decode, args.workers)
    for problem in report["problems"]:
        print(f"BAD {problem}")
    print(f"{report['videos']} videos in {len(report['lists'])} list(s), {report['classes']} "
          f"classes: {len(report['problems'])} problem(s)")
    return 1 if report["problems"] else 0


def main(argv=None):
    """Input problems: one 'verify_dataset.py: error:' line, exit 2 (dist_train/errors.py)."""
    return errors.run_tool("verify_dataset.py", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
