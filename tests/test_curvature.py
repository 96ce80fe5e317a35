"""The curvature engine against exact Hessians of small models (an MLP and a CNN with BatchNorm on digits).

The exact Hessian comes from torch.autograd.functional.hessian of the mean cross-entropy over all examples in
one batch (float64), independently of the engine's batched products.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from landscape.curvature.density import quadrature, slq, smooth, spectral_density
from landscape.curvature.eigen import lanczos_top, power_top, top_eigenvalues
from landscape.curvature.lanczos import lanczos
from landscape.curvature.operator import HessianOperator, probes
from landscape.curvature.trace import MIN_PROBES, hessian_trace, hutch_plus_plus, hutchinson
from landscape.data import Split, subsample
from landscape.errors import LandscapeError
from landscape.models.zoo import arch_kwargs_for
from landscape.training.loop import TrainConfig, init_model, train


def bn_cnn(input_shape, num_classes, channels: int = 3) -> nn.Module:
    """Two 3x3 convolutions with BatchNorm, a max pool and a linear head (about 600 parameters on 8x8 digits)."""
    return nn.Sequential(
        nn.Conv2d(input_shape[0], channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.Flatten(),
        nn.Linear(channels * (input_shape[1] // 2) * (input_shape[2] // 2), num_classes))


class Dense:
    """An explicit symmetric matrix behind the solvers' operator interface."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix, self.size, self.dtype, self.device, self.hvps = matrix, matrix.shape[0], matrix.dtype, \
            matrix.device, 0

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        self.hvps += len(vectors)
        return vectors @ self.matrix


def exact_hessian(model: nn.Module, split: Split) -> torch.Tensor:
    """The full Hessian of the mean cross-entropy over `split` w.r.t. the flattened parameters."""
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    shapes = [p.shape for p in params.values()]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        pieces = (t.view(s) for t, s in zip(theta.split([s.numel() for s in shapes]), shapes))
        out = functional_call(model, (dict(zip(params, pieces)), buffers), (split.x.double(),))
        return F.cross_entropy(out, split.y)

    return torch.autograd.functional.hessian(loss, torch.cat([p.reshape(-1) for p in params.values()]))


def _trained(arch: str, data, epochs: int, **kw) -> nn.Module:
    model = init_model(arch, arch_kwargs_for(arch, data.input_shape, data.num_classes, **kw), 0)
    model = train(model, data, TrainConfig(batch_size=32, lr=0.05, epochs=epochs, data_seed=0)).model.double().eval()
    for p in model.parameters():
        p.grad = None  # left by training; the engine must not add any
    return model


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def case(request, digits):
    """(model in float64, 128 training examples, exact Hessian)."""
    if request.param == "mlp":
        model = _trained("mlp", digits, 4, hidden=[12])
    else:
        model = _trained("tests.test_curvature:bn_cnn", digits, 4)
    split = subsample(digits.train, 128, seed=1)
    return model, split, exact_hessian(model, split)


# ---- the Hessian-vector product ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cache", [True, False])
def test_products_equal_exact_hessian(case, cache):
    model, split, h = case
    op = HessianOperator(model, split, batch_size=48, cache=cache)  # batches of 48, 48, 32: weighting matters
    v = torch.randn(5, op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert op.size == h.shape[0] and op.n_examples == 128
    torch.testing.assert_close(op.matmat(v), v @ h, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(op.matvec(v[0]), h @ v[0], rtol=1e-9, atol=1e-11)
    assert op.hvps == 6
    assert all(p.grad is None for p in model.parameters())


def test_refuses_random_or_batch_dependent_models(digits):
    split = subsample(digits.train, 64)
    dropout = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Dropout(0.5), nn.Linear(16, 10))
    with pytest.raises(LandscapeError, match="train mode with Dropout"):
        HessianOperator(dropout.train(), split)
    HessianOperator(dropout.eval(), split)
    with pytest.raises(LandscapeError, match="train mode with BatchNorm2d"):
        HessianOperator(bn_cnn((1, 8, 8), 10).train(), split)

    class AlwaysDropout(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.5, training=True)
    with pytest.raises(LandscapeError, match="different outputs for the same inputs"):
        HessianOperator(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), AlwaysDropout()).eval(), split)
    shuffled = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(split.x, split.y), batch_size=16,
                                           shuffle=True)
    with pytest.raises(LandscapeError, match="different batches on two passes"):
        HessianOperator(dropout.eval(), shuffled)


# ---- eigenvalues ------------------------------------------------------------------------------------------------

def test_lanczos_top_k_match_eigvalsh(case):
    model, split, h = case
    exact = torch.linalg.eigvalsh(h).flip(0).numpy()
    r = top_eigenvalues(model, split, k=4, batch_size=64, tol=1e-3)
    assert r.converged and r.method == "lanczos" and r.which == "algebraic"
    np.testing.assert_allclose(r.eigenvalues, exact[:4], rtol=1e-3)
    assert (r.residuals <= 1e-3 * np.abs(r.eigenvalues)).all()
    assert r.hvps < 100 and r.n_params == h.shape[0]


def test_eigenvectors_are_eigenvectors(case):
    model, split, h = case
    r = top_eigenvalues(model, split, k=2, tol=1e-6, eigenvectors=True)
    vecs = torch.as_tensor(r.eigenvectors)
    residual = (vecs @ h - torch.as_tensor(r.eigenvalues)[:, None] * vecs).norm(dim=1)
    np.testing.assert_allclose(residual.numpy(), r.residuals, rtol=1e-3, atol=1e-9)
    torch.testing.assert_close(vecs @ vecs.T, torch.eye(2, dtype=vecs.dtype), atol=1e-8, rtol=0)


def test_power_iteration_like_pyhessian(case):
    model, split, h = case
    exact = torch.linalg.eigvalsh(h)
    largest = exact[exact.abs().argmax()].item()
    r = top_eigenvalues(model, split, k=1, method="power", tol=1e-9, max_hvps=2000)
    assert r.which == "magnitude" and r.converged
    np.testing.assert_allclose(r.eigenvalues[0], largest, rtol=1e-3)


def _clustered(n: int = 300, seed: int = 0) -> torch.Tensor:
    """A random symmetric matrix with top eigenvalues 10, 9.999, 9.998 and a bulk in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g)).Q
    values = torch.cat([torch.tensor([10.0, 9.999, 9.998], dtype=torch.float64),
                        torch.rand(n - 3, dtype=torch.float64, generator=g) * 2 - 1])
    return (q * values) @ q.T


def test_lanczos_separates_clustered_eigenvalues():
    op = Dense(_clustered())
    values, _, _, converged = lanczos_top(op, 3, 1e-8, 300, torch.Generator().manual_seed(0))
    assert converged
    np.testing.assert_allclose(values, [10.0, 9.999, 9.998], rtol=1e-9)
    power = Dense(_clustered())  # power iteration crawls when the top eigenvalues are this close
    p_values, _, _, p_converged = power_top(power, 3, 1e-9, 300, torch.Generator().manual_seed(0))
    assert not p_converged and power.hvps > 10 * op.hvps
    assert np.abs(p_values - [10.0, 9.999, 9.998]).max() > 1e-5


def test_lanczos_magnitude_and_negative_spectrum():
    h = -_clustered()  # the eigenvalues of largest magnitude are now negative
    values, *_ = lanczos_top(Dense(h), 2, 1e-8, 300, torch.Generator().manual_seed(0), which="magnitude")
    np.testing.assert_allclose(values, [-10.0, -9.999], rtol=1e-9)
    top, *_ = lanczos_top(Dense(h), 1, 1e-8, 300, torch.Generator().manual_seed(0))
    assert top[0] == pytest.approx(torch.linalg.eigvalsh(h)[-1].item(), rel=1e-8)


def test_lanczos_survives_breakdown():
    """A matrix with 3 distinct eigenvalues: the Krylov space is exhausted after 3 steps."""
    h = torch.diag(torch.tensor([5.0] * 10 + [2.0] * 10 + [-1.0] * 10, dtype=torch.float64))
    t = lanczos(Dense(h), torch.ones(1, 30, dtype=torch.float64), 30, torch.Generator().manual_seed(0))
    basis = t.basis[0]
    torch.testing.assert_close(basis @ basis.T, torch.eye(30, dtype=torch.float64), atol=1e-10, rtol=0)
    np.testing.assert_allclose(np.sort(torch.linalg.eigvalsh(t.matrix()[0]).numpy()),
                               np.sort(torch.diag(h).numpy()), atol=1e-9)


def test_bad_eigen_arguments(case):
    model, split, _ = case
    for kw, msg in [({"method": "arnoldi"}, "unknown eigenvalue method"), ({"k": 0}, "at least 1"),
                    ({"method": "power", "which": "algebraic"}, "largest magnitude"),
                    ({"k": 3, "max_hvps": 2}, "fewer than")]:
        with pytest.raises(LandscapeError, match=msg):
            top_eigenvalues(model, split, **kw)


# ---- trace --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["hutch++", "hutchinson"])
def test_trace_within_three_standard_errors(case, method):
    model, split, h = case
    exact = torch.trace(h).item()
    r = hessian_trace(model, split, method=method, max_hvps=90, seed=3)
    assert r.hvps == 90 and len(r.estimates) == r.probes == (30 if method == "hutch++" else 90)
    assert 0 < r.stderr < math.inf and r.rel_stderr == pytest.approx(r.stderr / abs(r.trace))
    assert abs(r.trace - exact) <= 3 * r.stderr, (r.trace, exact, r.stderr)


def test_hutch_plus_plus_is_exact_when_the_sketch_spans_everything():
    h = _clustered(25)
    estimates, sketch = hutch_plus_plus(Dense(h), 90, torch.Generator().manual_seed(0))
    assert sketch == 30 and len(estimates) == 30
    np.testing.assert_allclose(estimates, torch.trace(h).item(), rtol=1e-10)


def test_target_rse_stops_early_but_never_on_a_negative_trace():
    psd = torch.diag(torch.linspace(1.0, 2.0, 200, dtype=torch.float64))
    est = hutchinson(Dense(psd), 500, torch.Generator().manual_seed(0), target_rse=0.05)
    assert MIN_PROBES <= len(est) < 500
    negative = -_clustered(200) - 0.05 * torch.eye(200, dtype=torch.float64)  # trace about -10.5, noisy probes
    op = Dense(negative)
    est = hutchinson(op, 120, torch.Generator().manual_seed(0), target_rse=0.01)
    assert len(est) == 120 and op.hvps == 120
    assert abs(est.mean() - torch.trace(negative).item()) <= 3 * est.std(ddof=1) / math.sqrt(len(est))


def test_trace_arguments(case):
    model, split, _ = case
    with pytest.raises(LandscapeError, match="too small"):
        hessian_trace(model, split, max_hvps=3)
    with pytest.raises(LandscapeError, match="unknown trace method"):
        hessian_trace(model, split, method="exact")


# ---- spectral density ---------------------------------------------------------------------------------------------

def test_quadrature_is_exact_for_low_degree_moments():
    """With m steps, sum_i w_i theta_i^p = v^T H^p v for p < 2m, for any start vector."""
    h = _clustered(120)
    v = probes(Dense(h), 3, torch.Generator().manual_seed(1))
    nodes, weights = quadrature(lanczos(Dense(h), v, 4, torch.Generator()))
    u = v / v.norm(dim=1, keepdim=True)
    for p in range(1, 8):
        expected = torch.einsum("bn,bn->b", u @ torch.linalg.matrix_power(h, p), u).numpy()
        np.testing.assert_allclose((weights * nodes ** p).sum(1), expected, rtol=1e-9)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-12)


def _monte_carlo_error(h: torch.Tensor, power: int, runs: int) -> float:
    """Relative standard deviation of the run average of v^T H^p v (v normalised Rademacher) around tr(H^p)/n."""
    a = torch.linalg.matrix_power(h, power)
    off = (a ** 2).sum() - (torch.diag(a) ** 2).sum()
    return float(torch.sqrt(2 * off / runs) / torch.trace(a).abs())


def _runs_for_two_percent(h: torch.Tensor) -> int:
    """Start vectors needed for 2% to be 3 Monte Carlo standard deviations of both moments' run averages."""
    return math.ceil(max((3 * _monte_carlo_error(h, p, 1) / 0.02) ** 2 for p in (1, 2)))


def _check_moments(h: torch.Tensor, nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, density: np.ndarray):
    """First two moments of the SLQ measure, and of the smoothed density, against tr(H)/n and tr(H^2)/n."""
    n = h.shape[0]
    m1, m2 = torch.trace(h).item() / n, torch.trace(h @ h).item() / n
    assert (weights * nodes).sum(1).mean() == pytest.approx(m1, rel=0.02)
    assert (weights * nodes ** 2).sum(1).mean() == pytest.approx(m2, rel=0.02)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    assert np.trapezoid(grid * density, grid) == pytest.approx(m1, rel=0.02)


def _is_cnn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def test_slq_moments_match_exact_hessian(case):
    """SLQ's first two moments equal tr(H)/n and tr(H^2)/n within 2%.

    The quadrature is exact for these moments (see above), so the only error left is the start vectors'; the
    number of runs (about 10^4) is derived from the exact Hessian so that 2% is 3 Monte Carlo standard
    deviations. The MLP runs end to end through its own products. The CNN's batched products are slow on CPU,
    so here its exact Hessian is the operator, after checking that the model's products give the same nodes
    and weights; the slow test below runs it end to end.
    """
    model, split, h = case
    runs = _runs_for_two_percent(h)
    if _is_cnn(model):
        small = spectral_density(model, split, steps=3, runs=4, seed=5)
        nodes, weights = slq(Dense(h), 3, 4, torch.Generator().manual_seed(5))
        np.testing.assert_allclose(small.nodes, nodes, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(small.weights, weights, rtol=1e-7, atol=1e-10)
        nodes, weights = slq(Dense(h), 3, runs, torch.Generator().manual_seed(5), block=4000)
        grid, density, _ = smooth(nodes, weights, grid_points=2000)
        _check_moments(h, nodes, weights, grid, density)
    else:
        r = spectral_density(model, split, steps=3, runs=runs, seed=5, block=2000, grid_points=2000)
        assert r.nodes.shape == (runs, 3) and r.hvps == 3 * runs
        _check_moments(h, r.nodes, r.weights, r.grid, r.density)


@pytest.mark.slow
def test_slq_moments_cnn_end_to_end(case):
    model, split, h = case
    if not _is_cnn(model):
        pytest.skip("the MLP runs end to end in the fast test")
    runs = _runs_for_two_percent(h)
    r = spectral_density(model, split, steps=3, runs=runs, seed=5, block=500, grid_points=2000)
    _check_moments(h, r.nodes, r.weights, r.grid, r.density)


def test_slq_with_all_steps_recovers_the_spectrum():
    h = _clustered(60)
    nodes, _ = slq(Dense(h), 60, 1, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(np.sort(nodes[0]), torch.linalg.eigvalsh(h).numpy(), atol=1e-8)


def test_density_defaults_follow_ghorbani(case):
    model, split, h = case
    r = spectral_density(model, split, steps=20, runs=2, seed=0)
    span = r.nodes.max() - r.nodes.min()
    assert r.nodes.shape == r.weights.shape == (2, 20) and r.hvps == 40
    assert r.sigma2 == pytest.approx(1e-5 * max(1.0, span))
    assert len(r.grid) >= 10_000 and np.all(r.density >= 0)
    ev = torch.linalg.eigvalsh(h)
    assert ev[0] - 1e-6 <= r.nodes.min() and r.nodes.max() <= ev[-1] + 1e-6  # Ritz values interlace
