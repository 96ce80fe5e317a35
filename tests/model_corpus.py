"""Small models written the way public model code writes them, each with a hand-written list of its
hidden unit groups (which axes of which parameters a hidden permutation moves), for permuted-copy
tests.

The unit lists are written per model from its module names; they do not use `fusion` in any way. A
unit group is `Units(n, [Axis(key, axis, offset, inner, outer), ...])`: a permutation of its n units
reorders, along axis `axis` of state tensor `key`, the n blocks of `inner` consecutive elements
starting at `offset` (and the same in each of `outer` consecutive repetitions of those n blocks: a
channels-last flatten). Everything here was written for these tests (no code copied from other
projects).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Axis:
    key: str
    axis: int = 0
    offset: int = 0
    inner: int = 1
    outer: int = 1


@dataclass
class Units:
    n: int
    axes: list[Axis] = field(default_factory=list)


def rows(prefix: str, bias: bool = True, offset: int = 0, inner: int = 1) -> list[Axis]:
    """A layer's output units: weight rows (and bias)."""
    keys = ["weight", "bias"] if bias else ["weight"]
    return [Axis(f"{prefix}.{k}", 0, offset, inner) for k in keys]


def cols(prefix: str, offset: int = 0, inner: int = 1) -> list[Axis]:
    """A layer's input units: weight columns."""
    return [Axis(f"{prefix}.weight", 1, offset, inner)]


def bn(prefix: str, offset: int = 0, inner: int = 1) -> list[Axis]:
    return [
        Axis(f"{prefix}.{k}", 0, offset, inner)
        for k in ("weight", "bias", "running_mean", "running_var")
    ]


def affine(prefix: str, offset: int = 0) -> list[Axis]:
    """LayerNorm / GroupNorm parameters."""
    return [Axis(f"{prefix}.{k}", 0, offset) for k in ("weight", "bias")]


def permute(model: nn.Module, units: list[Units], seed: int = 1) -> nn.Module:
    """A copy of `model` with one random permutation applied per unit group."""
    g = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for unit in units:
        perm = torch.randperm(unit.n, generator=g)
        for ax in unit.axes:
            value = state[ax.key]
            idx = torch.arange(value.shape[ax.axis])
            span = unit.n * ax.inner
            for rep in range(ax.outer):
                start = ax.offset + rep * span
                idx[start : start + span] = (
                    perm[:, None] * ax.inner + torch.arange(ax.inner)[None]
                ).reshape(-1) + start
            state[ax.key] = value.index_select(ax.axis, idx)
    out = copy.deepcopy(model)
    out.load_state_dict(state)
    return out.eval()


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random norm statistics and affine parameters, biases and scales, so every unit is
    distinct."""
    g = torch.Generator().manual_seed(seed + 1000)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
        for name, p in m.named_parameters(recurse=False):
            if name == "weight" and p.ndim == 1:
                p.data.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name == "bias" or p.ndim == 1:
                p.data.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


# --------------------------------------------------------------------------------------------- MLPs
class MlpNet(nn.Module):
    """The OT-fusion reference code's MNIST network, as that code writes it."""

    def __init__(self, input_dim=64, width=(20, 16, 12), num_classes=10):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, width[0], bias=False)
        self.fc2 = nn.Linear(width[0], width[1], bias=False)
        self.fc3 = nn.Linear(width[1], width[2], bias=False)
        self.fc4 = nn.Linear(width[2], num_classes, bias=False)

    def forward(self, x, disable_logits=False):
        x = x.view(x.shape[0], -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = F.relu(self.fc3(x))
        x = self.fc4(x)
        if disable_logits:
            return x
        else:
            return F.log_softmax(x)


def mlpnet_units(m):
    return [
        Units(20, rows("fc1", False) + cols("fc2")),
        Units(16, rows("fc2", False) + cols("fc3")),
        Units(12, rows("fc3", False) + cols("fc4")),
    ]


class SoftmaxHead(nn.Module):
    """Probabilities out: temperature scaling and an nn.Softmax after the logits."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))
        self.temperature = 1.5
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        logits = self.net(x.flatten(1))
        return self.softmax(logits / self.temperature) * 2.0


class LayerNormMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.ln1 = nn.Linear(64, 24), nn.LayerNorm(24)
        self.fc2, self.ln2 = nn.Linear(24, 16), nn.LayerNorm(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.gelu(self.ln1(self.fc1(x)))
        x = F.gelu(self.ln2(self.fc2(x)))
        return self.head(x)


class SharedLayer(nn.Module):
    """A layer with parameters called twice."""

    def __init__(self):
        super().__init__()
        self.fc, self.mid, self.out = nn.Linear(64, 8), nn.Linear(8, 8), nn.Linear(8, 10)

    def forward(self, x):
        h = torch.relu(self.fc(x.flatten(1)))
        h = torch.relu(self.mid(h))
        return self.out(torch.relu(self.mid(h)))


class TwoTowers(nn.Module):
    """Two branches concatenated along features."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(64, 4), nn.Linear(64, 6), nn.Linear(10, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.out(torch.cat([F.relu(self.a(x)), torch.tanh(self.b(x))], dim=1))


# ----------------------------------------------------------------------------------------------
# ResNets
def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision style: one ReLU module used twice, `out += identity`."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TvResNet(nn.Module):
    """torchvision ResNet layout at toy widths: stem, max-pool, stages, average pool, flatten,
    fc."""

    def __init__(self, block, layers, width=8, num_classes=10):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 2 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def tv_basic_units(m):
    return [
        Units(
            8,
            rows("conv1", False)
            + bn("bn1")
            + rows("layer1.0.conv2", False)
            + bn("layer1.0.bn2")
            + rows("layer1.1.conv2", False)
            + bn("layer1.1.bn2")
            + cols("layer1.0.conv1")
            + cols("layer1.1.conv1")
            + cols("layer2.0.conv1")
            + cols("layer2.0.downsample.0"),
        ),
        Units(8, rows("layer1.0.conv1", False) + bn("layer1.0.bn1") + cols("layer1.0.conv2")),
        Units(8, rows("layer1.1.conv1", False) + bn("layer1.1.bn1") + cols("layer1.1.conv2")),
        Units(16, rows("layer2.0.conv1", False) + bn("layer2.0.bn1") + cols("layer2.0.conv2")),
        Units(
            16,
            rows("layer2.0.conv2", False)
            + bn("layer2.0.bn2")
            + rows("layer2.0.downsample.0", False)
            + bn("layer2.0.downsample.1")
            + cols("fc"),
        ),
    ]


def tv_bottleneck_units(m):
    units = [
        Units(
            8,
            rows("conv1", False)
            + bn("bn1")
            + cols("layer1.0.conv1")
            + cols("layer1.0.downsample.0"),
        )
    ]
    units.append(
        Units(
            32,
            rows("layer1.0.conv3", False)
            + bn("layer1.0.bn3")
            + rows("layer1.0.downsample.0", False)
            + bn("layer1.0.downsample.1")
            + cols("layer2.0.conv1")
            + cols("layer2.0.downsample.0"),
        )
    )
    units.append(
        Units(
            64,
            rows("layer2.0.conv3", False)
            + bn("layer2.0.bn3")
            + rows("layer2.0.downsample.0", False)
            + bn("layer2.0.downsample.1")
            + cols("fc"),
        )
    )
    for p, w in (("layer1.0", 8), ("layer2.0", 16)):
        units.append(Units(w, rows(f"{p}.conv1", False) + bn(f"{p}.bn1") + cols(f"{p}.conv2")))
        units.append(Units(w, rows(f"{p}.conv2", False) + bn(f"{p}.bn2") + cols(f"{p}.conv3")))
    return units


class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class BlockA(nn.Module):
    """CIFAR ResNet block with the "option A" shortcut: strided slicing and zero channels."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = LambdaLayer(
                lambda x: F.pad(
                    x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0
                )
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNetA(nn.Module):
    def __init__(self, width=8, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(BlockA(width, width))
        self.layer2 = nn.Sequential(BlockA(width, 2 * width, 2), BlockA(2 * width, 2 * width))
        self.linear = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def resnet_a_units(m):
    w = m.conv1.out_channels
    pad = 2 * w // 4
    stage2 = [("layer2.0.conv2", "layer2.0.bn2"), ("layer2.1.conv2", "layer2.1.bn2")]
    tied = []  # the incoming stream continues in the middle channels of stage 2
    for conv, norm in stage2:
        tied += rows(conv, False, offset=pad) + bn(norm, offset=pad)
    units = [
        Units(
            w,
            rows("conv1", False)
            + bn("bn1")
            + rows("layer1.0.conv2", False)
            + bn("layer1.0.bn2")
            + cols("layer1.0.conv1")
            + cols("layer2.0.conv1")
            + tied
            + cols("layer2.1.conv1", offset=pad)
            + cols("linear", offset=pad),
        )
    ]
    for offset in (0, pad + w):  # the zero-padded channels: their own units
        axes = []
        for conv, norm in stage2:
            axes += rows(conv, False, offset=offset) + bn(norm, offset=offset)
        units.append(
            Units(pad, axes + cols("layer2.1.conv1", offset=offset) + cols("linear", offset=offset))
        )
    for p, n in (("layer1.0", w), ("layer2.0", 2 * w), ("layer2.1", 2 * w)):
        units.append(Units(n, rows(f"{p}.conv1", False) + bn(f"{p}.bn1") + cols(f"{p}.conv2")))
    return units


# ---------------------------------------------------------------------------------------------
# DenseNet
class DenseLayer(nn.Module):
    def __init__(self, in_planes, growth):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, kernel_size=3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = torch.cat([x, out], 1)
        return out


class Transition(nn.Module):
    def __init__(self, in_planes, out_planes):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    def __init__(self, growth=4, num_classes=10):
        super().__init__()
        g = growth
        self.conv1 = nn.Conv2d(3, 2 * g, kernel_size=3, padding=1, bias=False)
        self.dense1 = nn.Sequential(DenseLayer(2 * g, g), DenseLayer(3 * g, g))
        self.trans1 = Transition(4 * g, 2 * g)
        self.dense2 = nn.Sequential(DenseLayer(2 * g, g), DenseLayer(3 * g, g))
        self.bn = nn.BatchNorm2d(4 * g)
        self.linear = nn.Linear(4 * g, num_classes)

    def forward(self, x):
        out = self.conv1(x)
        out = self.trans1(self.dense1(out))
        out = self.dense2(out)
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1)
        out = out.view(out.size(0), -1)
        return self.linear(out)


def densenet_units(m):
    g = m.linear.in_features // 4
    units = []
    for stage, first, readers in (
        ("dense1", "conv1", ["trans1.bn", "trans1.conv"]),
        ("dense2", "trans1.conv", ["bn", "linear"]),
    ):

        def reads(offset, n, layers):
            axes = []
            for name in layers:
                axes += (
                    bn(name, offset)
                    if name.endswith("bn") or name.endswith("bn1")
                    else cols(name, offset)
                )
            return axes

        later = [f"{stage}.0.bn1", f"{stage}.0.conv1", f"{stage}.1.bn1", f"{stage}.1.conv1"]
        units.append(Units(2 * g, rows(first, False) + reads(0, 2 * g, later + readers)))
        units.append(
            Units(g, rows(f"{stage}.0.conv2", False) + reads(2 * g, g, later[2:] + readers))
        )
        units.append(Units(g, rows(f"{stage}.1.conv2", False) + reads(3 * g, g, readers)))
        for i in range(2):
            units.append(
                Units(
                    4 * g,
                    rows(f"{stage}.{i}.conv1", False)
                    + bn(f"{stage}.{i}.bn2")
                    + cols(f"{stage}.{i}.conv2"),
                )
            )
    return units


# --------------------------------------------------------------------------------------------
# MobileNets
class SqueezeExcite(nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        scale = self.avgpool(x)
        scale = self.relu(self.fc1(scale))
        scale = self.gate(self.fc2(scale))
        return x * scale


class InvertedResidual(nn.Module):
    def __init__(self, cin, expanded, cout, stride, se):
        super().__init__()
        self.expand = nn.Sequential(
            nn.Conv2d(cin, expanded, 1, bias=False), nn.BatchNorm2d(expanded), nn.Hardswish()
        )
        self.dw = nn.Sequential(
            nn.Conv2d(expanded, expanded, 3, stride, 1, groups=expanded, bias=False),
            nn.BatchNorm2d(expanded),
            nn.Hardswish(),
        )
        self.se = SqueezeExcite(expanded, expanded // 4) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(expanded, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x):
        result = self.project(self.se(self.dw(self.expand(x))))
        if self.use_res_connect:
            result = result + x
        return result


class MobileNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish()),
            InvertedResidual(8, 16, 8, 1, True),
            InvertedResidual(8, 24, 12, 2, False),
            nn.Sequential(nn.Conv2d(12, 32, 1, bias=False), nn.BatchNorm2d(32), nn.Hardswish()),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(32, 20),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=0.2, inplace=True),
            nn.Linear(20, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def mobilenet_units(m):
    b1, b2 = "features.1", "features.2"
    return [
        Units(
            8,
            rows("features.0.0", False)
            + bn("features.0.1")
            + rows(f"{b1}.project.0", False)
            + bn(f"{b1}.project.1")
            + cols(f"{b1}.expand.0")
            + cols(f"{b2}.expand.0"),
        ),
        Units(
            16,
            rows(f"{b1}.expand.0", False)
            + bn(f"{b1}.expand.1")
            + rows(f"{b1}.dw.0", False)
            + bn(f"{b1}.dw.1")
            + rows(f"{b1}.se.fc2")
            + cols(f"{b1}.se.fc1")
            + cols(f"{b1}.project.0"),
        ),
        Units(4, rows(f"{b1}.se.fc1") + cols(f"{b1}.se.fc2")),
        Units(
            24,
            rows(f"{b2}.expand.0", False)
            + bn(f"{b2}.expand.1")
            + rows(f"{b2}.dw.0", False)
            + bn(f"{b2}.dw.1")
            + cols(f"{b2}.project.0"),
        ),
        Units(12, rows(f"{b2}.project.0", False) + bn(f"{b2}.project.1") + cols("features.3.0")),
        Units(32, rows("features.3.0", False) + bn("features.3.1") + cols("classifier.0")),
        Units(20, rows("classifier.0") + cols("classifier.3")),
    ]


class SeparableNet(nn.Module):
    """Depthwise convolution with a channel multiplier of 2, SiLU activations."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.dw, self.bn2 = nn.Conv2d(8, 16, 3, padding=1, groups=8), nn.BatchNorm2d(16)
        self.pw, self.bn3 = nn.Conv2d(16, 12, 1), nn.BatchNorm2d(12)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(12 * 4, 10)

    def forward(self, x):
        x = F.silu(self.bn1(self.conv1(x)))
        x = F.silu(self.bn2(self.dw(x)))
        x = F.silu(self.bn3(self.pw(x)))
        return self.fc(self.pool(x).flatten(1))


def separable_units(m):
    return [
        Units(
            8,
            rows("conv1")
            + bn("bn1")
            + rows("dw", inner=2)
            + bn("bn2", inner=2)
            + cols("pw", inner=2),
        ),
        Units(12, rows("pw") + bn("bn3") + cols("fc", inner=4)),
    ]


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, channels-last LayerNorm and MLP, a layer-scale parameter, residual."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)
        return shortcut + x


class ChannelsFirstNorm(nn.Module):
    """LayerNorm over channels of (N, C, H, W), written out by hand."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXt(nn.Module):
    def __init__(self, dim=8, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, dim, kernel_size=2, stride=2), ChannelsFirstNorm(dim)
        )
        self.blocks = nn.Sequential(ConvNeXtBlock(dim), ConvNeXtBlock(dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(self.norm(x.mean([-2, -1])))


def convnext_units(m):
    stream = rows("stem.0") + affine("stem.1") + affine("norm") + cols("head")
    units = []
    for i in range(2):
        p = f"blocks.{i}"
        stream += (
            rows(f"{p}.dwconv")
            + affine(f"{p}.norm")
            + cols(f"{p}.pwconv1")
            + rows(f"{p}.pwconv2")
            + [Axis(f"{p}.gamma")]
        )
        units.append(Units(32, rows(f"{p}.pwconv1") + cols(f"{p}.pwconv2")))
    return [Units(8, stream), *units]


# ------------------------------------------------------------------------------------------------
# VGG etc.
class VggMeanHead(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        cfg = [8, 8, "M", 16, 16]
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [
                    nn.Conv2d(cin, v, kernel_size=3, padding=1),
                    nn.BatchNorm2d(v),
                    nn.ReLU(inplace=True),
                ]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(16, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, num_classes)
        )

    def forward(self, x):
        x = self.features(x)
        x = x.mean((2, 3))
        return self.classifier(x)


def vgg_units(m):
    convs = [0, 3, 7, 10]
    units = []
    for j, i in enumerate(convs):
        reader = cols(f"features.{convs[j + 1]}") if j + 1 < len(convs) else cols("classifier.0")
        units.append(
            Units(
                m.features[i].out_channels, rows(f"features.{i}") + bn(f"features.{i + 1}") + reader
            )
        )
    units.append(Units(32, rows("classifier.0") + cols("classifier.3")))
    return units


class SizeArithmetic(nn.Module):
    """Pooling sized by `x.size()[3]`, `.squeeze()`, unpacked shapes and arithmetic on them."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        n, _, h, w = x.shape
        x = F.max_pool2d(x, kernel_size=(h // 2, w // 2))
        x = F.relu(self.conv2(x))
        x = F.avg_pool2d(x, x.size()[3])
        x = x.squeeze()
        x = F.relu(self.fc1(x.reshape(n, -1)))
        return self.fc2(x)


def size_units(m):
    return [
        Units(8, rows("conv1") + cols("conv2")),
        Units(12, rows("conv2") + cols("fc1")),
        Units(16, rows("fc1") + cols("fc2")),
    ]


class Flatten1Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = F.gelu(self.conv1(x))
        x = F.max_pool2d(F.gelu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc2(F.gelu(self.fc1(x)))


def flatten_units(m):
    return [
        Units(6, rows("conv1") + cols("conv2")),
        Units(8, rows("conv2") + cols("fc1", inner=16)),
        Units(16, rows("fc1") + cols("fc2")),
    ]


class ManyActivations(nn.Module):
    """Element-wise operations and dropouts found in public code, none of them special-cased by
    fusion."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.Hardswish()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.drop2d = nn.Dropout2d(0.1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.alpha_drop = nn.AlphaDropout(0.1)
        self.act3 = nn.Mish()
        self.fc1 = nn.Linear(8, 12)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, x):
        x = self.act1(self.conv1(x))
        x = self.conv2(x)
        x = x * torch.sigmoid(x)
        x = F.relu_(self.drop2d(x))
        x = self.conv3(x)
        x = torch.clamp(F.softplus(x), max=3.0)
        x = self.act3(self.alpha_drop(x))
        x = F.leaky_relu(F.elu(x), 0.1)
        x = F.dropout(F.adaptive_max_pool2d(x, 1).flatten(1), 0.1, self.training)
        x = F.hardtanh(F.silu(self.fc1(x)))
        return self.fc2(x)


def activations_units(m):
    return [
        Units(8, rows("conv1") + cols("conv2")),
        Units(8, rows("conv2") + cols("conv3")),
        Units(8, rows("conv3") + cols("fc1")),
        Units(12, rows("fc1") + cols("fc2")),
    ]


class NormalizedInput(nn.Module):
    """Input normalisation with registered buffers before the first layer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = x.clamp(-3, 3) * 0.5
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).view(x.size(0), -1))


def normalized_units(m):
    return [
        Units(8, rows("conv1") + bn("bn1") + cols("conv2")),
        Units(8, rows("conv2") + bn("bn2") + cols("fc")),
    ]


class GroupNormNet(nn.Module):
    """GroupNorm(1, C) (permutations are free) or GroupNorm(G, C) (units stay within their
    group)."""

    def __init__(self, groups=(1, 1)):
        super().__init__()
        self.conv1, self.gn1 = nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(groups[0], 8)
        self.conv2, self.gn2 = nn.Conv2d(8, 12, 3, padding=1), nn.GroupNorm(groups[1], 12)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


def groupnorm_units(m):
    units = []
    for conv, norm, reader in (("conv1", "gn1", "conv2"), ("conv2", "gn2", "fc")):
        groups, c = getattr(m, norm).num_groups, getattr(m, conv).out_channels
        for k in range(groups):  # one permutation per norm group
            off = k * c // groups
            units.append(
                Units(c // groups, rows(conv, offset=off) + affine(norm, off) + cols(reader, off))
            )
    return units


class ControlFlow(nn.Module):
    """Branches on input sizes and on extra forward arguments with defaults."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x, return_features=False, scale=None):
        if x.shape[-1] > 4:
            x = F.max_pool2d(self.conv(x), 2)
        else:
            x = self.conv(x)
        if x.size(1) == 8:
            x = F.relu(x)
        else:
            x = torch.tanh(x)
        features = F.relu(self.fc1(x.view(-1, 8 * 4 * 4)))
        if return_features:
            return features
        logits = self.fc2(features)
        if scale is not None:
            logits = logits * scale
        return logits


def control_units(m):
    return [Units(8, rows("conv") + cols("fc1", inner=16)), Units(16, rows("fc1") + cols("fc2"))]


class GatedConv(nn.Module):
    """A gated linear unit: one convolution's output split in two halves with `chunk`."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        a, b = self.conv1(x).chunk(2, dim=1)
        x = F.relu(self.conv2(a * torch.sigmoid(b)))
        return self.fc(x.mean((2, 3)))


def gated_units(m):
    return [
        Units(8, rows("conv1") + rows("conv1", offset=8) + cols("conv2")),
        Units(8, rows("conv2") + cols("fc")),
    ]


class ChannelsLastHead(nn.Module):
    """Features flattened channels-last (`permute(0, 2, 3, 1).reshape(n, -1)`) into a linear
    layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc1 = nn.Linear(6 * 4 * 4, 12)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        n = x.size(0)
        x = x.permute(0, 2, 3, 1).reshape(n, -1)
        return self.fc2(F.relu(self.fc1(x)))


def channels_last_units(m):
    return [
        Units(6, [*rows("conv"), Axis("fc1.weight", 1, outer=16)]),
        Units(12, rows("fc1") + cols("fc2")),
    ]


class TinyUNet(nn.Module):
    """Encoder-decoder: InstanceNorm, a transposed convolution, interpolation, and a skip
    concatenation."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.down1, self.norm1 = nn.Conv2d(3, 8, 3, padding=1), nn.InstanceNorm2d(8, affine=True)
        self.down2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, kernel_size=2, stride=2)
        self.head = nn.Conv2d(16, num_classes, 1)

    def forward(self, x):
        skip = F.relu(self.norm1(self.down1(x)))
        x = F.relu(self.down2(skip))
        x = F.interpolate(self.up(x), size=skip.shape[-2:], mode="nearest")
        x = self.head(torch.cat([skip, x], dim=1))
        return x.mean((2, 3))


def unet_units(m):
    return [
        Units(8, rows("down1") + affine("norm1") + cols("down2") + cols("head")),
        Units(16, [*rows("down2"), Axis("up.weight", 0)]),
        Units(8, [Axis("up.weight", 1), Axis("up.bias", 0), *cols("head", offset=8)]),
    ]


# --------------------------------------------------------------------- one construct at a time
# (probes)
class MlpProbe(nn.Module):
    """The reference MlpNet's constructs one at a time: `x.view(x.shape[0], -1)` or
    `F.log_softmax(x)`."""

    def __init__(self, variant):
        super().__init__()
        self.variant = variant
        self.fc1, self.fc2 = nn.Linear(64, 16, bias=False), nn.Linear(16, 10, bias=False)

    def forward(self, x):
        x = x.view(x.shape[0], -1) if self.variant == "view" else x.reshape(-1, 64)
        x = self.fc2(F.relu(self.fc1(x)))
        return F.log_softmax(x) if self.variant == "log_softmax" else x


class FlagProbe(MlpProbe):
    """... or `forward(self, x, disable_logits=False)` with an `if`."""

    def forward(self, x, disable_logits=False):
        x = self.fc2(F.relu(self.fc1(x.reshape(-1, 64))))
        if disable_logits:
            return x
        return x * 1.0


class PoolProbe(nn.Module):
    """`F.avg_pool2d(x, x.size()[3])` or `.squeeze()`, alone."""

    def __init__(self, variant):
        super().__init__()
        self.variant = variant
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        if self.variant == "size":
            return self.fc(F.avg_pool2d(x, x.size()[3]).view(-1, 8))
        return self.fc(F.adaptive_avg_pool2d(x, 1).squeeze())


def probe_units(m):
    if isinstance(m, MlpProbe):
        return [Units(16, rows("fc1", False) + cols("fc2"))]
    return [Units(8, rows("conv") + cols("fc"))]


# ------------------------------------------------------------------------------- operations that
# freeze
class ChannelFlip(nn.Module):
    """`x.flip(1)`: reverses the channel order, which no permutation of units commutes with."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x)).flip(1)
        x = F.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


def flip_units(m):
    return [Units(8, rows("conv2") + cols("fc"))]


class ChannelShuffle(nn.Module):
    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.size()
        x = x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous()
        return x.view(n, c, h, w)


class ShuffleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.shuffle = ChannelShuffle(2)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.shuffle(F.relu(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def shuffle_units(m):
    return [Units(8, rows("conv2") + bn("bn2") + cols("fc"))]


class EinsumMix(nn.Module):
    """A learned channel mixing written as an einsum with a parameter."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.mix = nn.Parameter(torch.randn(8, 8) / 3)
        self.fc1, self.fc2 = nn.Linear(8, 12), nn.Linear(12, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = torch.einsum("nchw,dc->ndhw", x, self.mix)
        x = F.relu(self.fc1(x.mean((2, 3))))
        return self.fc2(x)


def einsum_units(m):
    return [Units(12, rows("fc1") + cols("fc2"))]


# ------------------------------------------------------------------------------------------------
# attention
class BertSelfAttention(nn.Module):
    """Separate query/key/value layers, heads split with view + transpose, scores with matmul."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.dense = nn.Linear(d, d)

    def split_heads(self, x):
        b, t, _ = x.size()
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, mask):
        q, k, v = (
            self.split_heads(self.query(x)),
            self.split_heads(self.key(x)),
            self.split_heads(self.value(x)),
        )
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.head_dim**0.5 + mask
        context = torch.matmul(F.dropout(scores.softmax(dim=-1), 0.1, self.training), v)
        context = context.permute(0, 2, 1, 3).contiguous()
        return self.dense(context.view(context.size(0), context.size(1), -1))


class BertLayer(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.attention, self.ln1 = BertSelfAttention(d, heads), nn.LayerNorm(d)
        self.intermediate, self.output, self.ln2 = (
            nn.Linear(d, 2 * d),
            nn.Linear(2 * d, d),
            nn.LayerNorm(d),
        )

    def forward(self, x, mask):
        x = self.ln1(x + self.attention(x, mask))
        return self.ln2(x + self.output(F.gelu(self.intermediate(x))))


class TinyBert(nn.Module):
    """Token, position and segment embeddings, post-norm layers, an attention mask built from the
    ids."""

    def __init__(self, vocab=13, d=8, heads=2, positions=6, classes=3):
        super().__init__()
        self.word, self.position, self.segment = (
            nn.Embedding(vocab, d),
            nn.Embedding(positions, d),
            nn.Embedding(2, d),
        )
        self.register_buffer("position_ids", torch.arange(positions)[None], persistent=False)
        self.ln = nn.LayerNorm(d)
        self.layers = nn.ModuleList([BertLayer(d, heads) for _ in range(2)])
        self.pooler, self.classifier = nn.Linear(d, d), nn.Linear(d, classes)

    def forward(self, input_ids):
        t = input_ids.shape[1]
        mask = (1.0 - (input_ids > 0).float())[:, None, None, :] * -10000.0
        x = (
            self.word(input_ids)
            + self.position(self.position_ids[:, :t])
            + self.segment(torch.zeros_like(input_ids))
        )
        x = self.ln(x)
        for layer in self.layers:
            x = layer(x, mask)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


def bert_units(m):
    d, h = 8, 4
    stream = (
        [Axis(f"{e}.weight", 1) for e in ("word", "position", "segment")]
        + affine("ln")
        + cols("pooler")
    )
    units = []
    for i in range(2):
        p = f"layers.{i}"
        stream += (
            cols(f"{p}.attention.query") + cols(f"{p}.attention.key") + cols(f"{p}.attention.value")
        )
        stream += rows(f"{p}.attention.dense") + affine(f"{p}.ln1") + cols(f"{p}.intermediate")
        stream += rows(f"{p}.output") + affine(f"{p}.ln2")
        units.append(Units(2 * d, rows(f"{p}.intermediate") + cols(f"{p}.output")))
        for head in range(d // h):
            o = head * h
            units.append(
                Units(
                    h, rows(f"{p}.attention.query", offset=o) + rows(f"{p}.attention.key", offset=o)
                )
            )
            units.append(
                Units(
                    h,
                    rows(f"{p}.attention.value", offset=o) + cols(f"{p}.attention.dense", offset=o),
                )
            )
    return [Units(d, stream), Units(d, rows("pooler") + cols("classifier")), *units]


class TimmAttention(nn.Module):
    """One qkv layer, reshaped to (3, B, heads, N, head_dim) with permute and unbind, then SDPA."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = (
            self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        )
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class VitBlock(nn.Module):
    def __init__(self, d, heads, attention):
        super().__init__()
        self.norm1, self.attn, self.norm2 = nn.LayerNorm(d), attention(d, heads), nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TimmVit(nn.Module):
    """Patch convolution, class token concatenated, learned position embedding added, pre-norm
    blocks."""

    def __init__(self, d=8, heads=2, classes=3):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, d, 4, 4)
        self.cls_token, self.pos_embed = (
            nn.Parameter(torch.randn(1, 1, d)),
            nn.Parameter(torch.randn(1, 5, d)),
        )
        self.blocks = nn.Sequential(*[VitBlock(d, heads, TimmAttention) for _ in range(2)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def vit_stream(m, blocks, attn_in):
    stream = [
        *rows("patch_embed"),
        Axis("cls_token", 2),
        Axis("pos_embed", 2),
        *affine("norm"),
        *cols("head"),
    ]
    for i in range(blocks):
        p = f"blocks.{i}"
        stream += (
            affine(f"{p}.norm1")
            + attn_in(p)
            + affine(f"{p}.norm2")
            + cols(f"{p}.fc1")
            + rows(f"{p}.fc2")
        )
    return stream


def timm_vit_units(m):
    d, h = 8, 4
    units = [Units(d, vit_stream(m, 2, lambda p: cols(f"{p}.attn.qkv") + rows(f"{p}.attn.proj")))]
    for i in range(2):
        p = f"blocks.{i}"
        units.append(Units(2 * d, rows(f"{p}.fc1") + cols(f"{p}.fc2")))
        for head in range(d // h):
            o = head * h
            units.append(
                Units(h, rows(f"{p}.attn.qkv", offset=o) + rows(f"{p}.attn.qkv", offset=d + o))
            )
            units.append(
                Units(h, rows(f"{p}.attn.qkv", offset=2 * d + o) + cols(f"{p}.attn.proj", offset=o))
            )
    return units


class MhaAttention(nn.Module):
    """nn.MultiheadAttention (packed in_proj_weight), as torchvision's ViT uses it."""

    def __init__(self, d, heads):
        super().__init__()
        self.mha = nn.MultiheadAttention(d, heads, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


class MhaVit(TimmVit):
    def __init__(self, d=8, heads=2, classes=3):
        super().__init__(d, heads, classes)
        self.blocks = nn.Sequential(*[VitBlock(d, heads, MhaAttention) for _ in range(2)])


def mha_vit_units(m):
    d, h = 8, 4
    stream = vit_stream(
        m, 2, lambda p: [Axis(f"{p}.attn.mha.in_proj_weight", 1), *rows(f"{p}.attn.mha.out_proj")]
    )
    units = [Units(d, stream)]
    for i in range(2):
        p, a = f"blocks.{i}", f"blocks.{i}.attn.mha"
        units.append(Units(2 * d, rows(f"{p}.fc1") + cols(f"{p}.fc2")))
        for head in range(d // h):
            o = head * h
            packed = [
                Axis(f"{a}.in_proj_{k}", 0, off + o) for k in ("weight", "bias") for off in (0, d)
            ]
            units.append(Units(h, packed))
            units.append(
                Units(
                    h,
                    [Axis(f"{a}.in_proj_{k}", 0, 2 * d + o) for k in ("weight", "bias")]
                    + cols(f"{a}.out_proj", offset=o),
                )
            )
    return units


class Conv1D(nn.Module):
    """A linear layer with its weight stored (in, out), applied with addmm on the flattened
    batch."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight, self.bias = (
            nn.Parameter(torch.randn(nx, nf) * 0.3),
            nn.Parameter(torch.zeros(nf)),
        )

    def forward(self, x):
        size_out = (*x.size()[:-1], self.nf)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)


class Gpt2Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.head_dim, self.split_size = heads, d // heads, d
        self.c_attn, self.c_proj = Conv1D(3 * d, d), Conv1D(d, d)

    def _split_heads(self, x):
        return x.view((*x.size()[:-1], self.heads, self.head_dim)).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.c_attn(x).split(self.split_size, dim=2)
        out = F.scaled_dot_product_attention(
            self._split_heads(q), self._split_heads(k), self._split_heads(v), is_causal=True
        )
        out = out.transpose(1, 2).contiguous()
        return self.c_proj(out.view((*out.size()[:-2], self.heads * self.head_dim)))


class Gpt2Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(d), Gpt2Attention(d, heads), nn.LayerNorm(d)
        self.c_fc, self.c_proj = Conv1D(2 * d, d), Conv1D(d, 2 * d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class TinyGpt2(nn.Module):
    """Token and position embeddings, causal SDPA, an LM head tied to the token embedding."""

    def __init__(self, vocab=13, d=8, heads=2, positions=6):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(positions, d)
        self.h = nn.ModuleList([Gpt2Block(d, heads) for _ in range(2)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, input_ids):
        positions = torch.arange(input_ids.size(-1), device=input_ids.device)[None]
        x = self.wte(input_ids) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def conv1d_rows(prefix: str, offset: int = 0) -> list[Axis]:
    """A Conv1D layer's output units: weight columns (stored (in, out)) and bias."""
    return [Axis(f"{prefix}.weight", 1, offset), Axis(f"{prefix}.bias", 0, offset)]


def gpt2_units(m):
    d, h = 8, 4
    stream = [
        Axis("wte.weight", 1),
        Axis("wpe.weight", 1),
        Axis("lm_head.weight", 1),
        *affine("ln_f"),
    ]
    units = []
    for i in range(2):
        p = f"h.{i}"
        stream += [*affine(f"{p}.ln_1"), Axis(f"{p}.attn.c_attn.weight", 0), *affine(f"{p}.ln_2")]
        stream += [
            Axis(f"{p}.c_fc.weight", 0),
            *conv1d_rows(f"{p}.attn.c_proj"),
            *conv1d_rows(f"{p}.c_proj"),
        ]
        units.append(Units(2 * d, [*conv1d_rows(f"{p}.c_fc"), Axis(f"{p}.c_proj.weight", 0)]))
        for head in range(d // h):
            o = head * h
            units.append(
                Units(
                    h, conv1d_rows(f"{p}.attn.c_attn", o) + conv1d_rows(f"{p}.attn.c_attn", d + o)
                )
            )
            units.append(
                Units(
                    h,
                    [
                        *conv1d_rows(f"{p}.attn.c_attn", 2 * d + o),
                        Axis(f"{p}.attn.c_proj.weight", 0, o),
                    ],
                )
            )
    return [Units(d, stream), *units]


@dataclass
class Case:
    build: object  # () -> model
    units: object  # model -> list[Units]
    shape: tuple = (3, 8, 8)
    frozen: str = ""  # the operation that freezes units (named in the warning), "" if none
    constructs: tuple = ()  # the constructs this model exercises
    vocab: int = 0  # > 0: the inputs are token ids in [1, vocab) of length shape[0]


CORPUS: dict[str, Case] = {
    "mlpnet-reference": Case(
        MlpNet,
        mlpnet_units,
        (1, 8, 8),
        constructs=("x.shape[0]", "forward argument with default + if", "log_softmax"),
    ),
    "softmax-temperature": Case(
        SoftmaxHead,
        lambda m: [Units(24, rows("net.0") + cols("net.2"))],
        (1, 8, 8),
        constructs=("nn.Softmax", "temperature", "scaling after logits", ".flatten(1)"),
    ),
    "layernorm-mlp": Case(
        LayerNormMlp,
        lambda m: [
            Units(24, rows("fc1") + affine("ln1") + cols("fc2")),
            Units(16, rows("fc2") + affine("ln2") + cols("head")),
        ],
        (1, 8, 8),
        constructs=("LayerNorm", "GELU"),
    ),
    "shared-layer": Case(
        SharedLayer,
        lambda m: [Units(8, rows("fc") + rows("mid") + cols("mid") + cols("out"))],
        (1, 8, 8),
        constructs=("layer with parameters called twice",),
    ),
    "two-towers-cat": Case(
        TwoTowers,
        lambda m: [Units(4, rows("a") + cols("out")), Units(6, rows("b") + cols("out", offset=4))],
        (1, 8, 8),
        constructs=("torch.cat along features",),
    ),
    "tv-resnet-basic": Case(
        lambda: TvResNet(BasicBlock, [2, 1]),
        tv_basic_units,
        constructs=("shared nn.ReLU(inplace) called twice per block", "out += identity"),
    ),
    "tv-resnet-bottleneck": Case(
        lambda: TvResNet(Bottleneck, [1, 1]),
        tv_bottleneck_units,
        constructs=("shared nn.ReLU(inplace) called three times",),
    ),
    "resnet-option-a": Case(
        ResNetA,
        resnet_a_units,
        constructs=("strided slicing + F.pad zero channels shortcut", "x.size()[3]"),
    ),
    "densenet": Case(DenseNet, densenet_units, constructs=("torch.cat along channels",)),
    "mobilenet-v3": Case(
        MobileNet,
        mobilenet_units,
        constructs=("depthwise conv", "Hardswish", "SE gate multiply", "Hardsigmoid"),
    ),
    "separable-multiplier": Case(
        SeparableNet, separable_units, constructs=("depthwise conv with channel multiplier", "SiLU")
    ),
    "convnext": Case(
        ConvNeXt,
        convnext_units,
        constructs=(
            "channels-last LayerNorm and Linear",
            "layer-scale parameter",
            "hand-written channels-first LayerNorm",
            "x.mean([-2, -1])",
        ),
    ),
    "vgg-mean-head": Case(VggMeanHead, vgg_units, constructs=("x.mean((2, 3))",)),
    "size-arithmetic": Case(
        SizeArithmetic,
        size_units,
        constructs=("x.size()[3]", ".squeeze()", "shape unpacking and arithmetic"),
    ),
    "flatten-gelu": Case(Flatten1Gelu, flatten_units, constructs=(".flatten(1)", "GELU")),
    "many-activations": Case(
        ManyActivations,
        activations_units,
        constructs=(
            "Hardswish",
            "SiLU",
            "Mish",
            "F.relu_",
            "x * sigmoid(x)",
            "clamp",
            "Dropout2d",
            "AlphaDropout",
            "F.dropout",
        ),
    ),
    "normalized-input": Case(
        NormalizedInput,
        normalized_units,
        constructs=("(x - mean) / std buffers before the first layer",),
    ),
    "groupnorm-1": Case(
        lambda: GroupNormNet((1, 1)), groupnorm_units, constructs=("GroupNorm(1, C)",)
    ),
    "groupnorm-g": Case(
        lambda: GroupNormNet((4, 3)), groupnorm_units, constructs=("GroupNorm(G > 1, C)",)
    ),
    "control-flow": Case(
        ControlFlow,
        control_units,
        constructs=("control flow on input sizes", "extra forward arguments with defaults"),
    ),
    "gated-chunk": Case(
        GatedConv, gated_units, constructs=("chunk along channels", "gate multiply")
    ),
    "channels-last-head": Case(
        ChannelsLastHead,
        channels_last_units,
        constructs=("permute(0, 2, 3, 1).reshape(n, -1) into a Linear",),
    ),
    "tiny-unet": Case(
        TinyUNet,
        unet_units,
        constructs=("ConvTranspose2d", "InstanceNorm2d", "F.interpolate", "skip torch.cat"),
    ),
    "probe-view-shape0": Case(
        lambda: MlpProbe("view"),
        probe_units,
        (1, 8, 8),
        constructs=("x.view(x.shape[0], -1) alone",),
    ),
    "probe-log-softmax": Case(
        lambda: MlpProbe("log_softmax"),
        probe_units,
        (1, 8, 8),
        constructs=("F.log_softmax(x) alone",),
    ),
    "probe-forward-flag": Case(
        lambda: FlagProbe("flag"),
        probe_units,
        (1, 8, 8),
        constructs=("forward(x, disable_logits=False) with an if, alone",),
    ),
    "probe-size3-pool": Case(
        lambda: PoolProbe("size"), probe_units, constructs=("x.size()[3] alone",)
    ),
    "probe-squeeze": Case(
        lambda: PoolProbe("squeeze"), probe_units, constructs=(".squeeze() alone",)
    ),
    "bert-style": Case(
        TinyBert,
        bert_units,
        (6,),
        vocab=13,
        constructs=(
            "token/position/segment embeddings",
            "view + transpose heads",
            "matmul scores",
            "attention mask from the ids",
            "post-norm LayerNorm",
        ),
    ),
    "timm-style-vit": Case(
        TimmVit,
        timm_vit_units,
        constructs=(
            "fused qkv reshape(B, N, 3, H, D).permute.unbind",
            "SDPA",
            "class token cat",
            "position embedding parameter",
        ),
    ),
    "mha-vit": Case(MhaVit, mha_vit_units, constructs=("nn.MultiheadAttention in_proj_weight",)),
    "gpt2-style": Case(
        TinyGpt2,
        gpt2_units,
        (6,),
        vocab=13,
        constructs=(
            "Conv1D addmm (weight stored (in, out))",
            "fused c_attn split",
            "causal SDPA",
            "LM head tied to the token embedding",
        ),
    ),
    "channel-flip": Case(
        ChannelFlip, flip_units, frozen="aten.flip", constructs=("x.flip(1): frozen",)
    ),
    "channel-shuffle": Case(
        ShuffleNet, shuffle_units, frozen="aten.view", constructs=("channel shuffle: frozen",)
    ),
    "einsum-mix": Case(
        EinsumMix,
        einsum_units,
        frozen="aten.einsum",
        constructs=("learned channel-mixing einsum: frozen",),
    ),
}


def build(name: str, seed: int = 0) -> nn.Module:
    """Corpus model `name` with seeded random weights, norm statistics and affine parameters (eval
    mode)."""
    torch.manual_seed(seed)
    return randomize(CORPUS[name].build(), seed)


def inputs(name: str, n: int = 64, seed: int = 5) -> torch.Tensor:
    g, case = torch.Generator().manual_seed(seed), CORPUS[name]
    if case.vocab:
        return torch.randint(1, case.vocab, (n, *case.shape), generator=g)
    return torch.randn(n, *case.shape, generator=g)
