"""PyTorch twins of the reference networks (module names as 3D-ResNets-PyTorch, CVPR2018
branch: models/resnet.py, pre_act_resnet.py, wide_resnet.py, resnext.py, densenet.py) for the
converter's equivalence tests, plus saving in the layouts of the released checkpoints."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3d(cin, cout, k, stride=1, padding=0, groups=1):
    return nn.Conv3d(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3d(inplanes, planes, 3, stride, 1)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes, 3, 1, 1)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3d(inplanes, planes, 1)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes, 3, stride, 1)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = conv3d(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class ResNeXtBottleneck(Bottleneck):
    expansion = 2

    def __init__(self, inplanes, planes, cardinality, stride=1, downsample=None):
        nn.Module.__init__(self)
        mid = cardinality * int(planes / 32)
        self.conv1 = conv3d(inplanes, mid, 1)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = conv3d(mid, mid, 3, stride, 1, groups=cardinality)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = conv3d(mid, planes * 2, 1)
        self.bn3 = nn.BatchNorm3d(planes * 2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv twice, no ReLU after the add (pre_act_resnet.py)."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm3d(inplanes)
        self.conv1 = conv3d(inplanes, planes, 3, stride, 1)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes, 3, 1, 1)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm3d(inplanes)
        self.conv1 = conv3d(inplanes, planes, 1)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes, 3, stride, 1)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv3 = conv3d(planes, planes * 4, 1)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


class WideBottleneck(Bottleneck):
    """Bottleneck with expansion 2 (wide_resnet.py); the stages' planes are multiplied by k."""
    expansion = 2

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        nn.Module.__init__(self)
        self.conv1 = conv3d(inplanes, planes, 1)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes, 3, stride, 1)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = conv3d(planes, planes * 2, 1)
        self.bn3 = nn.BatchNorm3d(planes * 2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample


class DenseLayer(nn.Module):
    """densenet.py's _DenseLayer; the released files name its modules norm.1, conv.1, ... (not
    allowed as module names by today's PyTorch: save_like_released renames them)."""

    def __init__(self, in_features, growth_rate=32, bn_size=4):
        super().__init__()
        self.norm1 = nn.BatchNorm3d(in_features)
        self.conv1 = conv3d(in_features, bn_size * growth_rate, 1)
        self.norm2 = nn.BatchNorm3d(bn_size * growth_rate)
        self.conv2 = conv3d(bn_size * growth_rate, growth_rate, 3, 1, 1)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        return torch.cat([x, self.conv2(F.relu(self.norm2(out)))], 1)


class Transition(nn.Sequential):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.add_module("norm", nn.BatchNorm3d(in_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", conv3d(in_features, out_features, 1))
        self.add_module("pool", nn.AvgPool3d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    def __init__(self, block_config=(6, 12, 24, 16), num_classes=400, growth_rate=32,
                 num_init_features=64):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv3d(3, num_init_features, 7, stride=(1, 2, 2),
                                                    padding=(3, 3, 3), bias=False))
        self.features.add_module("norm0", nn.BatchNorm3d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool3d(kernel_size=3, stride=2, padding=1))
        channels = num_init_features
        for b, layers in enumerate(block_config, start=1):
            block = nn.Sequential(*[DenseLayer(channels + i * growth_rate, growth_rate)
                                    for i in range(layers)])
            for i, layer in enumerate(list(block)):  # named denselayer1, ... as the reference
                del block._modules[str(i)]
                block.add_module(f"denselayer{i + 1}", layer)
            self.features.add_module(f"denseblock{b}", block)
            channels += layers * growth_rate
            if b != len(block_config):
                self.features.add_module(f"transition{b}", Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm3d(channels))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = F.relu(self.features(x))
        # the reference pools with a fixed kernel of the last feature map's size: the same
        return self.classifier(torch.flatten(F.adaptive_avg_pool3d(out, 1), 1))


def downsample_basic_block(x, planes, stride):
    out = F.avg_pool3d(x, kernel_size=1, stride=stride)
    pads = torch.zeros(out.size(0), planes - out.size(1), *out.shape[2:], dtype=out.dtype)
    return torch.cat([out.data, pads], dim=1)


class ZeroPad(nn.Module):
    """Holds no state, like the reference's functools.partial."""

    def __init__(self, planes, stride):
        super().__init__()
        self.planes, self.stride = planes, stride

    def forward(self, x):
        return downsample_basic_block(x, self.planes, self.stride)


class ResNet(nn.Module):
    def __init__(self, block, layers, shortcut_type="B", num_classes=400,
                 planes=(64, 128, 256, 512), cardinality=None):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=(3, 3, 3),
                               bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        extra = () if cardinality is None else (cardinality,)
        for i, (p, n) in enumerate(zip(planes, layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, p, n, shortcut_type,
                                                            1 if i == 0 else 2, extra))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, shortcut_type, stride, extra):
        downsample = None
        out = planes * block.expansion
        if stride != 1 or self.inplanes != out:
            downsample = (ZeroPad(out, stride) if shortcut_type == "A" else nn.Sequential(
                conv3d(self.inplanes, out, 1, stride), nn.BatchNorm3d(out)))
        layers = [block(self.inplanes, planes, *extra, stride, downsample)]
        self.inplanes = out
        layers += [block(self.inplanes, planes, *extra) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def twin(name, shortcut="B", num_classes=400):
    if name == "resnet-18":
        return ResNet(BasicBlock, [2, 2, 2, 2], shortcut, num_classes)
    if name == "resnet-50":
        return ResNet(Bottleneck, [3, 4, 6, 3], shortcut, num_classes)
    if name == "preresnet-18":
        return ResNet(PreActBasicBlock, [2, 2, 2, 2], shortcut, num_classes)
    if name == "preresnet-50":
        return ResNet(PreActBottleneck, [3, 4, 6, 3], shortcut, num_classes)
    if name == "preresnet-200":
        return ResNet(PreActBottleneck, [3, 24, 36, 3], shortcut, num_classes)
    if name == "wideresnet-50":  # k = 2
        return ResNet(WideBottleneck, [3, 4, 6, 3], shortcut, num_classes, (128, 256, 512, 1024))
    if name == "densenet-121":
        return DenseNet((6, 12, 24, 16), num_classes)
    if name == "resnext-101":
        return ResNet(ResNeXtBottleneck, [3, 4, 23, 3], shortcut, num_classes,
                      (128, 256, 512, 1024), cardinality=32)
    raise ValueError(name)


def randomize_batch_norm(model, seed=0):
    """Random running statistics and affine parameters, so conversion errors show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
                m.num_batches_tracked.fill_(1234)
    return model


def released_name(key):
    """The CVPR2018 DenseNet files spell dense-layer modules norm.1/conv.1/norm.2/conv.2."""
    if ".denselayer" in key:
        for part in ("norm1", "conv1", "norm2", "conv2"):
            key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
    return key


def save_like_released(model, path, prefix="", num_batches_tracked=True, legacy=False,
                       arch="resnet-18"):
    """{epoch, arch, state_dict, optimizer} with key prefixes as the released files."""
    state = {prefix + released_name(k): v for k, v in model.state_dict().items()
             if num_batches_tracked or not k.endswith("num_batches_tracked")}
    checkpoint = {"epoch": 200, "arch": arch, "state_dict": state,
                  "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9,
                                                                "params": [0, 1, 2]}]}}
    torch.save(checkpoint, str(path), _use_new_zipfile_serialization=not legacy)
