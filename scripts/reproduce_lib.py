"""Helpers of scripts/reproduce_ucf101.sh (not meant to be run by hand).

    python scripts/reproduce_lib.py stand-in --out PATH.pth
        stand-in Kinetics weights in the released format of resnet-18-kinetics.pth (a dict with
        'state_dict', keys 'module.'-prefixed PyTorch names, no num_batches_tracked): a seeded
        random ResNet-18 (shortcut A, 400 classes), for --smoke. Needs PyTorch, like the real file.
    python scripts/reproduce_lib.py verdict --report REPORT.json --paper 0.844 --tolerance 0.03 [--smoke]
        prints one JSON verdict; exit code 0 when reproduced (or the smoke run is complete), else 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

PAPER_NOTE = ("Hara et al. 2018, ResNet-18 fine-tuned from Kinetics-400 on UCF-101: the mean "
              "video-level top-1 of the 3 splits; this run is split 1")


def stand_in(out: str) -> None:
    import numpy as np
    import paddle
    import torch

    from dist_train.models import build_model

    paddle.seed(0)
    model = build_model("resnet-18", 400, shortcut="A")
    state = {}
    for key, value in model.state_dict().items():
        array = value.numpy()
        prefix, _, leaf = key.rpartition(".")
        leaf = {"_mean": "running_mean", "_variance": "running_var"}.get(leaf, leaf)
        if key == "fc.weight":
            array = array.T  # PyTorch Linear weights are [out, in]
        state[f"module.{prefix}.{leaf}"] = torch.from_numpy(np.ascontiguousarray(array))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save({"epoch": 200, "arch": "resnet-18", "state_dict": state}, out + ".tmp")
    os.replace(out + ".tmp", out)
    print(f"stand-in weights (random, released layout): {out}")


def verdict(report_path: str, paper: float, tolerance: float, smoke: bool) -> int:
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    top1 = float(report["video_top1"])
    result = {"model": "resnet-18", "pretrained": "Kinetics-400", "dataset": "UCF-101", "split": 1,
              "video_top1": round(top1, 4), "paper_video_top1": paper, "paper_note": PAPER_NOTE,
              "tolerance": tolerance, "num_videos": report["num_videos"],
              "protocol": report.get("protocol", "paper"), "report": os.path.abspath(report_path),
              "smoke": smoke}
    if smoke:
        complete = report["num_videos"] > 0 and 0.0 <= top1 <= 1.0
        result["verdict"] = ("smoke run complete (synthetic data, stand-in weights: the number is "
                             "not comparable with the paper)" if complete else "smoke run incomplete")
        ok = complete
    else:
        ok = top1 >= paper - tolerance
        result["verdict"] = "reproduced" if ok else "not reproduced"
    print(json.dumps(result))
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("stand-in")
    p.add_argument("--out", required=True)
    p = sub.add_parser("verdict")
    p.add_argument("--report", required=True)
    p.add_argument("--paper", type=float, required=True)
    p.add_argument("--tolerance", type=float, required=True)
    p.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "stand-in":
        stand_in(args.out)
        return 0
    return verdict(args.report, args.paper, args.tolerance, args.smoke)


if __name__ == "__main__":
    sys.exit(main())
