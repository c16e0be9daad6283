"""The network and its input layer as a config describes them: what training, evaluation and
export all build (so the three run the same preprocessing and the same network).

``EvalModel`` wraps ``Preprocess`` and the network: uint8 (or float) clips in 0-255 -> logits.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn

from dist_train.models import build_model, model_options
from dist_train.models.preprocess import Preprocess, normalization_from_preset


class EvalModel(nn.Layer):
    """uint8 (or float) clips [N, 3, T, H, W] in 0-255 -> logits [N, num_classes]."""

    def __init__(self, preprocess: Preprocess, network: nn.Layer):
        super().__init__()
        self.preprocess = preprocess
        self.network = network

    def forward(self, x):
        # Cast first: the legacy static graph cannot take the shape of a uint8 tensor, which
        # Preprocess checks; the float copy of 0-255 integers is exact.
        return self.network(self.preprocess(paddle.cast(x, "float32")))


def network_options(cfg) -> dict:
    """The ``build_model`` options set in the config (null keys keep the family default)."""
    options = {}
    for name in model_options(cfg["model.name"]):
        value = cfg[f"model.{name}"]
        if value is not None:
            options[name] = value
    return options


def normalization(cfg) -> dict:
    """{"mean": [...], "std": [...] or None} in 0-255 units from model.normalization(/mean/std)."""
    if cfg["model.normalization"] != "custom":
        return normalization_from_preset(cfg["model.normalization"])
    if cfg["model.mean"] is None:
        raise ValueError("model.normalization is 'custom' but model.mean is not set "
                         "(give 3 values in 0-255 units, e.g. -o 'model.mean=[114.8,107.7,99.5]')")
    return {"mean": list(cfg["model.mean"]), "std": cfg["model.std"]}


def build_eval_model(cfg) -> EvalModel:
    """Preprocess + a fresh network with plain BatchNorm, in eval mode (weights not loaded)."""
    norm = normalization(cfg)
    network = build_model(cfg["model.name"], cfg["model.num_classes"], **network_options(cfg))
    model = EvalModel(Preprocess(norm["mean"], norm["std"], cfg["model.data_format"]), network)
    model.eval()
    return model
