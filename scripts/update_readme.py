"""Regenerate the generated parts of README.md (the config reference) from the code.

    python scripts/update_readme.py          rewrite README.md in place
    python scripts/update_readme.py --check  exit 1 when README.md is out of date
"""
import argparse
import os
import sys

from dist_train.config import markdown_reference

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def render(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README}: markers {BEGIN} / {END} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{markdown_reference()}{END}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check, do not write")
    args = parser.parse_args(argv)
    with open(README, encoding="utf-8") as f:
        text = f.read()
    wanted = render(text)
    if args.check:
        if wanted != text:
            print("README.md config reference is out of date: run python scripts/update_readme.py")
            return 1
        return 0
    with open(README + ".tmp", "w", encoding="utf-8") as f:
        f.write(wanted)
    os.replace(README + ".tmp", README)
    return 0


if __name__ == "__main__":
    sys.exit(main())
