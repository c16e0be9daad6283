"""3D DenseNet as in Hara et al. (3D-ResNets-PyTorch, CVPR2018 branch).

Names follow the reference: features.conv0/norm0/pool0, features.denseblockB.denselayerL.
{norm1,conv1,norm2,conv2}, features.transitionB.{norm,conv}, features.norm5, classifier.
The released files spell the dense-layer names ``norm.1``/``conv.1``; the converter maps them.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from dist_train.models.layers import (batch_norm, channel_axis, check_data_format, conv3d, global_pool, linear,
                                      max_pool, scaled)

DENSENET_BLOCKS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32),
                   264: (6, 12, 64, 48)}


class DenseLayer(nn.Layer):
    """BN-ReLU-conv1x1 (bn_size x growth) - BN-ReLU-conv3x3 (growth), concatenated to input."""

    def __init__(self, in_features, growth_rate, bn_size, data_format):
        super().__init__()
        self.axis = channel_axis(data_format)
        self.norm1 = batch_norm(in_features, data_format)
        self.conv1 = conv3d(in_features, bn_size * growth_rate, 1, data_format=data_format)
        self.norm2 = batch_norm(bn_size * growth_rate, data_format)
        self.conv2 = conv3d(bn_size * growth_rate, growth_rate, 3, 1, 1, data_format=data_format)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return paddle.concat([x, out], axis=self.axis)


class Transition(nn.Layer):
    """BN-ReLU-conv1x1 halving the channels, then 2x2x2 average pool halving T, H, W."""

    def __init__(self, in_features, out_features, data_format):
        super().__init__()
        self.norm = batch_norm(in_features, data_format)
        self.conv = conv3d(in_features, out_features, 1, data_format=data_format)
        self.pool = nn.AvgPool3D(2, stride=2, data_format=data_format)

    def forward(self, x):
        return self.pool(self.conv(F.relu(self.norm(x))))


class DenseNet3D(nn.Layer):
    head_name = "classifier"

    def __init__(self, block_config, num_classes, growth_rate=32, num_init_features=64,
                 bn_size=4, conv1_t_size=7, conv1_t_stride=1, no_max_pool=False,
                 data_format="NCDHW"):
        super().__init__()
        self.data_format = check_data_format(data_format)
        self.features = nn.Sequential()
        add = self.features.add_sublayer
        add("conv0", conv3d(3, num_init_features, (conv1_t_size, 7, 7), (conv1_t_stride, 2, 2),
                            (conv1_t_size // 2, 3, 3), data_format=data_format))
        add("norm0", batch_norm(num_init_features, data_format))
        add("relu0", nn.ReLU())
        self.stage_names = ["features.conv0"]
        if not no_max_pool:
            add("pool0", max_pool(data_format))
            self.stage_names.append("features.pool0")
        channels = num_init_features
        for b, num_layers in enumerate(block_config, start=1):
            block = nn.Sequential()
            for i in range(num_layers):
                block.add_sublayer(f"denselayer{i + 1}", DenseLayer(
                    channels + i * growth_rate, growth_rate, bn_size, data_format))
            add(f"denseblock{b}", block)
            self.stage_names.append(f"features.denseblock{b}")
            channels += num_layers * growth_rate
            if b != len(block_config):
                add(f"transition{b}", Transition(channels, channels // 2, data_format))
                self.stage_names.append(f"features.transition{b}")
                channels //= 2
        add("norm5", batch_norm(channels, data_format))
        self.avgpool = global_pool(data_format)
        self.classifier = linear(channels, num_classes)
        self.stage_names += ["features.norm5", "classifier"]

    def forward(self, x):
        out = F.relu(self.features(x))
        return self.classifier(paddle.flatten(self.avgpool(out), 1))


def build_densenet(depth, num_classes, width_mult=1.0, conv1_t_size=7, conv1_t_stride=1,
                   no_max_pool=False, data_format="NCDHW"):
    """DenseNet-depth: growth 32, bn_size 4, 64 initial features (both x width_mult)."""
    return DenseNet3D(DENSENET_BLOCKS[depth], num_classes, scaled(32, width_mult),
                      scaled(64, width_mult), 4, conv1_t_size, conv1_t_stride, no_max_pool,
                      data_format)
