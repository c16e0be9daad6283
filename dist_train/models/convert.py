"""Convert the released PyTorch checkpoints of 3D-ResNets-PyTorch into Paddle state dicts.

Handles the CVPR2018 files (``module.`` or ``module.module.`` prefixes, no
``num_batches_tracked``, DenseNet's dotted ``norm.1``/``conv.1`` names, pre-1.6 non-zip
archives) and the 2020 ``r3d*_K_200ep.pth`` files. PyTorch is imported only to read the
file, with ``weights_only=True`` so the file cannot run code.

Output: ``<dst>.pdparams`` (paddle.save of numpy arrays) and ``<dst stem>.meta.json`` with the
model, shortcut, class count and the normalisation the weights expect.
"""
import json
import os
import re

import numpy as np
import paddle
import paddle.nn as nn

from dist_train.models import build_model, model_options
from dist_train.models.finetune import compare_state_dict, head_name, mismatch_message, StateDictMismatch
from dist_train.models.preprocess import normalization_from_preset

# 2020 weights were trained on [0, 1] pixels with the Kinetics mean/std; the CVPR2018 ones on
# [0, 255] pixels minus the ActivityNet mean.
KINETICS_2020_FILE = re.compile(r"^r(2p1)?3?d\d+_.*\.pth$")
CVPR2018_FILE = re.compile(r"^(resnet|preresnet|wideresnet|resnext|densenet)-\d+-.*\.pth$")
DENSE_OLD_NAME = re.compile(r"\.(norm|relu|conv)\.(\d+)\.")
BN_BUFFER_NAMES = {"running_mean": "_mean", "running_var": "_variance"}


def guess_normalization(src_path):
    """Preset name the weights in ``src_path`` expect, judged by the released file names."""
    base = os.path.basename(str(src_path))
    if KINETICS_2020_FILE.match(base):
        return "kinetics"
    if CVPR2018_FILE.match(base):
        return "activitynet"
    raise ValueError(f"{src_path}: cannot tell which normalisation these weights expect from "
                     "the file name; pass --norm activitynet (CVPR2018 files), kinetics "
                     "(2020 r3d*_K_200ep files) or imagenet")


def read_torch_state_dict(src_path):
    """The state dict of a PyTorch checkpoint as {name: float32 numpy array}, prefixes kept."""
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError("reading .pth files needs PyTorch (CPU build is enough): "
                           "pip install torch --index-url https://download.pytorch.org/whl/cpu"
                           ) from exc
    try:
        obj = torch.load(str(src_path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{src_path}: cannot be read as a weights-only PyTorch checkpoint "
                         f"({exc})") from exc
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        keys = list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{src_path}: expected a state dict or a dict with 'state_dict', "
                         f"found {keys}")
    return {k: v.detach().cpu().numpy() for k, v in obj.items()}


def strip_module_prefix(state_dict):
    """Remove DataParallel's ``module.`` prefixes (the old files have one or two)."""
    out = {}
    for key, value in state_dict.items():
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def rename_torch_keys(state_dict):
    """PyTorch names -> Paddle names: BN buffers, DenseNet's ``norm.1`` style; drops
    ``num_batches_tracked`` (Paddle BN has no counter)."""
    out = {}
    for key, value in strip_module_prefix(state_dict).items():
        if key.endswith(".num_batches_tracked"):
            continue
        key = DENSE_OLD_NAME.sub(lambda m: f".{m.group(1)}{m.group(2)}.", key)
        prefix, _, leaf = key.rpartition(".")
        out[f"{prefix}.{BN_BUFFER_NAMES.get(leaf, leaf)}"] = value
    return out


def infer_shortcut(state_dict):
    """'B' when the (renamed) state dict holds projection shortcuts, else 'A'."""
    return "B" if any(re.match(r"layer\d+\.\d+\.downsample\.0\.weight$", k)
                      for k in state_dict) else "A"


def to_paddle_layout(state_dict, model):
    """Transpose Linear weights ([out, in] in PyTorch, [in, out] in Paddle); float32 arrays."""
    linear_weights = {f"{name}.weight" for name, layer in model.named_sublayers()
                      if isinstance(layer, nn.Linear)}
    return {k: np.ascontiguousarray(v.T if k in linear_weights else v, dtype=np.float32)
            for k, v in state_dict.items()}


def meta_path_for(dst):
    return (dst[:-len(".pdparams")] if dst.endswith(".pdparams") else dst) + ".meta.json"


def _write_atomic(dst, write):
    tmp = f"{dst}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def convert_checkpoint(src, dst, model_name, shortcut=None, num_classes=None, norm=None,
                       **options):
    """Convert ``src`` (.pth) for ``build_model(model_name, ...)`` and write ``dst``.

    shortcut and num_classes default to what the file holds; norm (a preset name) defaults
    to the one the released file expects. Raises StateDictMismatch listing missing,
    unexpected and mis-shaped keys when the file does not fit. Returns the meta dict.
    """
    src, dst = str(src), str(dst)
    if not dst.endswith(".pdparams"):
        dst += ".pdparams"
    normalization = normalization_from_preset(norm or guess_normalization(src))
    state = rename_torch_keys(read_torch_state_dict(src))
    if "shortcut" in model_options(model_name):
        options["shortcut"] = shortcut or infer_shortcut(state)
    elif shortcut is not None:
        raise ValueError(f"--shortcut does not apply to {model_name}")
    if num_classes is None:
        head_weights = [v for k, v in state.items() if re.match(r"(fc|classifier)\.weight$", k)]
        if not head_weights:
            raise ValueError(f"{src}: no fc/classifier weight found; pass --classes")
        num_classes = int(head_weights[0].shape[0])
    with paddle.LazyGuard():  # only names and shapes are needed: skip initialisation
        model = build_model(model_name, num_classes, **options)
    state = to_paddle_layout(state, model)
    missing, unexpected, mis_shaped = compare_state_dict(model, state)
    if missing or unexpected or mis_shaped:
        raise StateDictMismatch(mismatch_message(missing, unexpected, mis_shaped,
                                                 f"{src} (as {model_name}, {options})"))
    meta = {"model": model_name, "shortcut": options.get("shortcut"), "num_classes": num_classes,
            "options": {k: v for k, v in options.items() if k != "shortcut"},
            "head": head_name(model), "normalization": normalization,
            "source": os.path.abspath(src), "converted_keys": len(state)}
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    _write_atomic(dst, lambda tmp: paddle.save(state, tmp))
    _write_atomic(meta_path_for(dst), lambda tmp: _write_json(meta, tmp))
    meta["dst"] = dst
    return meta


def _write_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def verification_input(frames=16, size=112, seed=0):
    """The fixed input --verify feeds: numpy RandomState(seed).standard_normal([1,3,T,S,S])."""
    return np.random.RandomState(seed).standard_normal((1, 3, frames, size, size)).astype(
        np.float32)


def converted_model_logits(dst, frames=16, size=112, seed=0):
    """Eval-mode logits of the converted weights in ``dst`` on ``verification_input``."""
    from dist_train.safeload import restricted_load

    with open(meta_path_for(dst)) as f:
        meta = json.load(f)
    options = dict(meta.get("options", {}))
    if meta.get("shortcut") is not None:
        options["shortcut"] = meta["shortcut"]
    model = build_model(meta["model"], meta["num_classes"], **options)
    model.set_state_dict(restricted_load(dst))
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(verification_input(frames, size, seed))).numpy()[0]
