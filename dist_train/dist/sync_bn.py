"""Synchronised batch norm across data-parallel ranks, and the conversion back to plain BN.

- GPU: ``paddle.nn.SyncBatchNorm`` (its kernel exists only on GPU).
- CPU with several ranks: ``CpuSyncBatchNorm``, a twin built from Paddle's fused batch-norm
  kernels and one ``paddle.autograd.PyLayer``. Forward: each rank's exact mean and variance
  (fused kernel), ONE all-reduce of ``[n, n*mean, n*(var + mean^2)]`` in float64 (so shards of
  different sizes work), then the inference-form kernel with the global mean and biased
  variance. Backward: the fused gradient kernel gives ``w*inv_std*dy`` and this rank's
  ``[sum dy, sum dy*xhat]``; ONE all-reduce of those, and the rest of the exact gradient of the
  global batch's BN is one more fused pass (see ``_GlobalBatchGradient``). No broadcasting
  elementwise ops (Paddle's CPU broadcast kernels cost ~5x a fused pass), and the [C]-sized
  arithmetic runs in numpy (a Paddle op dispatch costs ~15 us), on views of Paddle's memory
  where it writes. The [C] tensors and views are made once per layer and reused (see
  ``CpuSyncBatchNorm._scratch_statistics`` for when they are not). A pure-numpy twin is slower:
  numpy's per-channel reductions and float64 dot products lose to the fused kernels.
  The collectives go through shared memory when every rank is on this host
  (``host_allreduce.py``), else through gloo.
  Weight and bias gradients stay local: the data-parallel average (``host_allreduce`` on one
  CPU host, else DataParallel) treats them like every other gradient, and each rank's loss is
  the mean over its own equal share, so the result equals one rank holding the whole batch.
- Running statistics follow Paddle's convention (checked against ``nn.BatchNorm3D``):
  ``running = momentum * running + (1 - momentum) * batch`` with the *biased* batch variance.
- Eval mode (and frozen BN, ``_use_global_stats``) uses the running statistics and makes no
  collective call, so ranks may run different numbers of evaluation batches.
- State-dict keys are those of plain BN: the converted layers share the original parameters
  (weight, bias, _mean, _variance), and ``revert_sync_batchnorm`` gives plain BN back for
  evaluation and export.
"""
from __future__ import annotations

import math
import weakref

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer

from dist_train.compat import numpy_view
from dist_train.dist.host_allreduce import sum_over_ranks_
from dist_train.logs import log_once

PLAIN_BN_TYPES = (nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D)


def _as_float32(x: paddle.Tensor) -> paddle.Tensor:
    return x if x.dtype == paddle.float32 else paddle.cast(x, "float32")


def _global_moments(x: paddle.Tensor, mean: paddle.Tensor, var: paddle.Tensor,
                    mean_view: np.ndarray, var_view: np.ndarray, data_format: str, epsilon: float):
    """Per-channel mean and biased variance over every rank's batch, written into ``mean`` and
    ``var`` (the kernel's scratch statistics; ``*_view`` alias them) and returned as float64
    numpy [C], with the global count per channel.

    Each rank gets its exact two-pass mean and variance from Paddle's fused batch-norm kernel
    (training mode on the scratch statistics with momentum 0 writes the batch mean and biased
    variance into them), then ONE all-reduce of [n, n*mean, n*(var + mean^2)] in float64
    combines the ranks: float64 keeps the between-rank term exact, where summing x^2 over a
    whole activation in float32 would lose digits. The [C]-sized arithmetic runs in numpy.
    """
    channels = mean_view.shape[0]
    mean_view[:] = 0.0  # the kernel writes 0 * old + batch: an old NaN would stay
    var_view[:] = 0.0
    F.batch_norm(x, mean, var, training=True, momentum=0.0, epsilon=epsilon,
                 data_format=data_format)
    count = float(math.prod(x.shape) // channels)  # Tensor.size costs a Paddle op
    mean64, var64 = mean_view.astype(np.float64), var_view.astype(np.float64)
    total = sum_over_ranks_(np.concatenate([[count], mean64 * count,
                                            (var64 + mean64 * mean64) * count]))
    global_count = float(total[0])
    global_mean = total[1:channels + 1] / global_count
    global_var = np.maximum(total[channels + 1:] / global_count - global_mean * global_mean, 0.0)
    mean_view[:] = global_mean
    var_view[:] = global_var
    return global_mean, global_var, global_count


class _GraphToken:
    """Kept by the PyLayer context of one training forward, so it lives exactly as long as that
    forward's autograd graph (Paddle frees the context after backward or with the graph)."""


class _GlobalBatchGradient(PyLayer):
    """Adds to x's gradient the part that flows through the global mean and variance.

    The layer computes ``y = batch_norm(x, mean, var, weight', bias')`` in inference form with
    the global statistics: Paddle's fused kernel then returns, in one pass, the gradient for
    constant statistics ``w * inv_std * dy`` plus this rank's ``sum dy`` and ``sum dy * xhat``
    (the gradients of bias' and weight'). ``weight'`` and ``bias'`` come out of this node (as
    copies: Paddle refuses outputs sharing an input's memory), so its backward receives those
    two sums, all-reduces them (one collective per layer), and returns for x the rest of the
    exact gradient of the global batch's BN,
    ``-w * inv_std * (mean dy + xhat * mean(dy * xhat))`` (means over every rank), computed
    by the same fused kernel as an affine map of x. Paddle adds it to the first part.
    Weight and bias gradients stay local: the data-parallel average treats them like the others.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, epsilon, data_format, global_count, var64,
                affine, token):
        ctx.save_for_backward(x, mean, var)
        ctx.epsilon, ctx.data_format, ctx.global_count = epsilon, data_format, global_count
        ctx.inv_std = 1.0 / np.sqrt(var64 + epsilon)
        ctx.weight = weight  # a reference: the backward runs before the optimizer updates it
        ctx.needs = (not x.stop_gradient, not weight.stop_gradient, not bias.stop_gradient)
        ctx.affine, ctx.token = affine, token
        return weight.clone(), bias.clone()  # clone: a third of assign's dispatch cost

    @staticmethod
    def backward(ctx, grad_weight, grad_bias):
        x, mean, var = ctx.saved_tensor()
        grad_x = None
        if ctx.needs[0]:
            channels = grad_weight.shape[0]
            sums = sum_over_ranks_(np.concatenate([grad_bias.numpy(), grad_weight.numpy()]))
            scale = ctx.weight.numpy() * ctx.inv_std / -ctx.global_count
            # batch_norm(x) = (x - mean) * inv_std * s + t: here s = -w inv_std mean(dy xhat),
            # t = -w inv_std mean(dy). s and t go into the layer's reused [C] tensors (used
            # right here only, so every backward may share them).
            s_tensor, t_tensor, s_view, t_view = ctx.affine
            s_view[:] = scale * sums[channels:]
            t_view[:] = scale * sums[:channels]
            grad_x = F.batch_norm(x, mean, var, weight=s_tensor, bias=t_tensor, training=False,
                                  epsilon=ctx.epsilon, data_format=ctx.data_format)
        return (grad_x, grad_weight if ctx.needs[1] else None,
                grad_bias if ctx.needs[2] else None)


class CpuSyncBatchNorm(nn.Layer):
    """Batch norm whose training statistics cover every rank's batch (CPU; two small collectives per
    layer and step through ``host_allreduce.sum_over_ranks_``)."""

    def __init__(self, bn: nn.Layer):
        super().__init__()
        if bn.weight is None or bn.bias is None:
            raise ValueError("CpuSyncBatchNorm needs an affine batch norm (weight and bias)")
        self.weight = bn.weight
        self.bias = bn.bias
        self._mean = bn._mean
        self._variance = bn._variance
        self._momentum = float(bn._momentum)
        self._epsilon = float(bn._epsilon)
        self._data_format = bn._data_format
        self._use_global_stats = bn._use_global_stats
        self._num_features = bn._num_features
        self._plain_type = type(bn)
        # Reused [C] tensors and numpy views: a new Paddle tensor or view costs 10-30 us, and a
        # layer made ~10 a step (~5 ms a step for ResNet-10's 12 layers on CPU). Plain Python
        # attributes (tuples), so the state dict keeps the keys of plain BN. Views are only
        # taken through _view, which checks they still alias their tensor (a deep copy of the
        # layer copies the arrays, and Layer.to() moves tensors to new memory).
        self._views = {}  # name -> ((id, data pointer) of the tensor, numpy view)
        self._scratch = None  # (mean, var): the global statistics
        # [weakref to the _GraphToken of the graph reading _scratch] (a list: Layer.__setattr__
        # costs ~10 us)
        self._scratch_graph = [None]
        self._affine = None  # (s, t): backward's per-channel affine map

    def _view(self, name: str, tensor: paddle.Tensor) -> np.ndarray:
        """numpy_view of a long-lived tensor, made again if it now holds other memory."""
        key = (id(tensor), tensor.data_ptr())
        cached = self._views.get(name)
        if cached is None or cached[0] != key:
            cached = (key, numpy_view(tensor, name))
            self._views[name] = cached
        return cached[1]

    def _new_statistics(self):
        return (paddle.zeros([self._num_features], "float32"),
                paddle.zeros([self._num_features], "float32"))

    def _scratch_statistics(self, needs_grad: bool):
        """(mean, var, their views, token) for this forward's global statistics. The backward of
        a training forward reads them, so the layer's reused pair serves a new forward only once
        the graph of the last forward using it is gone (its backward ran, or it was dropped);
        a second forward before that gets new tensors (e.g. a network applied twice a step)."""
        if self._scratch_graph[0] is not None and self._scratch_graph[0]() is not None:
            mean, var = self._new_statistics()
            return mean, var, numpy_view(mean), numpy_view(var), None
        if self._scratch is None:
            self._scratch = self._new_statistics()
        token = _GraphToken() if needs_grad else None
        self._scratch_graph[0] = weakref.ref(token) if token is not None else None
        mean, var = self._scratch
        return mean, var, self._view("scratch_mean", mean), self._view("scratch_var", var), token

    def forward(self, x):
        if not self.training or self._use_global_stats:
            return F.batch_norm(x, self._mean, self._variance, weight=self.weight, bias=self.bias,
                                training=False, momentum=self._momentum, epsilon=self._epsilon,
                                data_format=self._data_format)
        x32 = _as_float32(x)
        weight, bias = self.weight, self.bias
        needs_grad = not (x32.stop_gradient and weight.stop_gradient and bias.stop_gradient)
        mean, var, mean_view, var_view, token = self._scratch_statistics(needs_grad)
        with paddle.no_grad():
            mean64, var64, count = _global_moments(x32.detach(), mean, var, mean_view, var_view,
                                                   self._data_format, self._epsilon)
            mean32, var32 = mean64.astype(np.float32), var64.astype(np.float32)
            # Paddle's convention, biased variance included
            m, rest = np.float32(self._momentum), np.float32(1.0 - self._momentum)
            for name, batch in (("_mean", mean32), ("_variance", var32)):
                view = self._view(name, getattr(self, name))  # in place: no copy, no Paddle op
                view *= m
                view += batch * rest
        if needs_grad:
            if self._affine is None:
                self._affine = self._new_statistics()
            s, t = self._affine
            affine = (s, t, self._view("affine_s", s), self._view("affine_t", t))
            weight, bias = _GlobalBatchGradient.apply(x32, weight, bias, mean, var, self._epsilon,
                                                      self._data_format, count, var64, affine,
                                                      token)
        y = F.batch_norm(x32, mean, var, weight=weight, bias=bias, training=False,
                         epsilon=self._epsilon, data_format=self._data_format)
        return y if y.dtype == x.dtype else paddle.cast(y, x.dtype)

    def extra_repr(self):
        return f"num_features={self._num_features}, momentum={self._momentum}, epsilon={self._epsilon}"


def _replace_layers(model: nn.Layer, convert) -> nn.Layer:
    """Apply ``convert(layer) -> new layer or None`` to every sublayer (depth first)."""
    replaced = convert(model)
    if replaced is not None:
        return replaced
    for name, child in list(model.named_children()):
        new_child = _replace_layers(child, convert)
        if new_child is not child:
            setattr(model, name, new_child)
    return model


def _to_cpu_sync(layer):
    return CpuSyncBatchNorm(layer) if isinstance(layer, PLAIN_BN_TYPES) else None


def convert_sync_batchnorm(model: nn.Layer, world_size: int, on_gpu: bool) -> tuple[nn.Layer, str]:
    """Sync BN for ``world_size`` ranks; returns (model, kind) with kind in plain|gpu|cpu.

    One rank needs no synchronisation: the model is returned unchanged (plain BN).
    """
    if world_size <= 1:
        log_once("sync_bn", "sync BN: one rank, plain BatchNorm", 20)
        return model, "plain"
    if on_gpu:
        log_once("sync_bn", "sync BN: paddle.nn.SyncBatchNorm (GPU kernel)", 20)
        return nn.SyncBatchNorm.convert_sync_batchnorm(model), "gpu"
    log_once("sync_bn", "sync BN: CPU all-reduce twin (CpuSyncBatchNorm); Paddle's "
             "SyncBatchNorm kernel exists only on GPU", 20)
    return _replace_layers(model, _to_cpu_sync), "cpu"


def _to_plain(layer):
    if isinstance(layer, CpuSyncBatchNorm):
        plain_type = layer._plain_type
    elif isinstance(layer, nn.SyncBatchNorm):
        plain_type = nn.BatchNorm3D  # every model of this package is 3D
    else:
        return None
    plain = plain_type(layer._num_features, momentum=layer._momentum, epsilon=layer._epsilon,
                       data_format=layer._data_format, use_global_stats=layer._use_global_stats)
    with paddle.no_grad():
        plain.weight = layer.weight
        plain.bias = layer.bias
    plain._mean = layer._mean
    plain._variance = layer._variance
    plain.training = layer.training
    return plain


def revert_sync_batchnorm(model: nn.Layer) -> nn.Layer:
    """Plain BN in place of every sync BN (parameters shared, state-dict keys unchanged)."""
    return _replace_layers(model, _to_plain)


def count_sync_layers(model: nn.Layer) -> int:
    return sum(isinstance(l, (CpuSyncBatchNorm, nn.SyncBatchNorm))
               for l in model.sublayers(include_self=True))
