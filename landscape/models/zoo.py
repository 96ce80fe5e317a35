"""Model zoo: MLP, VGG11 and ResNet18 (CIFAR forms), with width, BatchNorm and biases optional.

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
    """`channels` times `width`, rounded, at least 1.

    Returns:
        The scaled count.
    """
    return max(1, round(channels * width))


class MLP(nn.Module):
    """Fully connected ReLU network: flatten, then Linear (BatchNorm) ReLU per hidden layer, Linear.

    The OT-fusion paper's MLPNet (Singh & Jaggi, "Model Fusion via Optimal Transport", NeurIPS
    2020) is the default, 400-200-100.

    Args:
        input_shape: one example's shape (its values are flattened).
        num_classes: the number of outputs.
        hidden: the hidden layers' widths.
        width: a multiplier of every hidden width (rounded, at least 1).
        bn: a BatchNorm1d after every hidden Linear.
        bias: biases in every Linear.

    Examples:
        >>> import torch
        >>> net = MLP((1, 2, 2), 3, hidden=(5,))
        >>> net(torch.zeros(7, 1, 2, 2)).shape
        torch.Size([7, 3])
        >>> sum(p.numel() for p in net.parameters())  # 4 * 5 + 5 + 5 * 3 + 3
        43
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
        """The logits of inputs `x`.

        Args:
            x: inputs (N, *input_shape).

        Returns:
            The logits (N, num_classes).
        """
        return self.classifier(self.features(self.flatten(x)))


class VGG(nn.Module):
    """VGG in its CIFAR form: 3x3 convolutions, max pooling, one linear classifier.

    Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
    ICLR 2015, with the classifier of its CIFAR adaptations (one Linear layer). A pooling that would
    shrink the map below 1x1 is skipped.

    Args:
        input_shape: one example's shape (C, H, W).
        num_classes: the number of outputs.
        cfg: output channels of each convolution, "M" for a 2x2 max pooling.
        width: a multiplier of every convolution's channels (rounded, at least 1).
        bn: a BatchNorm2d after every convolution.
        bias: biases in the convolutions.
        head_bias: a bias in the classifier.

    Examples:
        >>> import torch
        >>> net = VGG((3, 4, 4), 10, cfg=(8, "M", 16, "M", "M"), width=0.5)
        >>> net(torch.zeros(2, 3, 4, 4)).shape
        torch.Size([2, 10])
        >>> sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())  # 4x4 -> 2x2 -> 1x1
        2
        >>> net.classifier.in_features  # 16 * 0.5 channels of 1x1
        8
    """

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
        """The logits of inputs `x`.

        Args:
            x: inputs (N, *input_shape).

        Returns:
            The logits (N, num_classes).
        """
        return self.classifier(self.flatten(self.features(x)))


def _spatial_out(features: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """The height and width of the feature map of one input of `input_shape`.

    Returns:
        `(height, width)`.
    """
    with torch.no_grad():
        was = features.training
        features.eval()
        out = features(torch.zeros(1, *input_shape))
        features.train(was)
    return int(out.shape[-2]), int(out.shape[-1])


def _norm(bn: bool, channels: int) -> nn.Module:
    """A BatchNorm2d over `channels`, or an identity without BatchNorm.

    Returns:
        The module.
    """
    return nn.BatchNorm2d(channels) if bn else nn.Identity()


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a skip connection, projected when shapes change.

    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; the projection is a 1x1
    convolution (with BatchNorm when `bn`).

    Args:
        in_ch: the input channels.
        out_ch: the output channels.
        stride: the first convolution's stride (2 halves the map).
        bn: BatchNorm after every convolution.
        bias: biases in the convolutions.

    Examples:
        >>> import torch
        >>> block = BasicBlock(4, 8, stride=2, bn=True, bias=False)
        >>> block(torch.zeros(1, 4, 6, 6)).shape
        torch.Size([1, 8, 3, 3])
        >>> len(block.shortcut), len(BasicBlock(4, 4, 1, bn=False, bias=True).shortcut)
        (2, 0)
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
        """The block's output on feature maps `x`.

        Args:
            x: feature maps (N, in_ch, H, W).

        Returns:
            Feature maps (N, out_ch, H / stride, W / stride), after the last ReLU.
        """
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet in its CIFAR form: 3x3 stem, no max pool, four stages, average pooling, linear head.

    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, with the stem of its
    common CIFAR adaptation; the stages have 64, 128, 256 and 512 channels times `width`.

    Args:
        input_shape: one example's shape (C, H, W).
        num_classes: the number of outputs.
        blocks: the basic blocks of each of the four stages ((2, 2, 2, 2): ResNet18).
        width: a multiplier of every convolution's channels (rounded, at least 1).
        bn: BatchNorm after every convolution.
        bias: biases in the convolutions.
        head_bias: a bias in the linear head.

    Examples:
        >>> import torch
        >>> net = ResNet((3, 8, 8), 10, blocks=(1, 1, 1, 1), width=0.125)
        >>> net(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 10])
        >>> net.linear.in_features  # 512 * 0.125
        64
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
        """The logits of inputs `x`.

        Args:
            x: inputs (N, *input_shape).

        Returns:
            The logits (N, num_classes).
        """
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.flatten(self.pool(out)))


def mlp(
    input_shape, num_classes, hidden=(400, 200, 100), width=1.0, bn=False, bias=True
) -> nn.Module:
    """MLP factory (see `MLP`).

    Args:
        input_shape: one example's shape.
        num_classes: the number of outputs.
        hidden: the hidden layers' widths.
        width: a multiplier of every hidden width.
        bn: a BatchNorm1d after every hidden Linear.
        bias: biases in every Linear.

    Returns:
        The `MLP`.

    Examples:
        >>> import torch
        >>> net = mlp((1, 28, 28), 10, width=0.5)
        >>> [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
        [200, 100, 50, 10]
    """
    return MLP(input_shape, num_classes, hidden, width, bn, bias)


def vgg11(input_shape, num_classes, width=1.0, bn=True, bias=False, head_bias=True) -> nn.Module:
    """VGG11 factory, CIFAR form (see `VGG`).

    Args:
        input_shape: one example's shape (C, H, W).
        num_classes: the number of outputs.
        width: a multiplier of every convolution's channels.
        bn: a BatchNorm2d after every convolution.
        bias: biases in the convolutions.
        head_bias: a bias in the classifier.

    Returns:
        The `VGG` with VGG11's eight convolutions.

    Examples:
        >>> import torch
        >>> net = vgg11((3, 32, 32), 10, width=0.125)
        >>> [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        [8, 16, 32, 32, 64, 64, 64, 64]
    """
    return VGG(input_shape, num_classes, VGG11_CFG, width, bn, bias, head_bias)


def resnet18(input_shape, num_classes, width=1.0, bn=True, bias=False, head_bias=True) -> nn.Module:
    """ResNet18 factory, CIFAR form (see `ResNet`).

    Args:
        input_shape: one example's shape (C, H, W).
        num_classes: the number of outputs.
        width: a multiplier of every convolution's channels.
        bn: BatchNorm after every convolution.
        bias: biases in the convolutions.
        head_bias: a bias in the linear head.

    Returns:
        The `ResNet` with two basic blocks per stage.

    Examples:
        >>> import torch
        >>> net = resnet18((3, 32, 32), 10, width=0.125)
        >>> sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())  # 1 + 8 * 2 + 3 shortcuts
        20
    """
    return ResNet(input_shape, num_classes, (2, 2, 2, 2), width, bn, bias, head_bias)


ARCHS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "vgg11": vgg11, "resnet18": resnet18}


def resolve_factory(arch: str) -> Callable[..., nn.Module]:
    """The factory for a zoo name or a user's `package.module:factory`.

    Args:
        arch: mlp, vgg11, resnet18, or `package.module:factory`.

    Returns:
        The callable that builds the model from keyword arguments.

    Raises:
        LandscapeError: the module or its attribute cannot be imported (`check_choice` raises it
            for an unknown zoo name).

    Examples:
        >>> import torch
        >>> resolve_factory("mlp") is mlp, resolve_factory("torch.nn:Linear") is torch.nn.Linear
        (True, True)
        >>> resolve_factory("vgg16")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: unknown arch 'vgg16'; choose one of mlp, vgg11, ...
    """
    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise LandscapeError(f"cannot import architecture factory {arch!r}: {exc}") from None
    return ARCHS[check_choice(arch, ARCHS, "arch", hint="or give package.module:factory")]


def build_model(arch: str, arch_kwargs: dict) -> nn.Module:
    """Build a model from its architecture name and keyword arguments; the module keeps its spec.

    The spec (`landscape.spec.spec_of`) is what a checkpoint records to rebuild the model.

    Args:
        arch: a zoo name, a user's `package.module:factory`, or a library model:
            `torchvision:NAME`, `timm:NAME`, `hf:DIR`
            (`landscape.models.libraries.build_library_model`).
        arch_kwargs: the factory's keyword arguments.

    Returns:
        The model (random weights).

    Raises:
        LandscapeError: the factory refuses the arguments (missing ones, unknown ones).

    Examples:
        >>> from landscape.spec import spec_of
        >>> net = build_model("mlp", {"input_shape": [1, 2, 2], "num_classes": 3, "hidden": [5]})
        >>> spec_of(net).arch, spec_of(net).num_classes
        ('mlp', 3)
        >>> build_model("torch.nn:Linear", {"in_features": 2, "out_features": 1}).weight.shape
        torch.Size([1, 2])
        >>> build_model("mlp", {})
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: bad arguments for arch 'mlp': mlp() missing 2 required ...
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
    """The full `arch_kwargs` for data of `input_shape` with `num_classes`; non-None overrides win.

    A library model takes the number of classes only (`num_labels` for transformers); its input
    size, where it has one (a ViT's `img_size`), is given in the overrides.

    Args:
        arch: the architecture name.
        input_shape: one example's shape.
        num_classes: the number of classes.
        **overrides: further arguments (tuples stored as lists); None values are left out.

    Returns:
        The keyword arguments, as a checkpoint stores them.

    Examples:
        >>> arch_kwargs_for("mlp", (1, 8, 8), 10, width=2.0, bn=None)
        {'input_shape': [1, 8, 8], 'num_classes': 10, 'width': 2.0}
        >>> arch_kwargs_for("timm:vit_tiny_patch16_224", (3, 32, 32), 10, img_size=(32, 32))
        {'num_classes': 10, 'img_size': [32, 32]}
        >>> arch_kwargs_for("hf:DIR", (), 2)
        {'num_labels': 2}
    """
    if is_library_arch(arch):
        kwargs = {"num_labels" if arch.startswith("hf:") else "num_classes": int(num_classes)}
    else:
        kwargs = {"input_shape": [int(s) for s in input_shape], "num_classes": int(num_classes)}
    kwargs.update(
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items() if v is not None}
    )
    return kwargs
