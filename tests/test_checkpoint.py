"""Checkpoints: exact round trip, user architectures, and wrapping foreign files."""
import argparse

import pytest
import torch

from landscape.errors import LandscapeError
from landscape.io.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from landscape.io.foreign import wrap
from landscape.models.zoo import build_model

KW = {"input_shape": [3, 8, 8], "num_classes": 5, "width": 0.25}


def _randomise_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)


@pytest.mark.parametrize("arch", ["mlp", "vgg11", "resnet18", "tests.factories:tiny_cnn"])
def test_round_trip_preserves_outputs_exactly(tmp_path, arch):
    kw = {"input_shape": [3, 8, 8], "num_classes": 5} if ":" in arch else KW
    model = build_model(arch, kw).eval()
    _randomise_bn(model)
    save_checkpoint(model, tmp_path / "m.pt", meta={"lr": 0.1})
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(model(x), loaded(x))
    assert meta == {"lr": 0.1}
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["format"] == FORMAT and payload["arch"] == arch and payload["arch_kwargs"] == kw
    assert not list(tmp_path.glob("*.tmp"))


def test_wrap_plain_and_reference_state_dicts(tmp_path):
    model = build_model("vgg11", KW).eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 8, 8)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"model_state_dict": model.state_dict(), "test_accuracy": 0.9}, tmp_path / "ref.pt")
    for name in ("plain.pt", "ref.pt"):
        wrap(tmp_path / name, tmp_path / f"w_{name}", "vgg11", KW)
        assert torch.equal(load_checkpoint(tmp_path / f"w_{name}")[0](x), model(x))


def test_wrap_lightning_checkpoint(tmp_path):
    model = build_model("resnet18", KW).eval()
    _randomise_bn(model)
    lightning = {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.1.0",
                 "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                 "hyper_parameters": argparse.Namespace(lr=0.1, batch_size=32), "optimizer_states": []}
    torch.save(lightning, tmp_path / "last.ckpt")
    wrap(tmp_path / "last.ckpt", tmp_path / "w.pt", "resnet18", KW)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(load_checkpoint(tmp_path / "w.pt")[0](x), model(x))


def test_wrap_mismatch_and_errors(tmp_path):
    torch.save(build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10}).state_dict(), tmp_path / "m.pt")
    with pytest.raises(LandscapeError, match="does not fit"):
        wrap(tmp_path / "m.pt", tmp_path / "o.pt", "mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [5]})
    assert not (tmp_path / "o.pt").exists()
    torch.save({"weights": [1, 2]}, tmp_path / "x.pt")
    with pytest.raises(LandscapeError, match="no state_dict"):
        wrap(tmp_path / "x.pt", tmp_path / "o.pt", "mlp", {"input_shape": [1, 8, 8], "num_classes": 10})
    with pytest.raises(LandscapeError, match="not a landscape checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
