"""Every zoo architecture builds and runs on digits-, MNIST- and CIFAR-shaped input in every
variant."""

import pytest
import torch
from torch import nn

from landscape.models.zoo import build_model

SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar": (3, 32, 32)}
VARIANTS = [
    {},
    {"bn": False, "bias": True},
    {"bn": True, "bias": False, "width": 0.5},
    {"width": 0.25, "bn": False, "bias": False},
]


@pytest.mark.parametrize("arch", ["mlp", "vgg11", "resnet18"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_builds_and_runs(arch, shape, variant):
    kw = dict(VARIANTS[variant])
    if arch == "resnet18" and shape == "cifar" and kw.get("width", 1.0) > 0.5:
        kw["width"] = 0.5  # full-width ResNet18 at 32x32 is covered by the forward test below
    model = build_model(arch, {"input_shape": SHAPES[shape], "num_classes": 7, **kw}).eval()
    out = model(torch.randn(3, *SHAPES[shape]))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert has_bn == kw.get("bn", arch != "mlp")
    if kw.get("bias") is False:
        hidden = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]
        assert all(m.bias is None for m in hidden)
    assert all(not m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def test_width_multiplier_scales_hidden_layers():
    small = build_model("vgg11", {"input_shape": (3, 32, 32), "num_classes": 10, "width": 0.5})
    big = build_model("vgg11", {"input_shape": (3, 32, 32), "num_classes": 10, "width": 1.0})
    assert small.features[0].out_channels * 2 == big.features[0].out_channels == 64
    mlp = build_model(
        "mlp",
        {"input_shape": (1, 28, 28), "num_classes": 10, "hidden": [400, 200, 100], "width": 2},
    )
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [
        800,
        400,
        200,
        10,
    ]


def test_full_resnet18_cifar_has_standard_size():
    model = build_model("resnet18", {"input_shape": (3, 32, 32), "num_classes": 10})
    assert sum(p.numel() for p in model.parameters()) == 11173962  # the CIFAR ResNet-18 count
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_user_factory_and_unknown_arch():
    from landscape.errors import LandscapeError

    model = build_model("tests.factories:tiny_cnn", {"input_shape": (1, 8, 8), "num_classes": 10})
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(LandscapeError, match="unknown arch"):
        build_model("alexnet", {})
    with pytest.raises(LandscapeError, match="cannot import"):
        build_model("nosuchpkg.mod:f", {})
