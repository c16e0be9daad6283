"""Fine-tuning helpers: load pretrained weights with a new head, train from a named module,
split parameters for a pretrained-lr multiplier (the groups are built by
training/optim.py's ``param_groups``), and optionally freeze batch norm.

State dicts here use Paddle names and layouts (as written by the converter or paddle.save).
"""
import numpy as np
import paddle
import paddle.nn as nn

from dist_train.errors import InputError

BN_TYPES = (nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.SyncBatchNorm)


class StateDictMismatch(InputError, ValueError):
    """A state dict does not fit a model; the message lists every offending key."""


def head_name(model):
    """Name of the classifier module ('fc' for ResNets, 'classifier' for DenseNets)."""
    name = getattr(model, "head_name", None)
    if name is None:
        raise ValueError(f"{type(model).__name__} has no head_name attribute; "
                         "build it with dist_train.models.build_model")
    return name


def _is_head_key(key, head):
    return key == head or key.startswith(head + ".")


def _as_array(value):
    return value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)


def compare_state_dict(model, state_dict, skip=None):
    """(missing, unexpected, mis_shaped) keys of ``state_dict`` against ``model``.

    mis_shaped entries are ``(key, file_shape, model_shape)``; keys for which ``skip(key)`` is
    true are ignored.
    """
    skip = skip or (lambda key: False)
    expected = {k: list(v.shape) for k, v in model.state_dict().items() if not skip(k)}
    missing = [k for k in expected if k not in state_dict]
    unexpected, mis_shaped = [], []
    for key, value in state_dict.items():
        if skip(key):
            continue
        if key not in expected:
            unexpected.append(key)
        elif list(np.shape(_as_array(value))) != expected[key]:
            mis_shaped.append((key, list(np.shape(_as_array(value))), expected[key]))
    return missing, unexpected, mis_shaped


def mismatch_message(missing, unexpected, mis_shaped, source="state dict"):
    lines = [f"{source} does not fit the model (wrong model name, shortcut or options?):"]
    if missing:
        lines.append(f"  missing ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): {', '.join(unexpected)}")
    for key, got, want in mis_shaped:
        lines.append(f"  mis-shaped: {key}: file {got} vs model {want}")
    return "\n".join(lines)


def load_pretrained(model, state_dict, source="state dict"):
    """Load ``state_dict`` into ``model``; a head of another class count is left new.

    Returns {"loaded": [keys], "skipped_head": [keys], "new_head": bool}. Any other missing,
    unexpected or mis-shaped key raises StateDictMismatch listing all of them.
    """
    head = head_name(model)
    model_state = model.state_dict()
    head_keys = [k for k in state_dict if _is_head_key(k, head)]
    new_head = any(k not in model_state or
                   list(np.shape(_as_array(state_dict[k]))) != list(model_state[k].shape)
                   for k in head_keys) or not head_keys
    skip = (lambda k: _is_head_key(k, head)) if new_head else (lambda k: False)
    missing, unexpected, mis_shaped = compare_state_dict(model, state_dict, skip)
    if missing or unexpected or mis_shaped:
        raise StateDictMismatch(mismatch_message(missing, unexpected, mis_shaped, source))
    loaded = {k: _as_array(v) for k, v in state_dict.items() if not skip(k)}
    model.set_state_dict(loaded)
    return {"loaded": sorted(loaded), "skipped_head": sorted(head_keys) if new_head else [],
            "new_head": new_head}


def set_ft_begin_module(model, module_name):
    """Train only from ``module_name`` on (e.g. 'layer4'): parameters registered before the
    first parameter of that module get stop_gradient=True. Returns the trainable parameters.
    An empty name trains everything."""
    params = list(model.named_parameters())
    if not module_name:
        return [p for _, p in params if not p.stop_gradient]
    starts = [i for i, (name, _) in enumerate(params)
              if name == module_name or name.startswith(module_name + ".")]
    if not starts:
        children = ", ".join(name for name, _ in model.named_children())
        raise ValueError(f"ft_begin_module {module_name!r} names no module with parameters; "
                         f"top-level modules are: {children}")
    for _, param in params[:starts[0]]:
        param.stop_gradient = True
    return [p for _, p in params[starts[0]:] if not p.stop_gradient]


def split_pretrained_params(model):
    """(pretrained, head) lists of trainable parameters, for a pretrained-lr multiplier."""
    head = head_name(model)
    pretrained, new = [], []
    for name, param in model.named_parameters():
        if not param.stop_gradient:
            (new if _is_head_key(name, head) else pretrained).append(param)
    return pretrained, new


def freeze_bn(model):
    """Freeze every batch norm: running statistics used and never updated, even in train
    mode (``use_global_stats``), and affine parameters excluded from training. Returns the
    number of frozen layers."""
    frozen = 0
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, BN_TYPES):
            layer._use_global_stats = True  # survives model.train(), unlike layer.eval()
            for param in layer.parameters(include_sublayers=False):
                param.stop_gradient = True
            frozen += 1
    return frozen
