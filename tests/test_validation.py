"""The Python API gets the same one-line `LandscapeError` (or `LandscapeWarning`) as the command
line: bad data, non-finite models, impossible options and wrongly typed study settings are refused
where the libraries take them, before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion.checks import compare_outputs
from landscape.curvature.eigen import top_eigenvalues
from landscape.curvature.trace import hessian_trace
from landscape.data import Split, load_data, subsample
from landscape.errors import LandscapeError, LandscapeWarning
from landscape.geometry.barrier import interpolation_curve
from landscape.geometry.surface import random_surface
from landscape.study.config import load_config
from landscape.training.loop import TrainConfig, init_model, train
from landscape.training.metrics import evaluate

KWARGS = {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [8]}


@pytest.fixture
def nan_model():
    model = init_model("mlp", KWARGS, 0)
    with torch.no_grad():
        model.classifier.bias[3] = float("inf")
    return model


def _npz(tmp_path, **arrays) -> str:
    np.savez(tmp_path / "d.npz", **arrays)
    return str(tmp_path / "d.npz")


X, Y = np.random.default_rng(0).random((60, 4)).astype(np.float32), np.arange(60) % 3


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"x_train": X, "y_train": Y + 0.25}, "must hold integer class labels, found 0.25"),
        ({"x_train": X, "y_train": Y[:50]}, "60 inputs but 50 labels"),
        ({"x_train": np.where(X > 0.99, np.inf, X), "y_train": Y}, "NaN or infinite values"),
        ({"x_train": X.astype(str), "y_train": Y}, "x_train must hold numbers"),
        ({"x_train": X, "y_train": Y.astype(str)}, "y_train must hold integer class labels"),
        ({"x_train": X[:0], "y_train": Y[:0]}, "holds no examples"),
        ({"x_train": X[:3], "y_train": Y[:3]}, "too few examples (3)"),
        (
            {"x_train": X, "y_train": Y, "x_test": X[:5], "y_test": Y[:5] - 1},
            "labels out of range: found label -1",
        ),
    ],
)
def test_load_data_refuses_bad_arrays(tmp_path, arrays, message):
    with pytest.raises(LandscapeError) as info:
        load_data(_npz(tmp_path, **arrays))
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1


def test_whole_number_float_labels_are_class_indices(tmp_path):
    data = load_data(_npz(tmp_path, x_train=X, y_train=Y.astype(np.float64)))
    assert data.num_classes == 3 and data.train.y.dtype == torch.int64


def test_every_measurement_refuses_a_non_finite_model(nan_model, digits):
    split = subsample(digits.train, 50)
    ok = init_model("mlp", KWARGS, 1)
    for call in (
        lambda: top_eigenvalues(nan_model, split),
        lambda: hessian_trace(nan_model, split, max_hvps=10),
        lambda: evaluate(nan_model, split),
        lambda: random_surface(nan_model, 1, -1, 1, 3, 0),
        lambda: interpolation_curve(ok, nan_model, {"train": split, "test": split}, 3),
        lambda: train(nan_model, digits, TrainConfig(epochs=1)),
    ):
        with pytest.raises(
            LandscapeError, match=r"non-finite values \(NaN or inf\) in classifier.bias \(1 of 10\)"
        ):
            call()


def test_training_that_diverges_is_an_error_not_a_nan_checkpoint(digits):
    model = init_model("mlp", KWARGS, 0)
    with pytest.raises(LandscapeError, match="training diverged in epoch 1"):
        train(model, digits, TrainConfig(epochs=2, lr=1e12, batch_size=64))


def test_labels_beyond_the_models_classes_are_an_error(digits):
    model = init_model("mlp", {**KWARGS, "num_classes": 5}, 0)
    with pytest.raises(
        LandscapeError, match="labels out of range: data has label 9 but the model has 5 classes"
    ):
        evaluate(model, digits.test)


def test_k_above_the_number_of_parameters(digits):
    model = init_model("mlp", {**KWARGS, "hidden": [1]}, 0)  # 65 + 20 = 85 parameters
    with pytest.raises(LandscapeError, match="`k` 86 is more than the 85 trainable parameters"):
        top_eigenvalues(model, subsample(digits.train, 20), k=86)


def test_samples_above_the_data_size_are_clamped_with_a_warning():
    split = Split(torch.zeros(10, 2), torch.zeros(10, dtype=torch.long))
    with pytest.warns(
        LandscapeWarning, match="`samples` 11 is more than the 10 examples available: using all 10"
    ):
        assert subsample(split, 11) is split
    with pytest.raises(LandscapeError, match="`samples` must be positive"):
        subsample(split, 0)


def test_compare_outputs_tells_a_permutation_from_a_change():
    a = init_model("mlp", KWARGS, 0)
    b = init_model("mlp", KWARGS, 0)
    with torch.no_grad():  # swap two hidden units: the same function
        perm = torch.tensor([1, 0, *range(2, 8)])
        b.features[0].weight.copy_(a.features[0].weight[perm])
        b.features[0].bias.copy_(a.features[0].bias[perm])
        b.classifier.weight.copy_(a.classifier.weight[:, perm])
    x = torch.randn(50, 1, 8, 8)
    assert compare_outputs(a, b, x) == (True, 1.0)
    with torch.no_grad():
        b.classifier.weight.mul_(0.5).add_(0.5 * b.classifier.weight.roll(1, 1))
    kept, agreement = compare_outputs(a, b, x)
    assert not kept and 0 <= agreement < 1


@pytest.mark.parametrize(
    "section,key,value,message",
    [
        ("train", "epochs", '"thirty"', "[train] epochs must be an integer, got 'thirty'"),
        ("train", "epochs", "3.0", "[train] epochs must be an integer, got 3.0"),
        ("train", "lrs", "[0.1, true]", "[train] lrs must be a list of numbers, got [0.1, True]"),
        ("fusion", "reg", '"small"', "[fusion] reg must be a number, got 'small'"),
        ("measure", "esd", "1", "[measure] esd must be true or false, got 1"),
        (
            "measure",
            "barrier_samples",
            "2.5",
            "[measure] barrier_samples must be an integer, got 2.5",
        ),
        (
            "pairs",
            "diff_init",
            "[1, 2]",
            "[pairs] diff_init must be a list of [a, b] integer pairs, got [1, 2]",
        ),
        ("study", "arch", "3", "[study] arch must be a string, got 3"),
        ("measure", None, "3", "[measure] must be a table of settings, got 3"),
    ],
)
def test_study_settings_of_the_wrong_type(tmp_path, section, key, value, message):
    sections = {"study": {"arch": '"mlp"'}, "train": {"batch_sizes": "[32]", "lrs": "[0.1]"}}
    top = ""
    if key is None:
        top = f"{section} = {value}\n"
    else:
        sections.setdefault(section, {})[key] = value
    text = top + "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in body.items())
        for name, body in sections.items()
    )
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(LandscapeError) as info:
        load_config(tmp_path / "c.toml")
    assert str(info.value) == f"{tmp_path / 'c.toml'}: {message}"
