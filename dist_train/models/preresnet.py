"""Pre-activation 3D ResNet (BN-ReLU-conv blocks, no ReLU after the add), as the reference.

The stem, stages, shortcuts and head are those of resnet.ResNet3D; only the blocks differ.
As in the reference there is no final BN-ReLU after layer4.
"""
import paddle.nn as nn
import paddle.nn.functional as F

from dist_train.models.layers import batch_norm, conv3d
from dist_train.models.resnet import resnet_with_blocks


class PreActBasicBlock(nn.Layer):
    def __init__(self, in_planes, planes, out_planes, stride, downsample, data_format):
        super().__init__()
        self.bn1 = batch_norm(in_planes, data_format)
        self.conv1 = conv3d(in_planes, planes, 3, stride, 1, data_format=data_format)
        self.bn2 = batch_norm(planes, data_format)
        self.conv2 = conv3d(planes, out_planes, 3, 1, 1, data_format=data_format)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        residual = x if self.downsample is None else self.downsample(x)
        return out + residual


class PreActBottleneck(nn.Layer):
    def __init__(self, in_planes, planes, out_planes, stride, downsample, data_format):
        super().__init__()
        self.bn1 = batch_norm(in_planes, data_format)
        self.conv1 = conv3d(in_planes, planes, 1, data_format=data_format)
        self.bn2 = batch_norm(planes, data_format)
        self.conv2 = conv3d(planes, planes, 3, stride, 1, data_format=data_format)
        self.bn3 = batch_norm(planes, data_format)
        self.conv3 = conv3d(planes, out_planes, 1, data_format=data_format)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        residual = x if self.downsample is None else self.downsample(x)
        return out + residual


def build_preresnet(depth, num_classes, shortcut="B", widen_factor=1.0, width_mult=1.0,
                    conv1_t_size=7, conv1_t_stride=1, no_max_pool=False, data_format="NCDHW"):
    return resnet_with_blocks(depth, num_classes, (PreActBasicBlock, PreActBottleneck),
                              shortcut, widen_factor, width_mult, conv1_t_size, conv1_t_stride,
                              no_max_pool, data_format)
