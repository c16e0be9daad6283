"""Writes tests/manifests/released_checkpoint_keys.json (run by hand when a twin changes; the
test tests/test_convert.py::test_manifest_* checks file, twins and converter agree).

The manifest is DERIVED, not copied: key names and shapes of the CVPR2018 released checkpoints
as the reference code's module structure makes them (kenshohara/3D-ResNets-PyTorch, branch
CVPR2018: models/resnet.py, models/pre_act_resnet.py at 336bd42ea44da05c770574ef71631f0df2726fae,
models/wide_resnet.py at 82dbf1c9cc09a98e135f5bb2537470eccf33e6f7, models/resnext.py,
models/densenet.py at 04ea658cfb17963c82eb73d8a7e26974acf8f343), computed from the twins in
tests/torch_twins.py (written from that structure) on PyTorch's meta device, with the released
files' known quirks applied.
Usage: python tests/make_converter_manifest.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_twins import released_name, twin  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manifests",
                   "released_checkpoint_keys.json")
# released file -> (model, shortcut); 400 Kinetics classes
RELEASED = {"resnet-18-kinetics.pth": ("resnet-18", "A"),
            "preresnet-200-kinetics.pth": ("preresnet-200", "B"),
            "wideresnet-50-kinetics.pth": ("wideresnet-50", "B"),
            "resnext-101-kinetics.pth": ("resnext-101", "B"),
            "densenet-121-kinetics.pth": ("densenet-121", None)}
QUIRKS = ["every key starts with 'module.' (saved from nn.DataParallel)",
          "no '.num_batches_tracked' entries (saved by PyTorch < 0.4.1)",
          "DenseNet dense layers are named norm.1, conv.1, norm.2, conv.2 (norm1, ... in the "
          "converted Paddle names)",
          "Linear weights are [classes, features] (PyTorch), transposed in Paddle",
          "BatchNorm buffers are running_mean / running_var (Paddle: _mean / _variance)"]


def released_keys(model, shortcut):
    with torch.device("meta"):
        net = twin(model, shortcut or "B", num_classes=400)
    return {"module." + released_name(k): list(v.shape) for k, v in net.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def manifest():
    derived = " ".join(__doc__.split("Usage:")[0].split("\n\n", 1)[1].split())
    return {"derived": derived, "quirks": QUIRKS,
            "files": {name: {"model": model, "shortcut": shortcut, "num_classes": 400,
                             "keys": released_keys(model, shortcut)}
                      for name, (model, shortcut) in RELEASED.items()}}


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    m = manifest()
    lines = ["{", f'"derived": {json.dumps(m["derived"])},', f'"quirks": {json.dumps(m["quirks"])},',
             '"files": {']
    for i, (name, entry) in enumerate(m["files"].items()):
        head = {k: v for k, v in entry.items() if k != "keys"}
        lines.append(f'{json.dumps(name)}: {json.dumps(head)[:-1]}, "keys": {{')
        keys = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in entry["keys"].items()]
        lines.append(",\n".join(keys))
        lines.append("}}" + ("," if i + 1 < len(m["files"]) else ""))
    lines.append("}}")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    assert json.load(open(OUT)) == m
    print(OUT)


if __name__ == "__main__":
    main()
