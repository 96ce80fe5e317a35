"""Where curvature is measured: loss, accuracy and gradient norm at the model's weights, against a
gradient written out by hand, and the far-from-stationary flag on the command line."""

import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from landscape.curvature.stationarity import FAR_FROM_STATIONARY, point_state
from landscape.data import subsample
from landscape.io.checkpoint import save_checkpoint
from landscape.io.store import read_result
from landscape.training.metrics import evaluate
from tests.conftest import train_mlp


def test_gradient_of_softmax_regression_by_hand(digits):
    """For logits W x + b, the mean cross-entropy's gradient is (P - Y)^T [X, 1] / n with P the
    softmax and Y the one-hot labels; summed over batches of 100 it must be the same."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    split = subsample(digits.train, 500, 1)
    x, y = split.x.flatten(1).double(), split.y
    w, b = (p.detach().double() for p in model[1].parameters())
    residual = torch.softmax(x @ w.T + b, 1) - F.one_hot(y, 10).double()
    grad = torch.cat([(residual.T @ x).flatten(), residual.sum(0)]) / len(y)
    weights = torch.cat([w.flatten(), b])
    state = point_state(model, split, batch_size=100)
    assert abs(state.grad_norm - float(grad.norm())) <= 1e-6 * float(grad.norm())
    assert abs(state.weight_norm - float(weights.norm())) <= 1e-9 * float(weights.norm())
    assert (
        abs(state.rel_grad_norm - float(grad.norm() / weights.norm())) <= 1e-6 * state.rel_grad_norm
    )
    metrics = evaluate(model, split)
    assert (
        abs(state.loss - metrics.loss) < 1e-6
        and state.acc == metrics.acc
        and state.n_examples == 500
    )
    assert all(p.grad is None for p in model.parameters()) and model.training  # left as it was


def test_far_from_stationary_is_flagged(digits, tmp_path, run_cli):
    """A freshly initialised network is far from a stationary point, a trained one is not; `trace`
    says so, warns, and stores the point's state beside the result."""
    fresh, trained = tmp_path / "fresh.pt", tmp_path / "trained.pt"
    save_checkpoint(train_mlp(digits, 0, 0, hidden=(16,), epochs=1), fresh)  # one epoch: still far
    save_checkpoint(train_mlp(digits, 0, 0, hidden=(16,), epochs=10), trained)
    results = {}
    for path in (fresh, trained):
        code, out, err = run_cli(
            "trace",
            path,
            "--samples",
            "300",
            "--max-hvps",
            "20",
            "--json",
            "--out",
            tmp_path / "r.h5",
        )
        assert code == 0, err
        results[path.stem] = (json.loads(out), err)
    far, err = results["fresh"]
    assert far["point_rel_grad_norm"] > FAR_FROM_STATIONARY and far["point_far_from_stationary"]
    assert "fresh.pt is far from a stationary point" in err
    near, err = results["trained"]
    assert (
        near["point_rel_grad_norm"] < FAR_FROM_STATIONARY and not near["point_far_from_stationary"]
    )
    assert "stationary" not in err
    _, attrs = read_result(tmp_path / "r.h5", "/models/fresh/trace")
    assert (
        attrs["point_grad_norm"] == far["point_grad_norm"]
        and attrs["point_loss"] == far["point_loss"]
    )
    assert any("far from a stationary point" in w for w in attrs["warnings"])


def test_barrier_shows_progress(mlp_pair, digits, capsys, monkeypatch):
    from landscape import progress
    from landscape.geometry.barrier import interpolation_curve

    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    progress.set_quiet(False)
    interpolation_curve(*mlp_pair, subsample(digits.train, 100, 0), points=5)
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("progress: barrier: 5/5 done in")


def test_eigenvalue_and_trace_figure(tmp_path, run_cli):
    """A file holding only eigenvalues and traces has a figure: one bar per model with its error
    bar."""
    from landscape.io.store import write_result

    store = tmp_path / "c.h5"
    for name, top, trace, far in (("a", 3.4, 20.5, False), ("vanilla", 2.6, 90.5, True)):
        write_result(
            store,
            f"/models/{name}/eigenvalues",
            {"eigenvalues": np.array([top, 1.0]), "bounds": np.array([0.01, 0.02])},
            {"point_far_from_stationary": far},
        )
        write_result(
            store,
            f"/models/{name}/trace",
            {"estimates": np.full(4, trace)},
            {"trace": trace, "stderr": 1.5, "point_far_from_stationary": far},
        )
    code, _, err = run_cli("plot", store, "--out-dir", tmp_path / "f", "--format", "png,pdf")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        "c_curvature.pdf",
        "c_curvature.png",
    ]
