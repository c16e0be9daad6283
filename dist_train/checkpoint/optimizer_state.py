"""Optimizer state across AMP levels: a Momentum state saved under fp32, O1 or O2 (float16 or
bfloat16 parameters with float32 master weights) loads into an optimizer of any of them.

Paddle keys the velocity by a generated name: ``<param>_velocity_0`` for a float32 parameter,
``<param>_fp32_master_0_velocity_0`` (the velocity of the master weight) for a low-precision one
under O2, whose master weights sit in a ``master_weights`` dict keyed by parameter name.
``Optimizer.set_state_dict`` keeps that dict as loaded (numpy arrays, on which Momentum then
fails looking up ``.name``) and looks each accumulator up by the name THIS set-up would generate,
so a state saved under another level fails on the names. Here a saved state is read into one
entry per structured parameter name (its velocity, and its master weight when it had one);
the optimizer's accumulators are then created by Paddle itself (``_create_accumulators``,
named as its next step would name them) and filled in place, in their own dtypes.

A master weight is the exact float32 value of its parameter (the low-precision parameter is
its rounding), so when the checkpoint has one, the parameter is set from it: an O2 checkpoint
resumed in fp32 continues from the master weights, and one resumed under O2 gets parameters
equal to the saved ones.
"""
from __future__ import annotations

import re

import numpy as np
import paddle

from dist_train.checkpoint.layout import CheckpointError

LR_SCHEDULER_KEY, MASTER_WEIGHTS_KEY = "LR_Scheduler", "master_weights"
VELOCITY = "velocity"
_MASTER_INFIX = "_fp32_master"


def saved_entries(opt_state: dict, saved_names: dict, source: str) -> dict:
    """{structured name: {"velocity": array or None, "master": array or None}} of a saved
    optimizer state; ``saved_names`` maps structured names to the saving process's Paddle
    names (state.json's param_names). An entry belonging to no parameter raises."""
    by_paddle_name = {paddle_name: name for name, paddle_name in saved_names.items()}
    entries = {name: {"velocity": None, "master": None} for name in saved_names}
    masters = opt_state.get(MASTER_WEIGHTS_KEY) or {}
    for paddle_name, value in masters.items():
        if paddle_name not in by_paddle_name:
            raise CheckpointError(f"{source}: master weight '{paddle_name}' belongs to no parameter "
                                  "recorded in state.json")
        entries[by_paddle_name[paddle_name]]["master"] = np.asarray(value)
    pattern = re.compile(rf"^(.*?)(?:{_MASTER_INFIX}_\d+)?_{VELOCITY}_\d+$")
    for key, value in opt_state.items():
        if key in (LR_SCHEDULER_KEY, MASTER_WEIGHTS_KEY):
            continue
        match = pattern.match(key)
        owner = by_paddle_name.get(match.group(1)) if match else None
        if owner is None:
            raise CheckpointError(f"{source}: optimizer entry '{key}' belongs to no parameter "
                                  "recorded in state.json (not a Momentum velocity?)")
        entries[owner]["velocity"] = np.asarray(value)
    return entries


def create_accumulators(optimizer) -> None:
    """Let Paddle create every accumulator (and master weight) its next step would create, with
    the names and dtypes it would give them. Idempotent."""
    from paddle.base import framework
    from paddle.base.layer_helper import LayerHelper

    if getattr(optimizer, "helper", None) is None:  # what Optimizer's own first step sets
        optimizer.helper = LayerHelper(optimizer.__class__.__name__)
    params = [p for p in _parameters(optimizer) if not p.stop_gradient]
    optimizer._create_accumulators(framework.default_main_program().global_block(), params)


def _parameters(optimizer) -> list:
    params = []
    for group in optimizer._param_groups:
        params.extend(group["params"] if isinstance(group, dict) else [group])
    return params


def _set(target: paddle.Tensor, value: np.ndarray) -> None:
    """``target[...] = value`` converted to target's dtype (bfloat16 through a Paddle cast)."""
    value = np.ascontiguousarray(value, dtype=np.float32)
    if list(value.shape) != list(target.shape):
        raise CheckpointError(f"optimizer state of shape {list(value.shape)} for "
                              f"'{target.name}' of shape {list(target.shape)}")
    if target.dtype == paddle.float32:
        target.set_value(value)
    else:
        target.set_value(paddle.cast(paddle.to_tensor(value), target.dtype))


def load_optimizer_state(optimizer, model, opt_state: dict, saved_names: dict, weights: dict,
                         source: str) -> None:
    """Restore a saved optimizer state (any AMP level) into ``optimizer`` (any AMP level).

    ``weights``: the checkpoint's model state dict (float32 arrays, structured names), already
    loaded into ``model``; a parameter with a saved master weight is set from the master, a new
    master weight (fp32/O1 checkpoint, O2 here) from ``weights``. The LR scheduler state, if any,
    goes to the optimizer's scheduler."""
    entries = saved_entries(opt_state, saved_names, source)
    current = dict(model.named_parameters())
    missing = sorted(set(saved_names) - set(current))
    if missing:
        raise CheckpointError(f"{source}: parameters {missing[:10]} of the checkpoint are not in "
                              "this model (another architecture or options?)")
    create_accumulators(optimizer)
    optimizer._accumulators_holder = {}
    key = optimizer._velocity_acc_str
    velocities = optimizer._accumulators.get(f"{optimizer._name}_{key}" if optimizer._name else key, {})
    owned = {id(p) for p in _parameters(optimizer)}
    for name, param in current.items():
        if id(param) not in owned or param.stop_gradient:
            continue
        entry = entries.get(name, {"velocity": None, "master": None})
        master = optimizer._master_weights.get(param.name)
        if entry["master"] is not None:
            _set(param, entry["master"])
            if master is not None:
                _set(master, entry["master"])
        elif master is not None:  # fp32/O1 checkpoint into O2: the saved weight is exact
            _set(master, weights[name])
        velocity = velocities.get((master if master is not None else param).name)
        if velocity is not None and entry["velocity"] is not None:
            _set(velocity, entry["velocity"])
    scheduler = getattr(optimizer, "_learning_rate", None)
    if LR_SCHEDULER_KEY in opt_state and isinstance(scheduler, paddle.optimizer.lr.LRScheduler):
        scheduler.set_state_dict(opt_state[LR_SCHEDULER_KEY])
