"""Structured pruning by L1 norm (fusion.prune_units): which units go, and that the narrower model
computes exactly what the dense one computes with those units silenced."""

import pytest
import torch
from torch import nn

from fusion import fuse, prune_units
from landscape.errors import LandscapeError
from landscape.io.checkpoint import load_checkpoint, save_checkpoint
from landscape.models.zoo import build_model


def _silenced(model: nn.Module, consumer: str, removed: list[int], per: int = 1) -> nn.Module:
    """The dense model with the removed units' outgoing weights zeroed (what pruning them means)."""
    out = build_model(model.landscape_spec["arch"], model.landscape_spec["arch_kwargs"])
    out.load_state_dict(model.state_dict())
    weight = dict(out.named_modules())[consumer].weight
    with torch.no_grad():
        for u in removed:
            weight[:, u * per : (u + 1) * per] = 0
    return out.eval()


def test_mlp_units_of_smallest_l1_norm_go_and_the_function_is_kept():
    torch.manual_seed(0)
    model = build_model(
        "mlp", {"input_shape": [1, 2, 2], "num_classes": 3, "hidden": [4, 3]}
    ).eval()
    with torch.no_grad():
        model.features[0].weight.copy_(
            torch.tensor([[1.0, 1, 1, 1], [0.1, 0, 0, 0], [-2, 0, 0, 0], [0, 0.5, 0, 0]])
        )
    pruned = prune_units(model, "features.0", 0.5)  # L1 norms 4, 0.1, 2, 0.5: units 1 and 3 go
    assert pruned.features[0].weight.tolist() == [[1.0, 1, 1, 1], [-2, 0, 0, 0]]
    assert pruned.features[2].weight.shape == (3, 2)
    x = torch.randn(7, 1, 2, 2)
    assert torch.allclose(pruned(x), _silenced(model, "features.2", [1, 3])(x), atol=1e-6)
    assert pruned.landscape_spec["arch_kwargs"]["hidden"] == [2, 3]


def test_pruned_mlp_checkpoint_rebuilds(tmp_path):
    model = build_model(
        "mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16, 8], "width": 2.0}
    )
    pruned = prune_units(model, "features.2", 0.25)  # width 2: hidden 32, 16; 4 of the 16 units go
    save_checkpoint(pruned, tmp_path / "p.pt")
    loaded = load_checkpoint(tmp_path / "p.pt")[0]
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(loaded(x), pruned(x)) and loaded.features[2].out_features == 12


def test_vgg_filters_conv_to_conv_and_conv_to_linear_with_batchnorm():
    torch.manual_seed(1)
    spec = {"input_shape": [3, 8, 8], "num_classes": 5, "width": 0.0625}
    model = build_model("vgg11", spec)
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    for layer, consumer in ((convs[0], convs[1]), (convs[-1], "classifier")):
        pruned = prune_units(model, layer, 0.5)
        norms = dict(model.named_modules())[layer].weight.abs().sum((1, 2, 3))
        removed = sorted(torch.argsort(norms)[: len(norms) // 2].tolist())
        per = model.classifier.in_features // len(norms) if consumer == "classifier" else 1
        silenced = _silenced(model, consumer, removed, per)
        assert torch.allclose(pruned(x), silenced(x), atol=1e-5)


def test_fusing_the_dense_model_into_the_pruned_one_keeps_the_pruned_widths():
    model = build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16, 8]})
    pruned = prune_units(model, "features.0", 0.5)
    fused = fuse([model, pruned], method="ot", mode="wts")
    assert [p.shape for p in fused.parameters()] == [p.shape for p in pruned.parameters()]


@pytest.mark.parametrize(
    "layer, fraction, message",
    [
        ("features.9", 0.5, "no layer"),
        ("features.1", 0.5, "not a linear"),
        ("classifier", 0.5, "output layer"),
        ("features.0", 1.0, "fraction"),
    ],
)
def test_bad_pruning_requests(layer, fraction, message):
    model = build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16, 8]})
    with pytest.raises(LandscapeError, match=message):
        prune_units(model, layer, fraction)
