"""Git Re-Basin on the alignment graph: weight and activation matching recover a hand-permuted copy
exactly (the permutations written out per architecture in tests/test_fusion_permutation.py), on an
MLP and on a CNN with residual streams and BatchNorm; its options and errors."""

import numpy as np
import pytest
import torch

import fusion
from fusion.rebasin import weight_matching
from landscape import LandscapeError
from tests.test_fusion_permutation import CASES, _model, _permute, mlp_units, one_thread  # noqa: F401


@pytest.fixture(scope="module")
def inputs():
    return torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("mode", ["wts", "acts"])
@pytest.mark.parametrize("case", ["mlp", "resnet18-bn-bias"])
def test_rebasin_recovers_a_permuted_copy(case, mode, inputs):
    build, units = CASES[case]
    b = build()
    a = _permute(b, units(b), seed=7)
    assert any(not torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    aligned = fusion.align(a, b, method="rebasin", mode=mode, x=inputs, seed=3)
    for key, value in b.state_dict().items():
        assert torch.equal(aligned.state_dict()[key], value), key
    fused = fusion.fuse([a, b], method="rebasin", mode=mode, x=inputs)
    assert torch.allclose(fused(inputs), b(inputs), atol=1e-5)


def test_weight_matching_sweeps_until_nothing_changes_and_any_order_finds_the_copy(inputs):
    build, units = CASES["mlp-bn"]
    b = build()
    a = _permute(b, units(b), seed=2)
    graph = fusion.build_graph(a, inputs[:2], warn=False)
    names = {n for n, _ in a.named_parameters()}
    state_a, state_b = a.state_dict(), b.state_dict()
    for seed in (0, 1):
        maps, sweeps = weight_matching(state_a, state_b, graph, graph, names, seed=seed)
        assert sweeps >= 2  # at least one sweep that moves, then one that changes nothing
        assert any(not torch.equal(m.index, torch.arange(len(m.index))) for m in maps.values())
        done, again = weight_matching(state_b, state_b, graph, graph, names, seed=seed)
        assert again == 1 and all(
            torch.equal(m.index, torch.arange(len(m.index))) for m in done.values()
        )
        assert (
            weight_matching(state_a, state_b, graph, graph, names, seed=seed, max_sweeps=1)[1] == 1
        )


def test_rebasin_needs_equal_widths_and_no_ot_options(inputs):
    torch.manual_seed(0)
    a, b = _model("mlp", hidden=[24, 16]), _model("mlp", seed=1, hidden=[20, 16])
    with pytest.raises(
        LandscapeError,
        match=r"^Re-Basin permutes units, so the models need equal widths: layer "
        r"'features.0' has 24 units in one model and 20 in the other",
    ):
        fusion.align(a, b, method="rebasin", mode="wts")
    with pytest.raises(LandscapeError, match="do not apply"):
        fusion.align(a, b, method="rebasin", mode="wts", solver="sinkhorn")
    with pytest.raises(LandscapeError, match="unknown alignment method 'greedy'"):
        fusion.align(a, b, method="greedy", mode="wts")


def test_activation_matching_maximises_correlation_not_distance(inputs):
    """A copy whose hidden units are permuted AND rescaled by positive factors (a ReLU net's same
    function): the correlation is unchanged, so activation matching still finds the permutation."""
    b = _model("mlp", hidden=[24, 16, 12])
    a = _permute(b, mlp_units([24, 16, 12], False), seed=4)
    state = a.state_dict()
    scale = torch.linspace(0.2, 5.0, 24)[
        torch.randperm(24, generator=torch.Generator().manual_seed(0))
    ]
    state["features.0.weight"] = state["features.0.weight"] * scale[:, None]
    state["features.0.bias"] = state["features.0.bias"] * scale
    state["features.2.weight"] = state["features.2.weight"] / scale[None, :]
    a.load_state_dict(state)
    assert torch.allclose(a(inputs), b(inputs), atol=1e-4)
    aligned = fusion.align(a, b, method="rebasin", mode="acts", x=inputs)
    moved = aligned.state_dict()["features.0.bias"]
    ratio = moved / b.state_dict()["features.0.bias"]
    assert np.allclose(np.sort(ratio.numpy()), np.sort(scale.numpy()), rtol=1e-4)
    assert torch.allclose(aligned(inputs), b(inputs), atol=1e-4)
