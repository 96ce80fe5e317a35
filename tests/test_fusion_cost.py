"""The fast paths of OT fusion on wide layers: float32 weight costs with float64 only where the Gram
form cancels, and linear assignment instead of the network simplex where the exact plan is a
permutation."""

import numpy as np
import pytest
import torch

from fusion.metrics import weight_cost
from fusion.transport import Map, assignment_plan, plan
from tests.test_fusion_permutation import one_thread  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize("seed", range(4))
def test_assignment_gives_the_network_simplex_plan_on_uniform_equal_widths(seed):
    import ot

    rng = np.random.default_rng(seed)
    n = 40
    cost = rng.random((n, n)) ** 2
    u = np.full(n, 1.0 / n)
    expected = ot.emd(u, u, cost)
    assert np.array_equal(assignment_plan(cost), expected)
    assert np.array_equal(plan(cost, u, u), expected)
    perm = rng.permutation(n)  # a permuted copy: zero cost on the permutation, which both recover
    x = rng.standard_normal((n, 7))
    d = np.sqrt(((x[:, None] - x[perm][None]) ** 2).sum(-1))
    assert np.array_equal(plan(d, u, u), ot.emd(u, u, d))
    # unit j is x[perm[j]]
    assert torch.equal(Map.from_plan(plan(d, u, u)).index, torch.as_tensor(perm))


def test_plans_that_are_not_permutations_still_use_the_simplex():
    rng = np.random.default_rng(0)
    cost = rng.random((6, 4))
    t = plan(cost, np.full(6, 1 / 6), np.full(4, 0.25))
    assert np.allclose(t.sum(1), 1 / 6) and np.allclose(t.sum(0), 0.25) and (t > 0).sum() > 6


def test_float32_weight_cost_matches_float64_including_nearly_equal_rows():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 5000, generator=g)
    b = torch.randn(64, 5000, generator=g)
    # nearly equal rows: the Gram form cancels
    b[:16] = a[:16] + 1e-4 * torch.randn(16, 5000, generator=g)
    b[16] = a[17]  # an exact copy of another row
    exact = torch.cdist(a.double(), b.double()).numpy()
    cost = weight_cost(a, b)
    assert cost.dtype == np.float64
    np.testing.assert_allclose(cost, exact, rtol=1e-5, atol=0)
    assert cost[17, 16] == 0.0
    # the plain float32 Gram form is mostly rounding there
    sq_a, sq_b = (
        (a * a).sum(1),
        (b * b).sum(1),
    )
    naive = (sq_a[:, None] + sq_b[None] - 2 * a @ b.T).clamp_min(0).sqrt().numpy()
    assert np.abs(naive[:16, :16].diagonal() / exact[:16, :16].diagonal() - 1).max() > 0.1
    assert np.array_equal(weight_cost(a.double(), b.double()) > 0, exact > 0)


def test_ground_metrics_and_cost_normalisations_by_hand():
    from fusion.metrics import ground_cost, normalise_cost

    a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    expected = {
        "euclidean": [[4.0, 5.0]],
        "sqeuclidean": [[16.0, 25.0]],
        "cosine": [[1 - 9 / 15, 1.0]],
    }
    for metric, value in expected.items():
        np.testing.assert_allclose(weight_cost(a, b, metric), value, rtol=1e-6)
        np.testing.assert_allclose(
            ground_cost(a @ b.T, (a * a).sum(1), (b * b).sum(1), metric), value, rtol=1e-12
        )
    cost = np.array([[1.0, 3.0], [2.0, 4.0]])
    np.testing.assert_allclose(normalise_cost(cost, "max"), cost / 4)
    np.testing.assert_allclose(normalise_cost(cost, "median"), cost / 2.5)
    np.testing.assert_allclose(normalise_cost(cost, "log"), np.log1p(cost))
    assert normalise_cost(cost, "none") is cost


@pytest.mark.parametrize(
    "metric,norm", [("sqeuclidean", "log"), ("cosine", "median"), ("euclidean", "max")]
)
def test_every_ground_metric_and_normalisation_recovers_a_permuted_copy(metric, norm):
    import fusion
    from landscape import LandscapeError
    from tests.test_fusion_permutation import CASES, _permute

    build, units = CASES["mlp"]
    b = build()
    a = _permute(b, units(b), seed=5)
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for mode in ("wts", "acts"):
        aligned = fusion.align(a, b, mode=mode, x=x, ground_metric=metric, cost_norm=norm)
        assert all(torch.equal(aligned.state_dict()[k], v) for k, v in b.state_dict().items())
    with pytest.raises(LandscapeError, match="unknown ground metric 'manhattan'"):
        fusion.align(a, b, mode="wts", ground_metric="manhattan")
    with pytest.raises(LandscapeError, match="unknown cost normalisation 'mean'"):
        fusion.fuse([a, b], mode="wts", cost_norm="mean")
