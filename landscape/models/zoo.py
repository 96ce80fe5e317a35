"""Model zoo: MLP, VGG11 and ResNet18 (CIFAR forms) with width multiplier, optional BatchNorm and
biases.

Every activation is its own non-inplace `nn.ReLU` module so that hooks and torch.fx see
pre-activations. Models work on any input shape `(C, H, W)`; pooling that would shrink a map below
1x1 is skipped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import LandscapeError, check_choice
from ..spec import attach_spec
from .libraries import build_library_model, is_library_arch

VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class MLP(nn.Module):
    """Fully connected ReLU network; `hidden` lists the widths (the OT-fusion paper's MLPNet is
    400-200-100).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (400, 200, 100),
        width: float = 1.0,
        bn: bool = False,
        bias: bool = True,
    ):
        super().__init__()
        self.flatten = nn.Flatten()
        layers: list[nn.Module] = []
        fan_in = int(torch.tensor(list(input_shape)).prod())
        for h in hidden:
            h = _scaled(h, width)
            layers.append(nn.Linear(fan_in, h, bias=bias))
            if bn:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            fan_in = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(fan_in, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.flatten(x)))


class VGG(nn.Module):
    """VGG in its CIFAR form: 3x3 convolutions, max pooling, one linear classifier."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        cfg: Sequence = VGG11_CFG,
        width: float = 1.0,
        bn: bool = True,
        bias: bool = False,
        head_bias: bool = True,
    ):
        super().__init__()
        in_ch, size = int(input_shape[0]), int(min(input_shape[1:]))
        layers: list[nn.Module] = []
        for v in cfg:
            if v == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = _scaled(v, width)
            layers.append(nn.Conv2d(in_ch, out, 3, padding=1, bias=bias))
            if bn:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU())
            in_ch = out
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        h, w = _spatial_out(self.features, input_shape)
        self.classifier = nn.Linear(in_ch * h * w, num_classes, bias=head_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def _spatial_out(features: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    with torch.no_grad():
        was = features.training
        features.eval()
        out = features(torch.zeros(1, *input_shape))
        features.train(was)
    return int(out.shape[-2]), int(out.shape[-1])


def _norm(bn: bool, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if bn else nn.Identity()


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a (projected when shapes change) skip
    connection.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, bn: bool, bias: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=bias)
        self.bn1 = _norm(bn, out_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias)
        self.bn2 = _norm(bn, out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=bias), _norm(bn, out_ch)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet in its CIFAR form (3x3 stem, no initial max pool), global average pooling, linear
    head.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        blocks: Sequence[int] = (2, 2, 2, 2),
        width: float = 1.0,
        bn: bool = True,
        bias: bool = False,
        head_bias: bool = True,
    ):
        super().__init__()
        ch = _scaled(64, width)
        self.conv1 = nn.Conv2d(int(input_shape[0]), ch, 3, padding=1, bias=bias)
        self.bn1 = _norm(bn, ch)
        self.relu = nn.ReLU()
        stages = []
        in_ch = ch
        for i, n in enumerate(blocks):
            out_ch = _scaled(64 * 2**i, width)
            layer = [
                BasicBlock(
                    in_ch if j == 0 else out_ch,
                    out_ch,
                    (1 if i == 0 else 2) if j == 0 else 1,
                    bn,
                    bias,
                )
                for j in range(n)
            ]
            stages.append(nn.Sequential(*layer))
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(in_ch, num_classes, bias=head_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.flatten(self.pool(out)))


def mlp(
    input_shape, num_classes, hidden=(400, 200, 100), width=1.0, bn=False, bias=True
) -> nn.Module:
    """MLP factory (see `MLP`)."""
    return MLP(input_shape, num_classes, hidden, width, bn, bias)


def vgg11(input_shape, num_classes, width=1.0, bn=True, bias=False, head_bias=True) -> nn.Module:
    """VGG11 factory, CIFAR form; `bias` is for the convolutions, `head_bias` for the classifier."""
    return VGG(input_shape, num_classes, VGG11_CFG, width, bn, bias, head_bias)


def resnet18(input_shape, num_classes, width=1.0, bn=True, bias=False, head_bias=True) -> nn.Module:
    """ResNet18 factory, CIFAR form; `bias` is for the convolutions, `head_bias` for the
    classifier.
    """
    return ResNet(input_shape, num_classes, (2, 2, 2, 2), width, bn, bias, head_bias)


ARCHS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "vgg11": vgg11, "resnet18": resnet18}


def resolve_factory(arch: str) -> Callable[..., nn.Module]:
    """The factory for a zoo name or a user's `package.module:factory`."""
    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise LandscapeError(f"cannot import architecture factory {arch!r}: {exc}") from None
    return ARCHS[check_choice(arch, ARCHS, "arch", hint="or give package.module:factory")]


def build_model(arch: str, arch_kwargs: dict) -> nn.Module:
    """Build a model from its architecture name and keyword arguments; the spec is remembered on the
    module.

    `arch` is a zoo name, a user's `package.module:factory`, or a library model: `torchvision:NAME`,
    `timm:NAME`, `hf:DIR` (`landscape.models.libraries.build_library_model`).
    """
    if is_library_arch(arch):
        model, spec = build_library_model(arch, arch_kwargs)
        model.landscape_spec = spec
        return model
    factory = resolve_factory(arch)
    try:
        model = factory(**arch_kwargs)
    except TypeError as exc:
        shape = (
            " (pass `data`, which gives input_shape and num_classes, or put them in `arch_kwargs`)"
            if any(f"'{name}'" in str(exc) for name in ("input_shape", "num_classes"))
            else ""
        )
        raise LandscapeError(f"bad arguments for arch {arch!r}: {exc}{shape}") from None
    attach_spec(model, arch, arch_kwargs)
    return model


def arch_kwargs_for(
    arch: str, input_shape: Sequence[int], num_classes: int, /, **overrides
) -> dict:
    """The full `arch_kwargs` for data of `input_shape` with `num_classes`; non-None `overrides`
    win. A library model takes the number of classes only (`num_labels` for transformers); its input
    size, where it has one (a ViT's `img_size`), is given in the overrides.
    """
    if is_library_arch(arch):
        kwargs = {"num_labels" if arch.startswith("hf:") else "num_classes": int(num_classes)}
    else:
        kwargs = {"input_shape": [int(s) for s in input_shape], "num_classes": int(num_classes)}
    kwargs.update(
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items() if v is not None}
    )
    return kwargs
