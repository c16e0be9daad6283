"""The network and its input layer as a config describes them: what training, evaluation and
export all build (so the three run the same preprocessing and the same network).

``EvalModel`` wraps ``Preprocess`` and the network: uint8 (or float) clips in 0-255 -> logits.

A model *spec* ({"name", "options", "mean", "std", "preset", "num_classes"}) is what a weights
source records about the network it fits (a checkpoint's config, an export's meta.json, a
converted file's .meta.json; read by ``checkpoint/source.py``). ``adopt_model_spec`` makes a
config agree with it: a key the config leaves at its default is taken from the spec, a key the
config sets to another value is a ``PretrainedMismatch`` naming it, so a pretraining run and its
fine-tune (or an evaluation) cannot silently use different networks or normalisations.
"""
from __future__ import annotations

import inspect

import numpy as np
import paddle
import paddle.nn as nn

from dist_train.models import MODELS, build_model, model_options
from dist_train.models.preprocess import NORMALIZATION_PRESETS, Preprocess, normalization_from_preset
from dist_train.models.resnet import default_shortcut

NOT_ADOPTED_OPTIONS = ("data_format",)  # a layout choice: the weights fit either


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


class PretrainedMismatch(ValueError):
    """A config contradicts the network or normalisation its weights source records."""


def _option_default(name: str, option: str):
    default = inspect.signature(MODELS[name]).parameters[option].default
    if default is None and option == "shortcut" and name.startswith("resnet-"):
        return default_shortcut(int(name.split("-")[1]))  # A up to 34 layers, B beyond
    return default


def _effective_options(name: str, options: dict) -> dict:
    """Every adoptable option of model ``name`` with None/absent replaced by its default."""
    return {opt: (options.get(opt) if options.get(opt) is not None else _option_default(name, opt))
            for opt in model_options(name) if opt not in NOT_ADOPTED_OPTIONS}


def preset_of(mean, std) -> str | None:
    """The preset whose mean/std equal these (0-255 units), or None."""
    for name, preset in NORMALIZATION_PRESETS.items():
        if _same_normalization(mean, std, preset["mean"], preset["std"]):
            return name
    return None


def _same_normalization(mean_a, std_a, mean_b, std_b) -> bool:
    if (std_a is None) != (std_b is None):
        return False
    same_mean = np.allclose(mean_a, mean_b, rtol=0, atol=1e-4)
    return bool(same_mean and (std_a is None or np.allclose(std_a, std_b, rtol=0, atol=1e-4)))


def model_spec(cfg) -> dict:
    """The spec of the network and normalisation ``cfg`` describes (see the module docstring)."""
    norm = normalization(cfg)
    options = {k: v for k, v in network_options(cfg).items() if k not in NOT_ADOPTED_OPTIONS}
    preset = cfg["model.normalization"]
    return {"name": cfg["model.name"], "options": options, "mean": norm["mean"],
            "std": norm["std"], "preset": preset if preset != "custom" else preset_of(norm["mean"], norm["std"]),
            "num_classes": cfg["model.num_classes"]}


def _describe_norm(mean, std, preset):
    text = f"mean {[round(float(v), 4) for v in mean]} std " + (
        "none" if std is None else str([round(float(v), 4) for v in std]))
    return f"{preset} ({text})" if preset else text


def adopt_model_spec(cfg, spec: dict, source: str, adopt: bool = True,
                     include_classes: bool = False):
    """``cfg`` made to agree with ``spec`` (recorded by ``source``) -> (new cfg, taken keys).

    Compared: model.name, the network options of that model (null = the family default; the
    layout option data_format is free), the normalisation (as numbers) and, with
    ``include_classes``, model.num_classes. A differing key whose config value is the schema
    default is taken from ``spec`` when ``adopt``; any other difference raises
    PretrainedMismatch listing every such key.
    """
    from dist_train.config import SCHEMA

    changes, taken, problems = {}, [], []

    def differ(key, config_value, source_value, new_value):
        if adopt and config_value == SCHEMA[key].default:
            changes[key] = new_value
            taken.append(f"{key}={new_value!r}")
        else:
            problems.append(f"{key}: the config has {config_value!r}, the weights need {source_value!r}")

    name = spec["name"]
    if name not in MODELS:
        raise PretrainedMismatch(f"{source} records model {name!r}, which this code does not know")
    if cfg["model.name"] != name:
        differ("model.name", cfg["model.name"], name, name)
        if problems:
            raise PretrainedMismatch(_mismatch_text(source, problems))
    wanted = _effective_options(name, spec.get("options") or {})
    have = _effective_options(name, {opt: cfg[f"model.{opt}"] for opt in wanted
                                     if f"model.{opt}" in SCHEMA})
    for opt, value in wanted.items():
        if have[opt] != value and f"model.{opt}" in SCHEMA:
            differ(f"model.{opt}", cfg[f"model.{opt}"], value, value)
    option_keys = {opt for model in MODELS for opt in model_options(model)} - set(wanted)
    for opt in sorted(option_keys - set(NOT_ADOPTED_OPTIONS)):
        if f"model.{opt}" in SCHEMA and cfg[f"model.{opt}"] is not None:
            problems.append(f"model.{opt}: the config sets {cfg[f'model.{opt}']!r}, which does not "
                            f"apply to {name}")
    norm = normalization(cfg)
    if not _same_normalization(norm["mean"], norm["std"], spec["mean"], spec["std"]):
        preset = spec.get("preset") or preset_of(spec["mean"], spec["std"])
        at_default = (cfg["model.normalization"] == SCHEMA["model.normalization"].default
                      and cfg["model.mean"] is None and cfg["model.std"] is None)
        if adopt and at_default:
            if preset in NORMALIZATION_PRESETS:
                changes["model.normalization"] = preset
            else:
                changes.update({"model.normalization": "custom", "model.mean": list(spec["mean"]),
                                "model.std": None if spec["std"] is None else list(spec["std"])})
            taken.append(f"model.normalization={_describe_norm(spec['mean'], spec['std'], preset)}")
        else:
            problems.append("model.normalization: the config has "
                            f"{_describe_norm(norm['mean'], norm['std'], cfg['model.normalization'])}, "
                            f"the weights need {_describe_norm(spec['mean'], spec['std'], preset)}")
    if include_classes and spec.get("num_classes") not in (None, cfg["model.num_classes"]):
        differ("model.num_classes", cfg["model.num_classes"], spec["num_classes"], spec["num_classes"])
    if problems:
        raise PretrainedMismatch(_mismatch_text(source, problems))
    return (cfg.replace(**changes) if changes else cfg), taken


def _mismatch_text(source, problems):
    return (f"the config does not match the network its weights {source} were trained with:\n  "
            + "\n  ".join(problems) + "\n  set these keys to the weights' values, or remove them "
            "from the config so they are taken from the weights")
