"""Checkpoints: exact round trip, user architectures, and wrapping foreign files."""

import argparse
import json

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
    # the thread count is always recorded
    assert meta == {
        "lr": 0.1,
        "threads": torch.get_num_threads(),
    }
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["format"] == FORMAT and payload["arch"] == arch and payload["arch_kwargs"] == kw
    assert not list(tmp_path.glob("*.tmp"))


def test_wrap_plain_and_reference_state_dicts(tmp_path):
    model = build_model("vgg11", KW).eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 8, 8)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"model_state_dict": model.state_dict(), "test_accuracy": 0.9}, tmp_path / "ref.pt")
    # a training script's own key
    torch.save(
        {"net": model.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "epoch": 9},
        tmp_path / "net.pt",
    )
    for name in ("plain.pt", "ref.pt", "net.pt"):
        wrap(tmp_path / name, tmp_path / f"w_{name}", "vgg11", KW)
        assert torch.equal(load_checkpoint(tmp_path / f"w_{name}")[0](x), model(x))


def test_wrap_lightning_checkpoint(tmp_path):
    model = build_model("resnet18", KW).eval()
    _randomise_bn(model)
    lightning = {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.1.0",
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": argparse.Namespace(lr=0.1, batch_size=32),
        "optimizer_states": [],
    }
    torch.save(lightning, tmp_path / "last.ckpt")
    wrap(tmp_path / "last.ckpt", tmp_path / "w.pt", "resnet18", KW)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(load_checkpoint(tmp_path / "w.pt")[0](x), model(x))


def test_wrap_mismatch_and_errors(tmp_path):
    torch.save(
        build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10}).state_dict(),
        tmp_path / "m.pt",
    )
    with pytest.raises(LandscapeError, match="does not fit"):
        wrap(
            tmp_path / "m.pt",
            tmp_path / "o.pt",
            "mlp",
            {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [5]},
        )
    assert not (tmp_path / "o.pt").exists()
    torch.save({"weights": [1, 2]}, tmp_path / "x.pt")
    with pytest.raises(LandscapeError, match=r"no state_dict found .*its keys: 'weights'"):
        wrap(
            tmp_path / "x.pt",
            tmp_path / "o.pt",
            "mlp",
            {"input_shape": [1, 8, 8], "num_classes": 10},
        )
    with pytest.raises(LandscapeError, match="not a landscape checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


def _reference_mlpnet_state(seed: int = 0) -> dict:
    """Tensors named as the OT-fusion reference code names its MNIST MLPNet (fc1..fc4, no
    biases)."""
    g = torch.Generator().manual_seed(seed)
    sizes = [784, 400, 200, 100, 10]
    return {
        f"fc{i + 1}.weight": torch.randn(sizes[i + 1], sizes[i], generator=g) * 0.05
        for i in range(4)
    }


def _reference_forward(state: dict, x: torch.Tensor) -> torch.Tensor:
    """The reference network's function, written out by hand."""
    h = x.view(x.shape[0], -1)
    for i in range(1, 4):
        h = torch.relu(h @ state[f"fc{i}.weight"].T)
    return h @ state["fc4.weight"].T


MLPNET = {"input_shape": [1, 28, 28], "num_classes": 10, "hidden": [400, 200, 100], "bias": False}


def test_reference_checkpoint_wraps_into_the_zoo_mlp_by_order(tmp_path):
    state = _reference_mlpnet_state()
    torch.save(
        {"args": {"dataset": "mnist"}, "test_accuracy": 97.0, "model_state_dict": state},
        tmp_path / "final.checkpoint",
    )
    _, mapping = wrap(tmp_path / "final.checkpoint", tmp_path / "m.pt", "mlp", MLPNET)
    assert mapping == {
        "fc1.weight": "features.0.weight",
        "fc2.weight": "features.2.weight",
        "fc3.weight": "features.4.weight",
        "fc4.weight": "classifier.weight",
    }
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(loaded(x), _reference_forward(state, x), rtol=1e-5, atol=1e-6)
    assert meta["key_map"] == mapping and meta["wrapped_from"].endswith("final.checkpoint")


def test_key_map_and_strip_prefix(tmp_path):
    model = build_model("vgg11", KW).eval()
    _randomise_bn(model)
    # old files lack the BatchNorm counters
    prefixed = {
        f"net.{k.replace('features.', 'body.')}": v
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    prefixed["net.extra_counter"] = torch.zeros(3)  # a tensor the architecture has no place for
    torch.save(prefixed, tmp_path / "p.pt")
    with pytest.raises(LandscapeError, match=r"does not fit.*tensors"):
        wrap(tmp_path / "p.pt", tmp_path / "o.pt", "vgg11", KW)
    del prefixed["net.extra_counter"]
    torch.save(prefixed, tmp_path / "p.pt")
    _, mapping = wrap(
        tmp_path / "p.pt",
        tmp_path / "o.pt",
        "vgg11",
        KW,
        strip_prefix="net.",
        key_map={"body.": "features."},
    )
    x = torch.randn(2, 3, 8, 8)
    assert mapping == {} and torch.equal(load_checkpoint(tmp_path / "o.pt")[0](x), model(x))


def test_mismatch_names_the_first_different_shapes(tmp_path):
    torch.save(_reference_mlpnet_state(), tmp_path / "ref.pt")
    with pytest.raises(
        LandscapeError, match=r"fc1.weight \(400, 784\) vs features.0.weight \(300, 784\)"
    ):
        wrap(tmp_path / "ref.pt", tmp_path / "o.pt", "mlp", {**MLPNET, "hidden": [300, 200, 100]})
    assert not (tmp_path / "o.pt").exists()


def test_wrap_command_prints_and_records_the_mapping_and_normalisation(tmp_path, run_cli):
    torch.save({"model_state_dict": _reference_mlpnet_state()}, tmp_path / "ref.pt")
    code, out, err = run_cli(
        "wrap",
        tmp_path / "ref.pt",
        "--arch",
        "mlp",
        "--arch-kwargs",
        json.dumps(MLPNET),
        "--normalize",
        "0.1307,0.3081",
        "--out",
        tmp_path / "m.pt",
    )
    assert code == 0, err
    assert "4 tensors matched by order" in out and "fc4.weight -> classifier.weight" in out
    meta = load_checkpoint(tmp_path / "m.pt")[1]
    assert (
        meta["normalize"] == [[0.1307, 0.3081]]
        and meta["key_map"]["fc1.weight"] == "features.0.weight"
    )
    code, _, err = run_cli(
        "wrap",
        tmp_path / "ref.pt",
        "--arch",
        "mlp",
        "--arch-kwargs",
        json.dumps(MLPNET),
        "--key-map",
        "[1]",
        "--out",
        tmp_path / "n.pt",
    )
    assert code == 2 and err.startswith("error: --key-map must be a JSON object")
