"""OT fusion of MLPs trained on digits: far above vanilla averaging, K=4 with weights, different
widths.

Figures on this machine (hidden 32-16, 8 epochs, the seeds of conftest's `mlp_pair`, 200 activation
samples, test split of 359 digits; training is deterministic on CPU):
    parents 97.49 / 97.49, vanilla averaging 77.16, OT acts 93.59, OT wts 95.82;
    K=4 with weights 0.7,0.1,0.2,0.1: OT acts 93.59, wts 94.15; uniform: vanilla 66.02, OT acts
    82.45, wts 90.81; 64-32 fused into 32-16: acts 89.69, wts 92.20.
"""

import copy

import pytest
import torch

import fusion
from landscape import build_model, evaluate, subsample
from tests.conftest import train_mlp
from tests.test_fusion_permutation import _model, one_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def x(digits):
    return subsample(digits.train, 200, 0).x


@pytest.fixture(scope="module")
def pair(digits, one_thread):  # noqa: F811
    """conftest's `mlp_pair`, trained here under one thread (a session fixture would be built before
    it)."""
    return train_mlp(digits, 1, 2), train_mlp(digits, 3, 4)


@pytest.fixture(scope="module")
def four(digits, pair):
    return [*list(pair), train_mlp(digits, 5, 6), train_mlp(digits, 7, 8)]


def _acc(model, digits) -> float:
    return evaluate(model, digits.test).acc


def test_ot_fusion_is_far_above_vanilla_averaging(pair, digits, x):
    a, b = pair
    vanilla = _acc(fusion.fuse([a, b], method="vanilla"), digits)
    acts = _acc(fusion.fuse([a, b], mode="acts", x=x), digits)
    wts = _acc(fusion.fuse([a, b], mode="wts"), digits)
    assert vanilla < 0.80  # measured 0.7716
    assert acts > vanilla + 0.15 and wts > vanilla + 0.15  # measured 0.9359 and 0.9582
    for mode in (
        "acts",
        "wts",
    ):  # "A aligned to B" is A itself up to a permutation: same predictions
        aligned = fusion.align(a, b, mode=mode, x=x)
        assert torch.allclose(aligned(digits.test.x), a(digits.test.x), atol=1e-4)


def test_four_models_with_weights(four, digits, x):
    weights = [0.7, 0.1, 0.2, 0.1]
    vanilla = _acc(fusion.fuse(four, method="vanilla"), digits)
    for mode in ("acts", "wts"):
        fused = fusion.fuse(four, mode=mode, x=x, weights=weights)
        assert (
            _acc(fused, digits) > 0.9
            and _acc(fusion.fuse(four, mode=mode, x=x), digits) > vanilla + 0.1
        )
    # all weight on the first model: the fused model is that model moved onto the anchor's units
    only_first = fusion.fuse(four, mode="acts", x=x, weights=[1, 0, 0, 0])
    assert torch.allclose(only_first(digits.test.x), four[0](digits.test.x), atol=1e-4)
    # all weight on the anchor: the anchor itself
    only_anchor = fusion.fuse(four, mode="wts", weights=[0, 1, 0, 0], anchor=1)
    assert all(torch.equal(v, four[1].state_dict()[k]) for k, v in only_anchor.state_dict().items())


def test_fusing_a_wide_mlp_into_a_narrow_one(digits, pair, x):
    narrow = pair[1]
    wide = train_mlp(digits, 9, 10, hidden=(64, 32))
    for mode in ("acts", "wts"):
        fused = fusion.fuse([wide, narrow], mode=mode, x=x)
        assert fused.landscape_spec == narrow.landscape_spec
        assert fused.features[0].weight.shape == narrow.features[0].weight.shape
        assert _acc(fused, digits) > 0.85  # measured 0.8969 (acts) and 0.9220 (wts)
        into_wide = fusion.fuse([narrow, wide], mode=mode, x=x)
        assert into_wide.landscape_spec == wide.landscape_spec and _acc(into_wide, digits) > 0.9


def _duplicated(model):
    """A 2x-wide copy of an MLP that computes the same function: every hidden unit twice, outgoing
    weights halved, then the units shuffled."""
    spec = model.landscape_spec["arch_kwargs"]
    kw = dict(spec, hidden=[2 * h for h in spec["hidden"]])
    wide = build_model("mlp", kw).eval()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    g = torch.Generator().manual_seed(0)
    perms = [torch.randperm(2 * lin.out_features, generator=g) for lin in linears[:-1]]
    # wide unit -> narrow unit
    src = [torch.arange(lin.out_features).repeat(2) for lin in linears[:-1]]
    for i, (lin, wlin) in enumerate(
        zip(linears, [m for m in wide.modules() if isinstance(m, torch.nn.Linear)])
    ):
        w, bias = lin.weight.detach(), lin.bias.detach()
        if i > 0:
            w = w[:, src[i - 1][perms[i - 1]]] / 2
        if i < len(perms):
            w, bias = w[src[i][perms[i]]], bias[src[i][perms[i]]]
        wlin.weight.data.copy_(w)
        wlin.bias.data.copy_(bias)
    return wide


@pytest.mark.parametrize("mode", ["acts", "wts"])
def test_different_widths_are_exact_on_a_duplicated_model(pair, digits, x, mode):
    narrow = pair[0]
    wide = _duplicated(narrow)
    assert torch.allclose(wide(x), narrow(x), atol=1e-4)
    down = fusion.align(wide, narrow, mode=mode, x=x)  # merge the two copies of every unit
    for key, value in narrow.state_dict().items():
        assert torch.allclose(down.state_dict()[key], value, atol=1e-5), key
    up = fusion.align(narrow, wide, mode=mode, x=x)  # split every unit into two copies
    assert up.landscape_spec == wide.landscape_spec
    assert torch.allclose(up(digits.test.x), narrow(digits.test.x), atol=1e-4)


def test_iterations_converge_at_once_for_plain_networks_but_not_for_resnets(pair, x):
    """Paper, section 5.3.3: without residual connections Algorithm 1 converges in a single step."""
    a, b = pair
    for mode in ("acts", "wts"):
        once = fusion.fuse([a, b], mode=mode, x=x)
        twice = fusion.fuse([a, b], mode=mode, x=x, iterations=2)
        assert all(torch.equal(v, once.state_dict()[k]) for k, v in twice.state_dict().items())
    r1, r2 = _model("resnet18", 0, width=0.25), _model("resnet18", 1, width=0.25)
    inputs = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    once = fusion.fuse([r1, r2], mode="acts", x=inputs)
    twice = fusion.fuse([r1, r2], mode="acts", x=inputs, iterations=2)
    assert not torch.allclose(once(inputs), twice(inputs), atol=1e-3)
    again = fusion.fuse([copy.deepcopy(r1), copy.deepcopy(r2)], mode="acts", x=inputs, iterations=2)
    # deterministic
    assert all(torch.equal(v, twice.state_dict()[k]) for k, v in again.state_dict().items())
