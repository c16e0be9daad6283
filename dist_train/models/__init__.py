"""Model zoo of Hara et al. (CVPR 2018): build_model(name, num_classes, **options).

Models take float32 normalised input [N, 3, T, H, W] (or [N, T, H, W, 3] when built with
``data_format="NDHWC"``) and return logits; ``Preprocess`` turns uint8 clips into that input.
"""
import functools
import inspect

from dist_train.models.densenet import DENSENET_BLOCKS, build_densenet
from dist_train.models.preprocess import NORMALIZATION_PRESETS, Preprocess
from dist_train.models.preresnet import build_preresnet
from dist_train.models.resnet import RESNET_DEPTHS, build_resnet, build_resnext, build_wideresnet

MODELS = {}
for _depth in RESNET_DEPTHS:
    MODELS[f"resnet-{_depth}"] = functools.partial(build_resnet, _depth)
    MODELS[f"preresnet-{_depth}"] = functools.partial(build_preresnet, _depth)
MODELS["wideresnet-50"] = functools.partial(build_wideresnet, 50)
for _depth in (50, 101, 152):
    MODELS[f"resnext-{_depth}"] = functools.partial(build_resnext, _depth)
for _depth in DENSENET_BLOCKS:
    MODELS[f"densenet-{_depth}"] = functools.partial(build_densenet, _depth)


def model_options(name):
    """Option names ``build_model`` accepts for model ``name``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    params = inspect.signature(MODELS[name]).parameters
    return [p for p in params if p != "num_classes"]


def build_model(name, num_classes, **options):
    """Build model ``name`` with ``num_classes`` outputs.

    Options (only where they apply): shortcut ('A'|'B'; resnet/preresnet/wideresnet/resnext),
    conv1_t_size, conv1_t_stride, no_max_pool, widen_factor (resnet/preresnet), wide_k
    (wideresnet), cardinality (resnext), width_mult (all; tiny models), data_format (all).
    """
    valid = model_options(name)
    for key in options:
        if key not in valid:
            raise ValueError(f"option {key!r} does not apply to {name}; "
                             f"its options are: {', '.join(valid)}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return MODELS[name](num_classes, **options)


__all__ = ["MODELS", "build_model", "model_options", "Preprocess", "NORMALIZATION_PRESETS"]
