"""Gauss-Newton and empirical Fisher operators against dense matrices built independently of the
engine: the Jacobian of a 2-layer MLP's outputs and the softmax's output Hessian (float64);
per-layer (block) spectra against the dense matrices' diagonal blocks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from landscape.curvature.blocks import block_eigenvalues, block_traces, parameter_blocks
from landscape.curvature.eigen import top_eigenvalues
from landscape.curvature.ggn import GaussNewtonOperator, curvature_operator
from landscape.curvature.operator import HessianOperator
from landscape.curvature.trace import hessian_trace
from landscape.data import Split, subsample
from landscape.errors import LandscapeError
from tests.factories import log_softmax_mlp


def two_layer(features: int, classes: int, hidden: int = 6, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return (
        nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, classes))
        .double()
        .eval()
    )


@pytest.fixture(scope="module")
def setting(digits):
    """(model, 40 examples, flat parameters, the outputs as a function of the flat parameters)."""
    split = subsample(digits.train, 40, seed=3)
    split = Split(split.x.reshape(len(split), -1).double(), split.y)
    model = two_layer(split.x.shape[1], digits.num_classes)
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def outputs(t: torch.Tensor) -> torch.Tensor:
        pieces = [c.view(s) for c, s in zip(t.split([s.numel() for s in shapes]), shapes)]
        return functional_call(model, dict(zip(names, pieces)), (split.x,))

    return model, split, theta, outputs


@pytest.fixture(scope="module")
def matrices(setting) -> dict[str, torch.Tensor]:
    """Hessian, GGN (mean of J_i^T (diag p - p p^T) J_i), empirical Fisher (mean of g_i g_i^T) and
    the residual term (mean of sum_c r_ic d2 z_ic / d theta2), all explicit matrices."""
    _, split, theta, outputs = setting
    n = len(split)
    jac = torch.autograd.functional.jacobian(outputs, theta)  # (N, C, P)
    p = outputs(theta).softmax(1).detach()
    h_out = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (N, C, C)
    ggn = torch.einsum("ncp,ncd,ndq->pq", jac, h_out, jac) / n
    r = p - F.one_hot(split.y, p.shape[1]).double()  # dl/dz per example
    g = torch.einsum("nc,ncp->np", r, jac)
    hessian = torch.autograd.functional.hessian(
        lambda t: F.cross_entropy(outputs(t), split.y), theta
    )
    residual = torch.autograd.functional.hessian(lambda t: (r * outputs(t)).sum() / n, theta)
    return {"hessian": hessian, "ggn": ggn, "fisher": g.T @ g / n, "residual": residual}


@pytest.mark.parametrize("cache", [True, False])
def test_ggn_and_fisher_products_equal_dense_matrices(setting, matrices, cache):
    model, split, theta, _ = setting
    m = matrices
    v = torch.randn(4, len(theta), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for kind in ("ggn", "fisher"):
        # batches 16, 16, 8
        op = GaussNewtonOperator(model, split, batch_size=16, cache=cache, kind=kind)
        torch.testing.assert_close(op.matmat(v), v @ m[kind], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(op.matvec(v[0]), m[kind] @ v[0], rtol=1e-9, atol=1e-12)
        assert op.hvps == 5
    # the Hessian is the GGN plus the residual term, which is not small here (tanh and a hidden
    # layer)
    torch.testing.assert_close(m["hessian"] - m["ggn"], m["residual"], rtol=1e-8, atol=1e-12)
    assert m["residual"].norm() > 0.05 * m["hessian"].norm()
    assert all(p.grad is None for p in model.parameters())


def test_ggn_and_fisher_eigenvalues_are_the_dense_ones_and_non_negative(setting, matrices):
    model, split, theta, _ = setting
    m = matrices
    for kind in ("ggn", "fisher"):
        exact = torch.linalg.eigvalsh(m[kind])
        assert float(exact.min()) > -1e-10  # positive semi-definite
        r = top_eigenvalues(model, split, k=3, tol=1e-8, max_hvps=len(theta), curvature=kind)
        np.testing.assert_allclose(r.eigenvalues, exact.flip(0)[:3].numpy(), rtol=1e-6)
        assert r.curvature == kind
        # Hutch++ whose sketch spans the whole space computes the trace exactly
        t = hessian_trace(
            model, split, max_hvps=2 * len(theta) + 2, sketch=len(theta), block=64, curvature=kind
        )
        assert t.trace == pytest.approx(float(m[kind].trace()), rel=1e-9) and t.curvature == kind
    # the Hessian itself is indefinite here
    assert float(torch.linalg.eigvalsh(m["hessian"]).min()) < -1e-6


def test_ggn_equals_hessian_for_a_linear_model(digits):
    """A model linear in its parameters has no residual term: GGN = Hessian (cross-entropy)."""
    split = subsample(digits.train, 30, seed=0)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, digits.num_classes)).double().eval()
    v = torch.randn(3, sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    torch.testing.assert_close(
        GaussNewtonOperator(model, split).matmat(v),
        HessianOperator(model, split).matmat(v),
        rtol=1e-10,
        atol=1e-12,
    )


def test_unknown_curvature_and_a_loss_linear_in_the_outputs_are_refused(setting, digits):
    model, split, _, _ = setting
    with pytest.raises(LandscapeError, match="unknown curvature"):
        curvature_operator(model, split, curvature="hess")
    log_probs = log_softmax_mlp(digits.input_shape, digits.num_classes).double().eval()
    data = subsample(digits.train, 20, seed=0)
    with pytest.raises(LandscapeError, match="linear in the model's outputs"):
        curvature_operator(log_probs, data, criterion="nll", curvature="ggn")
    # the empirical Fisher needs per-example gradients only: the same with NLL of log-probabilities
    # as with CE of the logits they are computed from
    logits = nn.Sequential(nn.Flatten(), log_probs.fc1, nn.ReLU(), log_probs.fc2).eval()
    v = torch.randn(2, sum(p.numel() for p in logits.parameters()), dtype=torch.float64)
    torch.testing.assert_close(
        curvature_operator(log_probs, data, criterion="nll", curvature="fisher").matmat(v),
        curvature_operator(logits, data, curvature="fisher").matmat(v),
        rtol=1e-10,
        atol=1e-13,
    )


@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
def test_block_eigenvalues_and_traces_are_the_dense_blocks(setting, matrices, curvature):
    model, split, theta, _ = setting
    m = matrices[curvature]
    blocks = parameter_blocks(model)
    assert [n for n, _, _ in blocks] == ["0.weight", "0.bias", "2.weight", "2.bias"] and blocks[-1][
        2
    ] == len(theta)
    eig = block_eigenvalues(model, split, tol=1e-9, max_hvps=400, curvature=curvature)
    # the 384-weight block by Hutch++
    tr = block_traces(model, split, max_hvps=70, curvature=curvature)
    for i, (name, a, b) in enumerate(blocks):
        dense_block = m[a:b, a:b]
        assert eig.eigenvalues[i] == pytest.approx(
            float(torch.linalg.eigvalsh(dense_block)[-1]), rel=1e-7
        )
        if tr.exact[i]:
            assert (
                tr.trace[i] == pytest.approx(float(dense_block.trace()), rel=1e-10)
                and tr.stderr[i] == 0
            )
        else:
            assert (
                name == "0.weight"
                and abs(tr.trace[i] - float(dense_block.trace())) <= 5 * tr.stderr[i]
            )
    assert eig.blocks == tr.blocks == [n for n, _, _ in blocks] and list(eig.sizes) == [
        b - a for _, a, b in blocks
    ]
    # a diagonal block's top eigenvalue is at most the whole matrix's
    assert max(eig.eigenvalues) <= float(torch.linalg.eigvalsh(m)[-1]) + 1e-9
