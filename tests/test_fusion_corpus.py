"""The alignment graph on models written the way public code writes them (tests/model_corpus.py).

Each model gets a copy whose hidden units are permuted by the corpus's hand-written unit lists (not
by the code under test). The copy computes the same function; `align` must return the original's
parameters and buffers for both metrics (and keep the copy's function), and `fuse` must return the
original's function (benchmarks/fusion_coverage.py times `fuse` with both metrics on the whole
corpus). Models with an operation no permutation commutes with must freeze those units with a
warning naming the node (an error with strict), and average them as vanilla averaging does.
"""

import warnings

import pytest
import torch

import fusion
from landscape import LandscapeError
from tests.graph_lookup import group, layer
from tests.model_corpus import CORPUS, MlpNet, build, inputs, permute, randomize
from tests.test_fusion_permutation import one_thread  # noqa: F401 (autouse fixture)

FROZEN = sorted(n for n, c in CORPUS.items() if c.frozen)
FROZEN_PARAMS = {
    "channel-flip": ("conv1.weight", "conv1.bias"),
    "channel-shuffle": ("conv1.weight", "conv1.bias"),
    "einsum-mix": ("conv1.weight", "conv1.bias", "mix"),
}


def _frozen_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, fusion.FrozenUnitsWarning)]


def _assert_same_state(model, reference, what):
    for key, value in reference.state_dict().items():
        assert torch.allclose(model.state_dict()[key].float(), value.float(), atol=1e-5), (
            f"{what}: {key}"
        )


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_permuted_copy_is_recovered(name):
    case = CORPUS[name]
    b, x = build(name), inputs(name)
    a = permute(b, case.units(b))
    assert any(not torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert torch.allclose(a(x), b(x), atol=1e-4)  # the hand-written permutation keeps the function
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mode in ("acts", "wts"):
            aligned = fusion.align(a, b, mode=mode, x=x)
            _assert_same_state(aligned, b, f"align {mode}")
            assert torch.allclose(aligned(x), a(x), atol=1e-4)
        # fuse shares align's maps; wts fusion: tests below
        fused = fusion.fuse([a, b], mode="acts", x=x)
        assert torch.allclose(fused(x), b(x), atol=1e-5)
    frozen = _frozen_warnings(caught)
    if case.frozen:
        assert frozen and all(
            m.startswith(f"fusion: {case.frozen} ") and "\n" not in m for m in frozen
        ), frozen
    else:
        assert not frozen


@pytest.mark.parametrize("name", FROZEN)
def test_frozen_units_are_averaged_as_is_and_strict_raises(name):
    m1, m2, x = build(name, seed=0), build(name, seed=1), inputs(name)
    with pytest.warns(fusion.FrozenUnitsWarning, match=CORPUS[name].frozen):
        fused = fusion.fuse([m1, m2], mode="wts", x=x)
    for key in FROZEN_PARAMS[name]:
        expected = (m1.state_dict()[key] + m2.state_dict()[key]) / 2
        assert torch.allclose(fused.state_dict()[key], expected, atol=1e-6), key
    graph = fusion.build_graph(m1, x[:2], warn=False)
    assert len(graph.frozen) == 1 and CORPUS[name].frozen in graph.frozen[0]
    assert any(g.fixed and g.reason.startswith("frozen at") for g in graph.groups)
    for call in (
        lambda: fusion.fuse([m1, m2], mode="wts", strict=True, x=x),
        lambda: fusion.align(m1, m2, mode="acts", strict=True, x=x),
        lambda: fusion.build_graph(m1, x[:2], strict=True),
    ):
        with pytest.raises(LandscapeError, match=f"^strict fusion: {CORPUS[name].frozen} "):
            call()


def test_reference_mlpnet_fuses_as_written():
    """The OT-fusion reference MlpNet: forward(x, disable_logits=False) with an if,
    x.view(x.shape[0], -1) and F.log_softmax(x) without dim, fused with both metrics, no edit and no
    warning from fusion."""
    torch.manual_seed(0)
    b = MlpNet().eval()
    a = permute(b, CORPUS["mlpnet-reference"].units(b))
    # not a multiple of the batch size: the trace's view(2, -1) never runs
    x = inputs("mlpnet-reference", n=37)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mode in ("acts", "wts"):
            _assert_same_state(fusion.align(a, b, mode=mode, x=x, batch_size=16), b, mode)
            fused = fusion.fuse([a, b], mode=mode, x=x, batch_size=16)
            assert torch.allclose(fused(x), b(x), atol=1e-5)
            assert torch.allclose(
                fused(x, disable_logits=True), b(x, disable_logits=True), atol=1e-5
            )
    assert not _frozen_warnings(caught)


def _graph(name, **kw):
    return fusion.build_graph(build(name), inputs(name)[:2], **kw)


def test_graph_of_concatenation_and_zero_padding():
    g = _graph("densenet")
    trans = layer(g, "trans1.conv")  # reads the stem's 8 channels and two 4-channel dense outputs
    assert [g.groups[s.group].size for s in trans.ins] == [8, 4, 4]
    assert [s.group for s in trans.ins] == [
        group(g, "conv1"),
        group(g, "dense1.0.conv2"),
        group(g, "dense1.1.conv2"),
    ]
    norm = next(b for b in g.bindings if b.name == "trans1.bn.running_var")
    assert norm.role == "out" and norm.segments == trans.ins
    g = _graph("resnet-option-a")  # stage 2: zero channels | the incoming stream | zero channels
    out = layer(g, "layer2.0.conv2").out
    assert [g.groups[s.group].size for s in out] == [4, 8, 4]
    assert out[1].group == group(g, "conv1")
    assert layer(g, "linear").ins == out


def test_graph_of_depthwise_groupnorm_and_frozen_groups():
    g = _graph("separable-multiplier")
    dw = next(b for b in g.bindings if b.name == "dw.weight")
    assert dw.role == "out" and dw.segments == (fusion.graph.Segment(group(g, "conv1"), 2, 1),)
    assert layer(g, "pw").ins == dw.segments and not any(lay.name == "dw" for lay in g.layers)
    # GroupNorm(4, 8): four groups of two units, each its own transport problem
    g = _graph("groupnorm-g")
    assert [g.groups[s.group].size for s in layer(g, "conv1").out] == [2, 2, 2, 2]
    assert [g.groups[s.group].size for s in layer(g, "conv2").out] == [4, 4, 4]
    g1 = _graph("groupnorm-1")
    assert [g1.groups[s.group].size for s in layer(g1, "conv1").out] == [8]
    g = _graph("softmax-temperature")
    assert g.groups[g.output_group].fixed and g.groups[g.output_group].reason == "output"
    g = _graph("channel-flip", warn=False)
    assert g.groups[group(g, "conv1")].reason.startswith("frozen at aten.flip (node 'flip')")
    assert not g.groups[group(g, "conv2")].fixed


@pytest.mark.parametrize(
    "name,wide,narrow",
    [
        ("resnet-option-a", {"width": 16}, {"width": 8}),
        ("densenet", {"growth": 8}, {"growth": 4}),
        ("mlpnet-reference", {"width": (40, 32, 24)}, {"width": (20, 16, 12)}),
    ],
)
def test_a_wider_model_fuses_into_the_anchor_widths(name, wide, narrow):
    cls = type(build(name))
    torch.manual_seed(0)
    a, b = randomize(cls(**wide), 0), randomize(cls(**narrow), 1)
    x = inputs(name)
    for mode in ("acts", "wts"):
        fused = fusion.fuse([a, b], mode=mode, x=x)
        assert all(v.shape == b.state_dict()[k].shape for k, v in fused.state_dict().items())
        assert torch.isfinite(fused(x)).all()


def test_a_last_batch_of_one_example_is_merged():
    """`.squeeze()` drops the batch axis of a batch of one: activations are never read on such a
    batch."""
    b = build("size-arithmetic")
    a = permute(b, CORPUS["size-arithmetic"].units(b))
    _assert_same_state(
        fusion.align(a, b, mode="acts", x=inputs("size-arithmetic", n=33), batch_size=16), b, "acts"
    )
