"""Synchronised batch norm across data-parallel ranks, and the conversion back to plain BN.

- GPU: ``paddle.nn.SyncBatchNorm`` (its kernel exists only on GPU).
- CPU with several ranks: ``CpuSyncBatchNorm``, a twin built on ``paddle.autograd.PyLayer``.
  Forward all-reduces ``[sum x, sum x^2, n]`` per channel (so shards of different sizes work),
  normalises with the global mean and biased variance; backward all-reduces
  ``[sum dy, sum dy * xhat]`` and returns the exact gradient of the global batch's BN.
  Weight and bias gradients stay local: DataParallel averages them like every other gradient,
  and each rank's loss is the mean over its own equal share, so the result equals one rank
  holding the whole batch.
- Running statistics follow Paddle's convention (checked against ``nn.BatchNorm3D``):
  ``running = momentum * running + (1 - momentum) * batch`` with the *biased* batch variance.
- Eval mode (and frozen BN, ``_use_global_stats``) uses the running statistics and makes no
  collective call, so ranks may run different numbers of evaluation batches.
- State-dict keys are those of plain BN: the converted layers share the original parameters
  (weight, bias, _mean, _variance), and ``revert_sync_batchnorm`` gives plain BN back for
  evaluation and export.
"""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer

from . import dist
from .logs import log_once

PLAIN_BN_TYPES = (nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D)


def _channel_axis(data_format: str, ndim: int) -> int:
    return ndim - 1 if data_format.endswith("C") and data_format != "NC" else 1


def _local_moments(x: paddle.Tensor, axes: list[int]) -> np.ndarray:
    """[sum x (C), sum x^2 (C), n] of this rank's batch, float64 on the host (the CPU twin runs
    on the host anyway)."""
    x64 = paddle.cast(x, "float64")  # E[x^2] - E[x]^2 loses digits in float32
    total = paddle.sum(x64, axis=axes).numpy()
    squares = paddle.sum(x64 * x64, axis=axes).numpy()
    count = x.size // total.size
    return np.concatenate([total, squares, [float(count)]])


class _SyncBatchNormFunction(PyLayer):
    """y = xhat * weight + bias with xhat from the global (all-ranks) mean and variance."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, inv_std, axes, shape, global_count):
        xhat = (paddle.cast(x, "float32") - mean.reshape(shape)) * inv_std.reshape(shape)
        y = xhat * weight.reshape(shape) + bias.reshape(shape)
        ctx.save_for_backward(xhat, weight, inv_std)
        ctx.axes, ctx.shape, ctx.global_count = axes, shape, global_count
        ctx.needs = (not x.stop_gradient, not weight.stop_gradient, not bias.stop_gradient)
        return paddle.cast(y, x.dtype)

    @staticmethod
    def backward(ctx, dy):
        xhat, weight, inv_std = ctx.saved_tensor()
        axes, shape = ctx.axes, ctx.shape
        dy = paddle.cast(dy, "float32")
        sum_dy = paddle.sum(dy, axis=axes)
        sum_dy_xhat = paddle.sum(dy * xhat, axis=axes)
        grad_x = None
        if ctx.needs[0]:
            both = np.concatenate([sum_dy.numpy(), sum_dy_xhat.numpy()]).astype(np.float64)
            both = dist.all_reduce_sum(both) / ctx.global_count
            channels = sum_dy.shape[0]
            mean_dy = paddle.to_tensor(both[:channels].astype(np.float32)).reshape(shape)
            mean_dy_xhat = paddle.to_tensor(both[channels:].astype(np.float32)).reshape(shape)
            grad_x = (weight.reshape(shape) * inv_std.reshape(shape)) * (
                dy - mean_dy - xhat * mean_dy_xhat)
        grad_w = sum_dy_xhat if ctx.needs[1] else None
        grad_b = sum_dy if ctx.needs[2] else None
        return grad_x, grad_w, grad_b


class CpuSyncBatchNorm(nn.Layer):
    """Batch norm whose training statistics cover every rank's batch (CPU, gloo collectives)."""

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

    def forward(self, x):
        if not self.training or self._use_global_stats:
            return F.batch_norm(x, self._mean, self._variance, weight=self.weight, bias=self.bias,
                                training=False, momentum=self._momentum, epsilon=self._epsilon,
                                data_format=self._data_format)
        axis = _channel_axis(self._data_format, x.ndim)
        axes = [i for i in range(x.ndim) if i != axis]
        shape = [1] * x.ndim
        shape[axis] = -1
        with paddle.no_grad():
            moments = dist.all_reduce_sum(_local_moments(x, axes))
            channels = (moments.size - 1) // 2
            count = moments[-1]
            mean = moments[:channels] / count
            var = np.maximum(moments[channels:2 * channels] / count - mean * mean, 0.0)
            m = self._momentum
            self._mean.set_value(m * self._mean.numpy() + (1 - m) * mean.astype(np.float32))
            self._variance.set_value(m * self._variance.numpy() + (1 - m) * var.astype(np.float32))
            mean_t = paddle.to_tensor(mean.astype(np.float32))
            inv_std_t = paddle.to_tensor((1.0 / np.sqrt(var + self._epsilon)).astype(np.float32))
        return _SyncBatchNormFunction.apply(x, self.weight, self.bias, mean_t, inv_std_t, axes,
                                            shape, float(count))

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
