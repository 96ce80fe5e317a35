"""The curvature suite (top-k, trace and spectral density from one block Lanczos run) against exact
Hessians: the MLP and BatchNorm CNN of test_curvature (float64, Hessian by
torch.autograd.functional.hessian) and explicit symmetric matrices; and `landscape curvature`'s
output, stored groups and bad input."""

import json
import math
import warnings

import h5py
import numpy as np
import pytest
import torch

from landscape.curvature.density import quadrature
from landscape.curvature.krylov_trace import projected_trace
from landscape.curvature.operator import HessianOperator
from landscape.curvature.suite import curvature_suite, krylov_suite
from landscape.curvature.trace import MIN_PROBES
from landscape.data import subsample
from landscape.errors import LandscapeError
from landscape.io.checkpoint import load_checkpoint, save_checkpoint
from landscape.io.store import read_result
from landscape.plots.esd import plot_esd
from tests import test_curvature
from tests.conftest import train_mlp
from tests.test_curvature import Dense, _clustered

# the trained MLP and CNN with their exact Hessians (a module-scoped fixture)
case = test_curvature.case


def _within(values: np.ndarray, bounds: np.ndarray, exact: np.ndarray) -> bool:
    return bool((np.abs(values - exact) <= bounds * (1 + 1e-9) + 1e-12).all())


def test_top_k_within_their_bounds(case):
    """The suite's eigenvalues are certified by `eig`'s bounds, which cover the true errors, and the
    run goes past the density's steps only as far as the certificate needs."""
    model, split, h = case
    exact = torch.linalg.eigvalsh(h).flip(0).numpy()
    r = curvature_suite(model, split, k=3, steps=4, block=3, trace_rse=0.05, seed=1)
    e = r.eigenvalues
    assert (
        e.converged
        and e.rule == "bound"
        and e.block == 3
        and e.hvps == 3 * r.steps
        and r.steps >= 4
    )
    assert (e.bounds <= 1e-3 * np.abs(e.eigenvalues)).all() and _within(
        e.eigenvalues, e.bounds, exact[:3]
    )
    for tol in (1e-4, 1e-8):
        for seed in range(3):
            run = krylov_suite(
                Dense(h), 3, tol, 2, 3, None, 300, torch.Generator().manual_seed(seed)
            )
            assert run.ritz.converged and _within(run.ritz.values, run.ritz.bounds, exact[:3]), (
                tol,
                seed,
            )


def test_clusters_resolved_by_the_block():
    """Three eigenvalues 1e-3 apart: the block of 3 separates them and the bounds hold."""
    h = _clustered(200)
    run = krylov_suite(Dense(h), 3, 1e-8, 2, 3, None, 200, torch.Generator().manual_seed(0))
    assert run.ritz.converged
    np.testing.assert_allclose(run.ritz.values, [10.0, 9.999, 9.998], rtol=1e-9)


def test_trace_within_three_standard_errors(case):
    """The trace is the exact tr(Q^T H Q) plus Hutchinson on the rest, within 3 standard errors of
    tr(H)."""
    model, split, h = case
    op = HessianOperator(model, split)
    run = krylov_suite(op, 1, 1e-3, 5, 4, None, 5 * 4 + 60, torch.Generator().manual_seed(3))
    q = run.krylov.basis[0]
    assert q.shape[0] == 20 and run.trace_hvps == 60 and len(run.estimates) == 60
    torch.testing.assert_close(q @ q.T, torch.eye(20, dtype=q.dtype), rtol=0, atol=1e-10)
    assert projected_trace(run.krylov) == pytest.approx(torch.trace(q @ h @ q.T).item(), rel=1e-10)
    exact = torch.trace(h).item()
    stderr = run.estimates.std(ddof=1) / math.sqrt(len(run.estimates))
    assert 0 < stderr and abs(run.estimates.mean() - exact) <= 3 * stderr, (
        run.estimates.mean(),
        exact,
        stderr,
    )
    r = curvature_suite(model, split, k=1, steps=5, block=4, trace_rse=1e-2, seed=3)
    t = r.trace
    assert (
        t.method == "krylov-aware" and t.sketch == 20 and t.note is None and t.probes >= MIN_PROBES
    )
    assert t.rel_stderr <= 1e-2 and abs(t.trace - exact) <= 3 * t.stderr
    assert t.hvps == r.hvps == r.eigenvalues.hvps + t.probes


def test_deflation_lowers_the_trace_variance(case):
    """Deflating a trained network's top eigenvectors removes most of Hutchinson's variance."""
    h = case[2]
    plain = Dense(h)
    z = (
        torch.randint(0, 2, (200, h.shape[0]), generator=torch.Generator().manual_seed(0)).double()
        * 2
        - 1
    )
    hutchinson_sd = torch.einsum("bn,bn->b", z, plain.matmat(z)).std().item()
    run = krylov_suite(Dense(h), 1, 1e-3, 5, 4, None, 220, torch.Generator().manual_seed(0))
    assert run.estimates.std(ddof=1) < 0.5 * hutchinson_sd


def test_basis_spanning_everything_gives_exact_figures():
    """When the Krylov space is the whole space, the trace is exact and every eigenvalue is
    found."""
    h = _clustered(40, seed=2)
    run = krylov_suite(Dense(h), 5, 1e-10, 10, 4, 1e-3, 60, torch.Generator().manual_seed(0))
    assert run.krylov.basis.shape[1] == 40 and run.ritz.converged
    np.testing.assert_allclose(run.estimates, torch.trace(h).item(), rtol=1e-10)
    np.testing.assert_allclose(
        run.ritz.values, torch.linalg.eigvalsh(h).flip(0)[:5].numpy(), rtol=1e-10
    )


def test_block_quadrature_is_exact_for_low_degree_moments(case):
    """With m block steps, each start vector's quadrature gives v_j^T H^p v_j exactly for p < 2m, on
    the model's own products against its exact Hessian."""
    model, split, h = case
    run = krylov_suite(
        HessianOperator(model, split),
        1,
        1e-3,
        3,
        4,
        None,
        3 * 4 + MIN_PROBES,
        torch.Generator().manual_seed(7),
    )
    assert run.krylov.basis.shape[1] == 12  # converged within the 3 steps: none added
    nodes, weights = quadrature(run.krylov)
    assert nodes.shape == weights.shape == (4, 12)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-12)
    v = run.krylov.basis[0, :4]
    for p in range(1, 6):
        expected = torch.einsum("bn,bn->b", v @ torch.linalg.matrix_power(h, p), v).numpy()
        np.testing.assert_allclose((weights * nodes**p).sum(1), expected, rtol=1e-8)


def test_block_quadrature_is_unbiased():
    """A Gaussian block orthonormalised: the rows' average moment estimates tr(H^p)/n (within 3
    Monte Carlo standard errors over many independent blocks)."""
    h = _clustered(60, seed=1)
    n, draws = h.shape[0], 200
    moments = np.empty((draws, 2))
    for seed in range(draws):
        run = krylov_suite(
            Dense(h), 1, 1e-2, 2, 3, None, 6 + MIN_PROBES, torch.Generator().manual_seed(seed)
        )
        nodes, weights = quadrature(run.krylov)
        moments[seed] = [(weights * nodes**p).sum(1).mean() for p in (1, 2)]
    for i, p in enumerate((1, 2)):
        exact = torch.trace(torch.linalg.matrix_power(h, p)).item() / n
        mc = moments[:, i].std(ddof=1) / math.sqrt(draws)
        assert abs(moments[:, i].mean() - exact) <= 3 * mc, (p, moments[:, i].mean(), exact, mc)


def test_budget_and_arguments(case):
    model, split, _ = case
    with pytest.raises(LandscapeError, match="cannot hold"):
        curvature_suite(model, split, steps=5, block=4, max_hvps=25)
    with pytest.raises(LandscapeError, match="at least 1"):
        curvature_suite(model, split, block=0)
    with pytest.raises(LandscapeError, match="must be positive"):
        curvature_suite(model, split, trace_rse=0)
    r = curvature_suite(model, split, k=2, tol=1e-12, steps=2, block=2, max_hvps=4 + MIN_PROBES)
    assert not r.eigenvalues.converged and r.hvps == 4 + MIN_PROBES and r.trace.probes == MIN_PROBES


# ---- command line --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, digits):
    path = tmp_path_factory.mktemp("suite") / "net.pt"
    save_checkpoint(train_mlp(digits, 0, 0, hidden=(16,), epochs=3), path)
    return path


def test_curvature_command_stores_the_three_groups(ckpt, tmp_path, run_cli, digits):
    out = tmp_path / "r.h5"
    code, stdout, err = run_cli(
        "curvature",
        ckpt,
        "-k",
        "2",
        "--samples",
        "300",
        "--seed",
        "2",
        "--json",
        "--out",
        out,
        "--name",
        "mine",
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["samples"] == 300 and result["suite_hvps"] == result["trace"]["hvps"]
    assert len(result["eigenvalues"]["eigenvalues"]) == 2 and result["eigenvalues"]["converged"]
    assert "grid" not in result["esd"] and result["esd"]["runs"] == 4
    with h5py.File(out) as f:
        assert set(f["/models/mine"]) == {"eigenvalues", "trace", "esd"}
    for group in ("eigenvalues", "trace", "esd"):
        _, attrs = read_result(out, f"/models/mine/{group}")
        assert attrs["suite_hvps"] == result["suite_hvps"] and attrs["suite_block"] == 4
        assert attrs["seed"] == 2 and attrs["samples"] == 300 and attrs["data"] == "digits"
    arrays, attrs = read_result(out, "/models/mine/trace")
    assert attrs["trace"] == pytest.approx(np.mean(arrays["estimates"]))
    arrays, attrs = read_result(out, "/models/mine/esd")
    png = tmp_path / "esd.png"
    plot_esd(arrays, attrs, png, "mine")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    same = curvature_suite(load_checkpoint(ckpt)[0], subsample(digits.train, 300, 2), k=2, seed=2)
    np.testing.assert_allclose(
        same.eigenvalues.eigenvalues, result["eigenvalues"]["eigenvalues"], rtol=1e-6
    )
    code, stdout, err = run_cli("curvature", ckpt, "--samples", "300")
    assert (
        code == 0
        and "converged" in stdout
        and "Krylov basis" in stdout
        and "spectral density" in stdout
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--block", "0"], "at least 1"),
        (["--trace-rse", "0"], "must be positive"),
        (["--max-hvps", "20"], "cannot hold"),
        (["-k", "5000"], "trainable parameters"),
    ],
)
def test_curvature_bad_input_is_one_error_line(ckpt, tmp_path, run_cli, args, message):
    out = tmp_path / "r.h5"
    code, stdout, err = run_cli("curvature", ckpt, "--samples", "100", "--out", out, *args)
    assert code == 2 and err.startswith("error:") and message in err and stdout == "", err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_block_larger_than_the_space_is_reduced():
    """A block of more start vectors than trainable parameters runs with one vector per parameter:
    quietly for the default block (4, on a 3-parameter model), with a warning for one given; the
    figures are the exact ones, the trace without probes."""
    torch.manual_seed(0)
    model, x, y = torch.nn.Linear(2, 1), torch.randn(16, 2), torch.randn(16, 1)
    criterion = torch.nn.MSELoss(reduction="sum")

    def loss(w: torch.Tensor) -> torch.Tensor:  # float64: the Hessian is 2 [X 1]^T [X 1] / n
        return ((x.double() @ w[:2] + w[2] - y.double().squeeze(1)) ** 2).sum() / len(x)

    exact = torch.linalg.eigvalsh(
        torch.autograd.functional.hessian(loss, torch.zeros(3, dtype=torch.float64))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = curvature_suite(model, [(x, y)], k=3, criterion=criterion)
    with pytest.warns(UserWarning, match=r"`block` 5 is more than the 3 trainable parameters"):
        given = curvature_suite(model, [(x, y)], k=3, block=5, criterion=criterion)
    assert r.block == given.block == 3
    # one block step spans the space: the trace is tr(T) exactly, with no probe products
    assert r.hvps == 3 and r.trace.stderr == 0 and len(r.trace.estimates) == MIN_PROBES
    assert np.allclose(r.eigenvalues.eigenvalues, exact.flip(0).numpy(), rtol=1e-5)  # float32
    assert math.isclose(r.trace.trace, float(exact.sum()), rel_tol=1e-5)
