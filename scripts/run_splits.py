"""The paper's protocol over the official splits: train and evaluate splits 1-3 of UCF-101 or
HMDB-51 with one config, then report the per-split and mean video-level top-1.

    python scripts/run_splits.py -c CONFIG [--splits 1 2 3] [--dry-run] [launch.sh options] [key=value ...]

For split N the config's lists (``..._split1.txt``: data.train_list, data.val_list and
data.test_list when set) become ``..._splitN.txt`` and run.dir becomes ``<run.dir>_splitN``;
training goes through ./launch.sh (every local GPU, --resume auto, so running the command
again continues where it stopped), evaluation through dist_train/evaluate.py on the run's best
checkpoint (eval.protocol of the config; the paper's is ``paper``). Writes
``<run.dir>_splits.json`` and prints it as one JSON line. key=value overrides apply to training
and evaluation; other arguments go to launch.sh. Exit code: 0 done, 2 bad input, else the code
of the step that failed (named on stderr).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLIT_IN_NAME = re.compile(r"split([123])(?=\D*$)")
LIST_KEYS = ("data.train_list", "data.val_list", "data.test_list")


class SplitsError(ValueError):
    """Bad input to the splits protocol; the message names it."""


def parse_args(argv):
    """(config, splits, dry_run, overrides, launch options) from the command line."""
    config, splits, dry_run, overrides, launch_opts = None, [1, 2, 3], False, [], []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-c", "--config"):
            if not args:
                raise SplitsError(f"{arg} needs a config file")
            config = args.pop(0)
        elif arg == "--splits":
            splits = []
            while args and args[0].isdigit():
                splits.append(int(args.pop(0)))
            if not splits or any(s not in (1, 2, 3) for s in splits) or len(set(splits)) != len(splits):
                raise SplitsError("--splits takes distinct split numbers among 1 2 3")
        elif arg == "--dry-run":
            dry_run = True
        elif arg == "-o":
            if not args or "=" not in args[0]:
                raise SplitsError("-o needs key=value")
            overrides.append(args.pop(0))
        elif arg in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        elif "=" in arg and not arg.startswith("-"):
            overrides.append(arg)
        else:
            launch_opts.append(arg)
    if config is None:
        raise SplitsError("give the config: -c CONFIG (e.g. configs/r3d18_kinetics_finetune_ucf101.yaml)")
    return config, splits, dry_run, overrides, launch_opts


def split_overrides(cfg, split: int) -> list[str]:
    """The key=value overrides that turn ``cfg`` (written for one split) into split ``split``."""
    overrides = [f"run.dir={cfg['run.dir'].rstrip('/')}_split{split}"]
    for key in LIST_KEYS:
        path = cfg[key]
        if path is None:
            continue
        name = os.path.basename(path)
        if not SPLIT_IN_NAME.search(name):
            raise SplitsError(f"{key} {path}: the file name names no split (expected e.g. "
                              "ucf101_train_split1.txt from data_tools/build_lists.py)")
        overrides.append(f"{key}={os.path.join(os.path.dirname(path), SPLIT_IN_NAME.sub(f'split{split}', name))}")
    return overrides


def summarize(config: str, reports: dict[int, dict]) -> dict:
    """Per-split and mean video-level numbers of the evaluation reports (split -> report.json)."""
    per_split = {str(s): {"video_top1": r["video_top1"], "video_top5": r["video_top5"],
                          "clip_top1": r["clip_top1"], "num_videos": r["num_videos"],
                          "report": r.get("path")}
                 for s, r in sorted(reports.items())}
    protocols = {r.get("protocol", "paper") for r in reports.values()}
    return {"config": os.path.abspath(config), "splits": per_split, "protocol": sorted(protocols),
            "mean_video_top1": sum(r["video_top1"] for r in reports.values()) / len(reports),
            "mean_video_top5": sum(r["video_top5"] for r in reports.values()) / len(reports)}


def run(cmd: list[str], dry_run: bool) -> None:
    print(" ".join(shlex.quote(c) for c in cmd), flush=True)
    if dry_run:
        return
    code = subprocess.call(cmd, cwd=REPO)
    if code != 0:
        print(f"run_splits.py: step failed (exit code {code}): {cmd[0]} {' '.join(cmd[1:3])} ...",
              file=sys.stderr)
        sys.exit(code)


def main(argv=None) -> int:
    sys.path.insert(0, REPO)  # dist_train, when the package is not installed
    from dist_train.atomic import atomic_write_text
    from dist_train.config import ConfigError, load_config

    try:
        config, splits, dry_run, overrides, launch_opts = parse_args(sys.argv[1:] if argv is None else argv)
        cfg = load_config(config, overrides)
        per_split = {s: split_overrides(cfg, s) for s in splits}
    except (SplitsError, ConfigError) as e:
        print(f"run_splits.py: error: {e}", file=sys.stderr)
        return 2
    python = os.path.join(os.environ.get("DIST_TRAIN_VENV", os.path.join(REPO, ".venv")), "bin", "python")
    config = os.path.abspath(config)
    reports = {}
    for split in splits:
        keys = overrides + per_split[split]
        split_cfg = load_config(config, keys)
        run_dir = split_cfg["run.dir"]
        missing = [split_cfg[k] for k in LIST_KEYS[:2] if not os.path.isfile(split_cfg[k])]
        if missing and not dry_run:
            print(f"run_splits.py: error: split {split}: no list {missing[0]} (build it with "
                  f"data_tools/build_lists.py --split {split})", file=sys.stderr)
            return 2
        run([os.path.join(REPO, "launch.sh"), *launch_opts, config, *keys], dry_run)
        out_dir = os.path.join(run_dir, "eval")
        run([python, os.path.join(REPO, "dist_train", "evaluate.py"), "-c", config,
             *[a for kv in keys for a in ("-o", kv)], "--weights", run_dir, "--out-dir", out_dir],
            dry_run)
        if not dry_run:
            with open(os.path.join(out_dir, "report.json"), encoding="utf-8") as f:
                reports[split] = {**json.load(f), "path": os.path.join(out_dir, "report.json")}
    if dry_run:
        return 0
    summary = summarize(config, reports)
    path = f"{cfg['run.dir'].rstrip('/')}_splits.json"
    atomic_write_text(path, json.dumps(summary, indent=1) + "\n")
    print(json.dumps({**summary, "written": path}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
