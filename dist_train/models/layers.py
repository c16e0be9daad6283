"""Layer factories shared by every family: reference initialisation and one data layout.

Every convolution, batch norm and pool of a model receives the same ``data_format`` so a
model can run channels-last (``NDHWC``) with identical weights and results.
"""
import math

import paddle
import paddle.nn as nn

DATA_FORMATS = ("NCDHW", "NDHWC")


def check_data_format(data_format):
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    return data_format


def channel_axis(data_format):
    return 1 if data_format == "NCDHW" else 4


def conv3d(in_ch, out_ch, kernel_size, stride=1, padding=0, groups=1, data_format="NCDHW"):
    """Bias-free Conv3D with the reference init: kaiming normal, fan_out, ReLU gain.

    PyTorch's fan_out is out_channels x kernel volume (groups do not divide it); Paddle's
    KaimingNormal takes that number through ``fan_in`` (std = sqrt(2 / fan)).
    """
    ks = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
    fan_out = out_ch * ks[0] * ks[1] * ks[2]
    init = nn.initializer.KaimingNormal(fan_in=fan_out, negative_slope=0.0, nonlinearity="relu")
    return nn.Conv3D(in_ch, out_ch, ks, stride=stride, padding=padding, groups=groups,
                     weight_attr=paddle.ParamAttr(initializer=init), bias_attr=False,
                     data_format=data_format)


def batch_norm(channels, data_format="NCDHW"):
    """BN with weight 1, bias 0; Paddle momentum 0.9 equals PyTorch's 0.1."""
    return nn.BatchNorm3D(channels, momentum=0.9, epsilon=1e-5,
                          weight_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(1.0)),
                          bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)),
                          data_format=data_format)


def linear(in_features, out_features):
    """Linear with PyTorch's default init: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in))."""
    bound = 1.0 / math.sqrt(in_features)
    uniform = nn.initializer.Uniform(-bound, bound)
    return nn.Linear(in_features, out_features,
                     weight_attr=paddle.ParamAttr(initializer=uniform),
                     bias_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound)))


def max_pool(data_format="NCDHW"):
    return nn.MaxPool3D(kernel_size=3, stride=2, padding=1, data_format=data_format)


def global_pool(data_format="NCDHW"):
    return nn.AdaptiveAvgPool3D(1, data_format=data_format)


def scaled(channels, width_mult):
    """A channel width times ``width_mult`` (at least 1), for tiny test and demo models."""
    return max(1, int(round(channels * width_mult)))
