"""Optimizer, parameter groups, gradient clipping and learning-rate schedules.

Momentum SGD (``paddle.optimizer.Momentum``) with:

- Dampening (the paper's 0.9): Paddle's Momentum has none. PyTorch's
  ``buf = momentum * buf + (1 - dampening) * grad`` equals Paddle's velocity times
  ``(1 - dampening)`` when every gradient is dampened, so it is emulated exactly by a learning
  rate multiplied by ``(1 - dampening)``. The one difference: PyTorch does not dampen the very
  first gradient (``buf = grad`` on step 1); that term decays as ``momentum ** t``, so both reach
  the same steady state (after 50 steps at momentum 0.9 it weighs 0.5% of one gradient).
- Weight decay as L2 on the gradient (coupled, like the reference), per parameter group, with
  an option to exclude BatchNorm parameters and biases (every parameter with ndim <= 1).
- Clipping by the global norm over ALL parameters (``clip_grad_norm``). Paddle's
  ``ClipGradByGlobalNorm`` clips each parameter group separately, so it is not used.
- A learning-rate multiplier for parameters loaded from ``model.pretrained``.

``LRSchedule`` computes the learning rate of every optimizer step from the global step (so a
resumed run needs only its global step and the plateau state): constant, multistep (epochs),
cosine (per step, down to ``sched.min_lr``), plateau on validation loss (patience counted in
validations), all behind an optional linear warmup; ``train.lr`` is scaled linearly by
``train.batch_size / train.lr_base_batch`` when that is set.
"""
from __future__ import annotations

import math

import paddle

from dist_train.models import finetune

PLATEAU_THRESHOLD = 1e-4  # relative improvement that counts (PyTorch's default, mode 'rel')


def scaled_base_lr(cfg) -> float:
    """``train.lr``, linearly scaled to ``train.batch_size`` when ``train.lr_base_batch`` is set;
    times ``(1 - optim.dampening)`` (see the module docstring)."""
    lr = float(cfg["train.lr"])
    if cfg["train.lr_base_batch"]:
        lr *= cfg["train.batch_size"] / cfg["train.lr_base_batch"]
    return lr * (1.0 - float(cfg["optim.dampening"]))


def param_groups(model: paddle.nn.Layer, weight_decay: float, no_decay_bn_bias: bool,
                 pretrained_lr_mult: float = 1.0, has_pretrained: bool = False) -> list[dict]:
    """Groups of trainable parameters keyed by (lr multiplier, weight decay)."""
    if has_pretrained and pretrained_lr_mult != 1.0:
        pretrained, head = finetune.split_pretrained_params(model)
        by_mult = [(float(pretrained_lr_mult), pretrained), (1.0, head)]
    else:
        by_mult = [(1.0, [p for p in model.parameters() if not p.stop_gradient])]
    groups = []
    for mult, params in by_mult:
        decay = [p for p in params if not (no_decay_bn_bias and p.ndim <= 1)]
        no_decay = [p for p in params if no_decay_bn_bias and p.ndim <= 1]
        for members, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if members:
                groups.append({"params": members, "learning_rate": mult,
                               "weight_decay": paddle.regularizer.L2Decay(wd) if wd else 0.0})
    if not groups:
        raise ValueError("the model has no trainable parameters (check model.ft_begin_module "
                         "and model.freeze_bn)")
    return groups


def build_optimizer(cfg, model: paddle.nn.Layer, has_pretrained: bool = False,
                    multi_precision: bool = False):
    """Momentum SGD over ``model``'s trainable parameters; its lr is set every step by the training loop.
    ``has_pretrained``: the weights came from a file, so ``model.pretrained_lr_mult`` applies."""
    groups = param_groups(model, float(cfg["optim.weight_decay"]), cfg["optim.no_decay_bn_bias"],
                          float(cfg["model.pretrained_lr_mult"]), has_pretrained)
    return paddle.optimizer.Momentum(learning_rate=scaled_base_lr(cfg),
                                     momentum=float(cfg["optim.momentum"]), parameters=groups,
                                     use_nesterov=bool(cfg["optim.nesterov"]),
                                     multi_precision=multi_precision)


def trainable_parameters(optimizer) -> list:
    params = []
    for group in optimizer._param_groups:
        params.extend(group["params"] if isinstance(group, dict) else [group])
    return params


def clip_grad_norm(parameters, max_norm: float) -> float:
    """Scale gradients in place so that their global L2 norm is at most ``max_norm``; returns
    the norm before clipping (inf/nan when a gradient overflowed: then nothing is scaled)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    total = paddle.sqrt(paddle.add_n([paddle.sum(paddle.cast(g, "float32") ** 2) for g in grads]))
    norm = float(total)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        with paddle.no_grad():
            for g in grads:
                g.scale_(scale)
    return norm


class LRSchedule:
    """Learning rate per optimizer step; plateau state lives in ``state_dict()``."""

    def __init__(self, name: str, base_lr: float, steps_per_epoch: int, epochs: int,
                 milestones=(), gamma: float = 0.1, patience: int = 10, min_lr: float = 0.0,
                 warmup_epochs: float = 0.0):
        if name not in ("constant", "multistep", "cosine", "plateau"):
            raise ValueError(f"unknown schedule {name!r}")
        if steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1 (is the training list shorter than "
                             "one global batch?)")
        self.name, self.base_lr = name, float(base_lr)
        self.steps_per_epoch, self.epochs = int(steps_per_epoch), int(epochs)
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma, self.patience, self.min_lr = float(gamma), int(patience), float(min_lr)
        self.warmup_steps = int(round(float(warmup_epochs) * self.steps_per_epoch))
        self.reductions, self.best, self.bad_validations = 0, None, 0

    @classmethod
    def from_config(cls, cfg, steps_per_epoch: int) -> "LRSchedule":
        return cls(cfg["sched.name"], scaled_base_lr(cfg), steps_per_epoch, cfg["train.epochs"],
                   cfg["sched.milestones"], cfg["sched.gamma"], cfg["sched.patience"],
                   cfg["sched.min_lr"], cfg["sched.warmup_epochs"])

    def lr_at(self, global_step: int) -> float:
        """Learning rate of optimizer step ``global_step`` (0-based)."""
        epoch = global_step // self.steps_per_epoch
        if self.name == "multistep":
            lr = self.base_lr * self.gamma ** sum(epoch >= m for m in self.milestones)
        elif self.name == "cosine":
            total = max(1, self.epochs * self.steps_per_epoch - self.warmup_steps)
            progress = min(1.0, max(0.0, (global_step - self.warmup_steps) / total))
            lr = self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        elif self.name == "plateau":
            lr = max(self.min_lr, self.base_lr * self.gamma ** self.reductions)
        else:
            lr = self.base_lr
        if global_step < self.warmup_steps:
            lr *= (global_step + 1) / self.warmup_steps
        return lr

    def on_validation(self, val_loss: float) -> bool:
        """Plateau bookkeeping after a validation; True when the lr was reduced. Every rank
        must pass the same (all-reduced) loss so that ranks stay identical."""
        if self.name != "plateau":
            return False
        if self.best is None or val_loss < self.best * (1 - PLATEAU_THRESHOLD):
            self.best, self.bad_validations = float(val_loss), 0
            return False
        self.bad_validations += 1
        if self.bad_validations > self.patience:
            self.reductions += 1
            self.bad_validations = 0
            return True
        return False

    def state_dict(self) -> dict:
        return {"name": self.name, "reductions": self.reductions, "best": self.best,
                "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name", self.name) != self.name:
            raise ValueError(f"checkpoint schedule is {state.get('name')!r}, config says "
                             f"{self.name!r}")
        self.reductions = int(state.get("reductions", 0))
        self.best = state.get("best")
        self.bad_validations = int(state.get("bad_validations", 0))
