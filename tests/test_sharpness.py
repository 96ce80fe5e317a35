"""Adaptive and standard sharpness: invariance under a function-preserving rescaling of ReLU
neurons, the ball constraint, hand-checkable cases, and the model left as it was."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from landscape.data import Split, subsample
from landscape.errors import LandscapeError
from landscape.geometry.sharpness import measure_sharpness
from tests.conftest import train_mlp


@pytest.fixture(scope="module")
def trained(digits):
    """A ReLU MLP (one hidden layer of 16) in float64 and 200 training examples."""
    model = train_mlp(digits, 0, 0, hidden=(16,), epochs=3).double().eval()
    return model, subsample(digits.train, 200, seed=0)


def rescaled(model: nn.Module, seed: int = 1) -> nn.Module:
    """The same function: hidden neuron j's incoming weights and bias times a_j > 0, its outgoing
    weights / a_j."""
    out = copy.deepcopy(model)
    a = torch.exp(
        torch.randn(16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1.5
    )
    with torch.no_grad():
        out.features[0].weight.mul_(a[:, None])
        out.features[0].bias.mul_(a)
        out.classifier.weight.div_(a[None, :])
    return out


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_adaptive_sharpness_is_invariant_to_neuron_rescaling_and_standard_is_not(trained, norm):
    model, split = trained
    other = rescaled(model)
    x = split.x.double()
    torch.testing.assert_close(other(x), model(x), rtol=1e-10, atol=1e-10)  # the same function
    rho = 0.3 if norm == "l2" else 0.05
    kw = {"rho": rho, "norm": norm, "steps": 5, "restarts": 2, "random_draws": 4, "seed": 3}
    a, b = (
        measure_sharpness(model, split, "adaptive", **kw),
        measure_sharpness(other, split, "adaptive", **kw),
    )
    assert a.loss == pytest.approx(b.loss, rel=1e-10)
    assert a.worst > 0 and a.worst == pytest.approx(b.worst, rel=1e-7)
    np.testing.assert_allclose(a.random_increase, b.random_increase, rtol=1e-7)
    s, t = (
        measure_sharpness(model, split, "standard", **kw),
        measure_sharpness(other, split, "standard", **kw),
    )
    # differ by over 20%
    assert s.worst > 0 and t.worst > 0 and abs(math.log(s.worst / t.worst)) > 0.2
    assert abs(math.log(s.average / t.average)) > 0.2


def test_ascent_beats_random_and_restarts_and_draws_are_recorded(trained):
    model, split = trained
    state = {k: v.clone() for k, v in model.state_dict().items()}
    r = measure_sharpness(
        model, split, "standard", rho=0.5, norm="l2", steps=4, restarts=3, random_draws=5, seed=0
    )
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # left as it was
    assert (
        r.worst == max(r.restart_worst)
        and len(r.restart_worst) == 3
        and len(r.random_increase) == 5
    )
    # the ascent finds (nearly) at least the increase of the step of length rho along the gradient,
    # computed here
    params = list(model.parameters())
    loss = nn.functional.cross_entropy(model(split.x.double()), split.y)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    step = 0.5 * grad / grad.norm()
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for p, piece in zip(moved.parameters(), step.split([p.numel() for p in params])):
            p.add_(piece.view_as(p))
    with torch.no_grad():
        along = float(nn.functional.cross_entropy(moved(split.x.double()), split.y) - loss)
    assert r.worst >= 0.9 * along > 0
    assert r.passes == 1 + 3 * 5 + 5 and r.step_size == pytest.approx(2.5 * 0.5 / 4)


def test_linear_loss_worst_case_is_exact():
    """For a loss linear in the parameters (a linear model under a linear criterion) the worst case
    is known: rho * ||c * grad||_2 in the L2 ball, rho * ||c * grad||_1 in the L-infinity one; the
    ascent reaches the L-infinity corner exactly and the L2 maximum up to what the projections leave
    of the random start."""
    model = nn.Linear(3, 1).double().eval()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        model.bias.fill_(0.25)
    x = torch.randn(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    data = Split(x, torch.zeros(10, dtype=torch.long))

    def crit(out, y):
        return out.mean()

    grad = torch.cat([x.mean(0), torch.ones(1, dtype=torch.float64)])
    theta = torch.tensor([1.0, -2.0, 0.5, 0.25], dtype=torch.float64)
    for kind, c in (("standard", torch.ones(4, dtype=torch.float64)), ("adaptive", theta.abs())):
        r = measure_sharpness(
            model,
            data,
            kind,
            rho=0.1,
            norm="l2",
            steps=10,
            restarts=2,
            random_draws=0,
            criterion=crit,
        )
        bound = 0.1 * float((c * grad).norm())
        assert 0.99 * bound <= r.worst <= bound * (1 + 1e-12)
        r = measure_sharpness(
            model,
            data,
            kind,
            rho=0.1,
            norm="linf",
            steps=3,
            restarts=1,
            random_draws=0,
            criterion=crit,
        )
        assert r.worst == pytest.approx(0.1 * float((c * grad).abs().sum()), rel=1e-9)


def test_bad_settings_are_refused(trained):
    model, split = trained
    for kw, match in [
        ({"kind": "flat"}, "unknown sharpness kind"),
        ({"norm": "l1"}, "unknown norm"),
        ({"rho": 0.0}, "`rho`"),
        ({"steps": 0}, "`steps`"),
    ]:
        with pytest.raises(LandscapeError, match=match):
            measure_sharpness(model, split, **kw)
    with pytest.raises(LandscapeError, match="train mode"):
        measure_sharpness(nn.Sequential(nn.Linear(64, 10), nn.Dropout(0.5)).double(), split)
