"""The Python API on users' own objects (any nn.Module, any re-iterable of batches, any criterion)
and input normalisation under the user's control."""

import copy
import json

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from landscape import (
    HessianOperator,
    compute_surface,
    evaluate,
    hessian_trace,
    interpolation_curve,
    load_data,
    random_surface,
    spectral_density,
    subsample,
    top_eigenvalues,
)
from landscape.errors import LandscapeError
from landscape.io.checkpoint import load_checkpoint, save_checkpoint
from landscape.io.store import read_result
from landscape.models.zoo import build_model


@pytest.fixture(scope="module")
def setup(digits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 10)).eval()
    split = subsample(digits.train, 150, seed=1)
    # 40, 40, 40, 30
    loader = DataLoader(TensorDataset(split.x, split.y), batch_size=40, shuffle=False)
    return model, split, loader


def test_a_dataloader_and_a_list_give_the_split_s_numbers(setup):
    model, split, loader = setup
    pairs = [(x, y) for x, y in loader]
    ref = top_eigenvalues(model, split, k=2, batch_size=40)
    for data in (loader, pairs):
        r = top_eigenvalues(model, data, k=2)
        np.testing.assert_allclose(r.eigenvalues, ref.eigenvalues, rtol=1e-5)
        assert r.n_examples == 150
    np.testing.assert_allclose(
        hessian_trace(model, loader, max_hvps=12).trace,
        hessian_trace(model, split, batch_size=40, max_hvps=12).trace,
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        spectral_density(model, loader, steps=6).nodes,
        spectral_density(model, split, batch_size=40, steps=6).nodes,
        rtol=1e-4,
        atol=1e-6,
    )
    assert evaluate(model, loader).loss == pytest.approx(evaluate(model, split).loss, rel=1e-6)


def test_geometry_takes_loaders_too(setup, digits):
    model, split, loader = setup
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn_like(p))
    test = subsample(digits.test, 90, seed=2)
    test_loader = DataLoader(TensorDataset(test.x, test.y), batch_size=32)
    by_loader = interpolation_curve(model, other, {"train": loader, "test": test_loader}, points=5)
    by_split = interpolation_curve(model, other, {"train": split, "test": test}, points=5)
    np.testing.assert_allclose(by_loader.train_loss, by_split.train_loss, rtol=1e-6)
    np.testing.assert_allclose(by_loader.test_acc, by_split.test_acc)
    surface = random_surface(model, 1, -1.0, 1.0, 4, seed=0)
    np.testing.assert_allclose(
        compute_surface(model, surface, loader, 64, {})[0]["loss"],
        compute_surface(model, surface, split, 64, {})[0]["loss"],
        rtol=1e-6,
    )


def test_criterion_nll_on_log_probabilities_equals_cross_entropy_on_logits(setup):
    model, split, _ = setup
    log_probs = nn.Sequential(model, nn.LogSoftmax(dim=1)).eval()
    ce = top_eigenvalues(model, split, k=2)
    nll = top_eigenvalues(log_probs, split, k=2, criterion="nll")
    np.testing.assert_allclose(nll.eigenvalues, ce.eigenvalues, rtol=1e-5)
    assert nll.criterion == "nll" and ce.criterion == "ce"
    for criterion in (nn.CrossEntropyLoss(), lambda out, y: nn.functional.cross_entropy(out, y)):
        np.testing.assert_allclose(
            top_eigenvalues(model, split, k=2, criterion=criterion).eigenvalues,
            ce.eigenvalues,
            rtol=1e-5,
        )
    with pytest.raises(LandscapeError, match="unknown loss 'mse'"):
        top_eigenvalues(model, split, criterion="mse")


def test_hessian_operator_is_a_scipy_linear_operator(setup):
    model, split, _ = setup
    op = HessianOperator(model, split)
    top = eigsh(op.as_linear_operator(), k=1, which="LA", tol=1e-8, return_eigenvectors=False)[0]
    assert top == pytest.approx(top_eigenvalues(model, split, tol=1e-6).eigenvalues[0], rel=1e-4)


def test_one_shot_iterators_and_non_pairs_are_refused(setup):
    model, split, _ = setup
    with pytest.raises(LandscapeError, match="one-shot iterator"):
        top_eigenvalues(model, iter([(split.x, split.y)]))
    with pytest.raises(LandscapeError, match="not an \\(inputs, targets\\) pair"):
        top_eigenvalues(model, [split.x])


def test_normalize_none_given_and_auto(digits):
    raw = load_data("digits", normalize="none")
    assert (
        raw.normalize == () and float(raw.train.x.min()) == 0.0 and float(raw.train.x.max()) == 1.0
    )
    given = load_data("digits", normalize="0.5,0.25")
    torch.testing.assert_close(given.train.x, (raw.train.x - 0.5) / 0.25)
    assert given.normalize == ((0.5, 0.25),)
    # auto: the training split's statistics
    assert digits.normalize and abs(float(digits.train.x.mean())) < 1e-5
    for bad, message in (
        ("0.5", "expected auto"),
        ("0.5,0;0.1,0.1", "gives 2"),
        ("0.5,-1", "std must be positive"),
    ):
        with pytest.raises(LandscapeError, match=message):
            load_data("digits", normalize=bad)


def test_cli_loss_and_normalize_are_used_and_recorded(tmp_path, run_cli, digits):
    model = build_model(
        "tests.factories:log_softmax_mlp", {"input_shape": [1, 8, 8], "num_classes": 10}
    )
    # trained on raw pixels
    save_checkpoint(model.eval(), tmp_path / "nll.pt", meta={"normalize": [[0.0, 1.0]]})
    out = tmp_path / "r.h5"
    code, stdout, err = run_cli(
        "eig", tmp_path / "nll.pt", "--loss", "nll", "--samples", "200", "--json", "--out", out
    )
    assert code == 0, err
    result = json.loads(stdout)
    raw = subsample(load_data("digits", normalize="none").train, 200, 0)
    expected = top_eigenvalues(load_checkpoint(tmp_path / "nll.pt")[0], raw, criterion="nll")
    np.testing.assert_allclose(result["eigenvalues"], expected.eigenvalues, rtol=1e-6)
    assert result["normalize"] == [[0.0, 1.0]] and result["criterion"] == "nll"
    attrs = read_result(out, "/models/nll/eigenvalues")[1]
    assert attrs["normalize"] == "0,1" and attrs["criterion"] == "nll"
    code, stdout, _ = run_cli("eval", tmp_path / "nll.pt", "--normalize", "auto", "--json")
    auto = json.loads(stdout)["models"][0]["test"]["loss"]
    code, stdout, _ = run_cli("eval", tmp_path / "nll.pt", "--normalize", "none", "--json")
    # auto used the recorded statistics
    assert json.loads(stdout)["models"][0]["test"]["loss"] == auto
    code, stdout, _ = run_cli("eval", tmp_path / "nll.pt", "--normalize", "0.3,0.4", "--json")
    assert json.loads(stdout)["models"][0]["test"]["loss"] != auto


def test_training_records_the_normalisation_it_used(tmp_path, run_cli):
    code, _, err = run_cli(
        "train",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--normalize",
        "0.25,0.5",
        "--out",
        tmp_path / "m.pt",
        "--quiet",
    )
    assert code == 0, err
    assert load_checkpoint(tmp_path / "m.pt")[1]["normalize"] == [[0.25, 0.5]]
    code, _, err = run_cli(
        "train", "--hidden", "8", "--epochs", "1", "--out", tmp_path / "a.pt", "--quiet"
    )
    ((mean, std),) = load_checkpoint(tmp_path / "a.pt")[1]["normalize"]
    assert 0.2 < mean < 0.4 and 0.3 < std < 0.5  # auto: the digits training split's own statistics


def test_values_given_to_normalize_are_recorded_as_given_and_compared_up_to_float32(
    tmp_path, run_cli
):
    """0.1307 is not a float32: fused models used to record its float32 copy, which their parents'
    exact value then refused ("different input normalisations")."""
    code, _, err = run_cli(
        "train",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--normalize",
        "0.1307,0.3081",
        "--out",
        tmp_path / "m.pt",
        "--quiet",
    )
    assert code == 0, err
    code, _, err = run_cli(
        "fuse", tmp_path / "m.pt", tmp_path / "m.pt", "--out", tmp_path / "f.pt", "--quiet"
    )
    assert code == 0, err
    assert load_checkpoint(tmp_path / "f.pt")[1]["normalize"] == [[0.1307, 0.3081]]
    model, meta = load_checkpoint(tmp_path / "m.pt")
    save_checkpoint(
        model,
        tmp_path / "rounded.pt",
        meta={**meta, "normalize": [[float(np.float32(0.1307)), float(np.float32(0.3081))]]},
    )
    code, _, err = run_cli(
        "eval", tmp_path / "m.pt", tmp_path / "f.pt", tmp_path / "rounded.pt", "--quiet"
    )
    assert code == 0, err
    save_checkpoint(model, tmp_path / "other.pt", meta={**meta, "normalize": [[0.1308, 0.3081]]})
    code, _, err = run_cli("eval", tmp_path / "m.pt", tmp_path / "other.pt", "--quiet")
    assert code == 2 and "different input normalisations" in err
