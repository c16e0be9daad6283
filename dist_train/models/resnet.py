"""ResNet, Wide ResNet and ResNeXt 3D networks as in Hara et al. (3D-ResNets-PyTorch).

Module names equal the reference's (conv1, bn1, layer1..4, downsample.0/1, fc) so released
PyTorch weights map onto these models key for key. Pre-activation blocks live in
preresnet.py and reuse the network skeleton defined here.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from dist_train.models.layers import (batch_norm, channel_axis, check_data_format, conv3d, global_pool, linear,
                                      max_pool, scaled)

STAGE_STRIDES = (1, 2, 2, 2)


class ZeroPadShortcut(nn.Layer):
    """Shortcut A: strided subsample + zero channels, parameter-free.

    The reference builds this path from ``.data``, so no gradient flows through it; the
    detach below keeps that behaviour. The zero channels are concatenated, not ``F.pad``-ed:
    paddle.inference's oneDNN kernel for a constant pad of a 5-D tensor corrupts the heap
    (exported ResNet-18/34 aborted in ``malloc``; Paddle 2.6.2 and 3.3.1 on CPU).
    """

    def __init__(self, out_channels, stride, data_format="NCDHW"):
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride
        self.data_format = data_format

    def forward(self, x):
        x = x.detach()
        s = self.stride
        axis = channel_axis(self.data_format)
        if s != 1:  # avg_pool3d with kernel 1 and stride s is exactly a strided slice
            x = x[:, :, ::s, ::s, ::s] if axis == 1 else x[:, ::s, ::s, ::s, :]
        channels = x.shape[axis]
        zeros, parts = paddle.zeros(paddle.shape(x), x.dtype), [x]  # zeros_like warns in PIR
        for start in range(channels, self.out_channels, channels):
            take = min(channels, self.out_channels - start)
            parts.append(zeros[:, :take] if axis == 1 else zeros[..., :take])
        return paddle.concat(parts, axis=axis)


def projection_shortcut(in_planes, out_planes, stride, data_format):
    """Shortcut B: 1x1x1 strided conv + BN (keys downsample.0 / downsample.1)."""
    return nn.Sequential(conv3d(in_planes, out_planes, 1, stride=stride, data_format=data_format),
                         batch_norm(out_planes, data_format))


class BasicBlock(nn.Layer):
    def __init__(self, in_planes, planes, out_planes, stride, downsample, data_format):
        super().__init__()
        self.conv1 = conv3d(in_planes, planes, 3, stride, 1, data_format=data_format)
        self.bn1 = batch_norm(planes, data_format)
        self.conv2 = conv3d(planes, out_planes, 3, 1, 1, data_format=data_format)
        self.bn2 = batch_norm(out_planes, data_format)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class Bottleneck(nn.Layer):
    """1x1x1 -> 3x3x3 (carries the stride, optionally grouped) -> 1x1x1, BN after each."""

    def __init__(self, in_planes, planes, out_planes, stride, downsample, data_format, groups=1):
        super().__init__()
        self.conv1 = conv3d(in_planes, planes, 1, data_format=data_format)
        self.bn1 = batch_norm(planes, data_format)
        self.conv2 = conv3d(planes, planes, 3, stride, 1, groups=groups, data_format=data_format)
        self.bn2 = batch_norm(planes, data_format)
        self.conv3 = conv3d(planes, out_planes, 1, data_format=data_format)
        self.bn3 = batch_norm(out_planes, data_format)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class ResNet3D(nn.Layer):
    """Stem (conv1 7x7x7, bn1, ReLU, maxpool) + layer1..4 + global average pool + fc.

    stages: four ``(inner_planes, out_planes)`` pairs; make_block(in, inner, out, stride,
    downsample) builds one residual block. The first block of a stage carries the stride.
    """

    head_name = "fc"

    def __init__(self, make_block, depths, stages, num_classes, shortcut="B", stem_width=64,
                 conv1_t_size=7, conv1_t_stride=1, no_max_pool=False, data_format="NCDHW"):
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.data_format = check_data_format(data_format)
        self.conv1 = conv3d(3, stem_width, (conv1_t_size, 7, 7), (conv1_t_stride, 2, 2),
                            (conv1_t_size // 2, 3, 3), data_format=data_format)
        self.bn1 = batch_norm(stem_width, data_format)
        self.maxpool = None if no_max_pool else max_pool(data_format)
        in_planes = stem_width
        for index, (depth, (inner, out), stride) in enumerate(zip(depths, stages, STAGE_STRIDES)):
            blocks = []
            for b in range(depth):
                s = stride if b == 0 else 1
                downsample = None
                if s != 1 or in_planes != out:
                    downsample = (ZeroPadShortcut(out, s, data_format) if shortcut == "A"
                                  else projection_shortcut(in_planes, out, s, data_format))
                blocks.append(make_block(in_planes, inner, out, s, downsample, data_format))
                in_planes = out
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = global_pool(data_format)
        self.fc = linear(in_planes, num_classes)
        self.stage_names = ["conv1"] + ([] if no_max_pool else ["maxpool"]) + [
            "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(paddle.flatten(self.avgpool(x), 1))


RESNET_DEPTHS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3),
                 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
BASIC_DEPTHS = (10, 18, 34)


def default_shortcut(depth):
    """As released: ResNet-18/34 use shortcut A, every other network B."""
    return "A" if depth in (18, 34) else "B"


def build_resnet(depth, num_classes, shortcut=None, widen_factor=1.0, width_mult=1.0,
                 conv1_t_size=7, conv1_t_stride=1, no_max_pool=False, data_format="NCDHW"):
    """ResNet-depth; widen_factor scales every width incl. the stem, as in the reference."""
    shortcut = default_shortcut(depth) if shortcut is None else shortcut
    return resnet_with_blocks(depth, num_classes, (BasicBlock, Bottleneck), shortcut,
                              widen_factor, width_mult, conv1_t_size, conv1_t_stride,
                              no_max_pool, data_format)


def resnet_with_blocks(depth, num_classes, blocks, shortcut, widen_factor, width_mult,
                       conv1_t_size, conv1_t_stride, no_max_pool, data_format):
    """The ResNet skeleton with ``blocks = (basic_block, bottleneck_block)`` (expansion 1 / 4)."""
    planes = [scaled(p * widen_factor, width_mult) for p in (64, 128, 256, 512)]
    if depth in BASIC_DEPTHS:
        stages, make_block = [(p, p) for p in planes], blocks[0]
    else:
        stages, make_block = [(p, 4 * p) for p in planes], blocks[1]
    return ResNet3D(make_block, RESNET_DEPTHS[depth], stages, num_classes, shortcut,
                    scaled(64 * widen_factor, width_mult), conv1_t_size, conv1_t_stride,
                    no_max_pool, data_format)


def build_wideresnet(depth, num_classes, shortcut="B", wide_k=2, width_mult=1.0, conv1_t_size=7,
                     conv1_t_stride=1, no_max_pool=False, data_format="NCDHW"):
    """Wide ResNet: bottleneck with expansion 2, planes x k, 64-channel stem."""
    planes = [scaled(p * wide_k, width_mult) for p in (64, 128, 256, 512)]
    return ResNet3D(Bottleneck, RESNET_DEPTHS[depth], [(p, 2 * p) for p in planes], num_classes,
                    shortcut, scaled(64, width_mult), conv1_t_size, conv1_t_stride, no_max_pool,
                    data_format)


def build_resnext(depth, num_classes, shortcut="B", cardinality=32, width_mult=1.0,
                  conv1_t_size=7, conv1_t_stride=1, no_max_pool=False, data_format="NCDHW"):
    """ResNeXt: planes 128..1024, expansion 2, grouped 3x3x3 with cardinality x planes/32
    channels. With width_mult < 1 every group keeps at least one channel."""
    stages = []
    for p in (128, 256, 512, 1024):
        p = scaled(p, width_mult)
        stages.append((cardinality * max(1, p // 32), 2 * p))

    def make_block(in_planes, inner, out, stride, downsample, data_format):
        return Bottleneck(in_planes, inner, out, stride, downsample, data_format, cardinality)

    return ResNet3D(make_block, RESNET_DEPTHS[depth], stages, num_classes, shortcut,
                    scaled(64, width_mult), conv1_t_size, conv1_t_stride, no_max_pool,
                    data_format)
