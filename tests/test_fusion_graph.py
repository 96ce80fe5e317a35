"""The alignment graph derived from the exported graph, user modules, transport maps on
hand-computed cases, and errors."""

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fusion
from fusion.graph import Segment
from fusion.transport import Map, move_axis, plan
from landscape import LandscapeError, build_model
from tests.graph_lookup import group, layer

# one_thread is an autouse fixture.
from tests.test_fusion_permutation import _model, _permute, one_thread  # noqa: F401

SHAPE = [1, 8, 8]
X = torch.randn(32, *SHAPE, generator=torch.Generator().manual_seed(0))


def _graph(model):
    return fusion.build_graph(model, X[:2])


def test_resnet18_residual_streams_share_one_group():
    g = _graph(build_model("resnet18", {"input_shape": SHAPE, "num_classes": 10, "width": 0.125}))
    groups = {frozenset(grp.producers) for grp in g.groups if not grp.fixed}
    streams = [{"conv1", "layer1.0.conv2", "layer1.1.conv2"}] + [
        {f"layer{s}.0.conv2", f"layer{s}.0.shortcut.0", f"layer{s}.1.conv2"} for s in (2, 3, 4)
    ]
    inner = [{f"layer{s}.{b}.conv1"} for s in (1, 2, 3, 4) for b in (0, 1)]
    assert groups == {frozenset(s) for s in streams + inner}
    assert g.groups[g.output_group].producers == ("linear",) and g.groups[g.output_group].fixed
    stem = next(grp for grp in g.groups if "conv1" in grp.producers)
    # after BatchNorm
    assert tuple(f.module for f in stem.features) == (
        "bn1",
        "layer1.0.bn2",
        "layer1.1.bn2",
    )
    assert layer(g, "linear").ins[0].group == group(g, "layer4.1.conv2")
    assert layer(g, "layer2.0.shortcut.0").ins[0].group == group(g, "conv1")


def test_flatten_from_conv_to_linear_is_a_block_per_channel():
    g = _graph(
        build_model(
            "tests.factories:tiny_cnn", {"input_shape": SHAPE, "num_classes": 10, "channels": 5}
        )
    )
    assert layer(g, "3").ins[0].inner == 64 and layer(g, "3").ins[0].group == group(g, "0")
    mlp = _graph(build_model("mlp", {"input_shape": SHAPE, "num_classes": 10, "hidden": [7]}))
    assert (
        layer(mlp, "features.0").ins[0].group == mlp.input_group
        and layer(mlp, "features.0").ins[0].inner == 64
    )


class UserNet(nn.Module):
    """Functional ReLU, a residual add inside a conv stream, a scalar scale, pooling and a
    view-flatten."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc, self.out = nn.Linear(6 * 4 * 4, 12), nn.Linear(12, 10)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        h = torch.relu(self.conv2(h) + h) * 0.5
        h = self.pool(h)
        h = h.view(h.size(0), -1)
        return self.out(F.relu(self.fc(h)))


@pytest.mark.parametrize("mode", ["acts", "wts"])
def test_user_module_with_functional_ops_and_residual(mode):
    torch.manual_seed(0)
    b = UserNet().eval()
    b.bn.running_mean.normal_(0, 0.3)
    units = [
        {"n": 6, "rows": ["conv", "conv2"], "norms": ["bn"], "cols": [("conv2", 1), ("fc", 16)]},
        {"n": 12, "rows": ["fc"], "norms": [], "cols": [("out", 1)]},
    ]
    a = _permute(b, units)
    assert torch.allclose(a(X), b(X), atol=1e-5)
    aligned = fusion.align(a, b, mode=mode, x=X)
    for key, value in b.state_dict().items():
        assert torch.allclose(aligned.state_dict()[key], value, atol=1e-5), key


class ChannelRoll(nn.Module):
    """`torch.roll` along channels: no permutation of units commutes with it."""

    def __init__(self):
        super().__init__()
        self.fc, self.mid, self.out = nn.Linear(64, 8), nn.Linear(8, 8), nn.Linear(8, 10)

    def forward(self, x):
        return self.out(F.relu(self.mid(torch.roll(F.relu(self.fc(x.flatten(1))), 1, dims=1))))


class Embedded(nn.Module):
    """Token ids computed from the input, an embedding table, a hidden layer."""

    def __init__(self):
        super().__init__()
        self.embed, self.fc, self.out = nn.Embedding(20, 8), nn.Linear(8, 12), nn.Linear(12, 10)

    def forward(self, x):
        ids = (x.flatten(1)[:, :5].abs() * 5).long().clamp(max=19)
        return self.out(F.relu(self.fc(self.embed(ids).mean(1))))


class ParamMix(nn.Module):
    """A weight matrix applied to the flattened input with einsum: its output units only a parameter
    defines."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Parameter(torch.randn(64, 8) * 0.1)
        self.fc, self.out = nn.Linear(8, 12), nn.Linear(12, 10)

    def forward(self, x):
        return self.out(F.relu(self.fc(torch.einsum("bi,ij->bj", x.flatten(1), self.mix))))


class ValueBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc(x) if x.sum() > 0 else self.fc(-x)


def test_unsupported_operation_is_named():
    """An operation that no permutation commutes with freezes the units reaching it: one warning
    line naming the node and its module, or a one-line error with strict; a model whose branches
    depend on values cannot be traced on one example (its other branch could use other parameters):
    a one-line error."""
    a, b = ChannelRoll(), ChannelRoll()
    with pytest.warns(
        fusion.FrozenUnitsWarning,
        match=r"^fusion: aten\.roll \(node 'roll'\) in the model's forward: "
        r"permuting its input channels does not permute its output; 1 unit group\(s\) left in "
        r"place$",
    ):
        fused = fusion.fuse([a, b], mode="wts", x=X)
    assert torch.allclose(fused.fc.weight, (a.fc.weight + b.fc.weight) / 2)
    with pytest.raises(LandscapeError, match=r"^strict fusion: aten\.roll \(node 'roll'\)"):
        fusion.align(a, b, mode="acts", x=X, strict=True)
    with pytest.raises(LandscapeError, match=r"^cannot trace the model with torch.export \(.*\)$"):
        fusion.align(ValueBranch(), ValueBranch(), mode="wts", x=X)


def test_units_defined_by_unknown_parameters_are_named():
    """Units only a parameter defines, in an operation fusion does not know, are left in place with
    a warning; the hidden layer after them is still aligned."""
    torch.manual_seed(0)
    b = ParamMix().eval()
    a = _permute(b, [{"n": 12, "rows": ["fc"], "norms": [], "cols": [("out", 1)]}])
    with pytest.warns(
        fusion.FrozenUnitsWarning,
        match=r"^fusion: aten\.einsum \(node 'einsum'\) in the model's "
        r"forward: its output units are defined by parameters that fusion does not know how to "
        r"move; "
        r"they are left in place$",
    ):
        aligned = fusion.align(a, b, mode="acts", x=X)
    assert all(torch.equal(aligned.state_dict()[k], v) for k, v in b.state_dict().items())
    with pytest.raises(LandscapeError, match=r"^strict fusion: aten\.einsum"):
        fusion.align(a, b, mode="wts", x=X, strict=True)


def test_embedding_columns_are_units():
    """An embedding table's columns are units (its rows are looked up by index): a copy with them
    and the hidden layer permuted is recovered exactly, without a warning."""
    torch.manual_seed(0)
    b = Embedded().eval()
    a = _permute(
        b,
        [
            {"n": 8, "rows": [], "norms": [], "cols": [("embed", 1), ("fc", 1)]},
            {"n": 12, "rows": ["fc"], "norms": [], "cols": [("out", 1)]},
        ],
    )
    assert not torch.equal(a.embed.weight, b.embed.weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fusion.FrozenUnitsWarning)
        for mode in ("acts", "wts"):
            aligned = fusion.align(a, b, mode=mode, x=X, strict=True)
            assert all(torch.equal(aligned.state_dict()[k], v) for k, v in b.state_dict().items())


def test_map_from_a_plan_is_barycentric_and_keeps_functions_across_widths():
    # two units of a wide model (n=4) are merged into each unit of a narrow one (m=2)
    t = plan(np.array([[0.0, 1], [0, 1], [1, 0], [1, 0]]), np.full(4, 0.25), np.full(2, 0.5))
    assert np.allclose(t, [[0.25, 0], [0.25, 0], [0, 0.25], [0, 0.25]])
    m = Map.from_plan(t)
    assert torch.allclose(
        m.rows, torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]], dtype=torch.float64)
    )
    assert torch.allclose(
        m.cols, torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]], dtype=torch.float64)
    )
    w = torch.tensor([[1.0, 2, 3, 4]])  # a consumer of the wide layer: merged inputs add up
    maps, sizes = {0: m}, [4]
    assert torch.equal(
        move_axis(w, 1, (Segment(0),), "in", maps, sizes),
        torch.tensor([[3.0, 7]], dtype=torch.float64),
    )
    blocks = torch.arange(8.0)[None]  # the same with blocks of 2 inputs per unit (a flatten)
    assert torch.equal(
        move_axis(blocks, 1, (Segment(0, inner=2),), "in", maps, sizes),
        torch.tensor([[0.0 + 2, 1 + 3, 4 + 6, 5 + 7]], dtype=torch.float64),
    )
    # producer rows: merged units are averaged
    units = torch.tensor([[1.0, 1], [3, 3], [5, 5], [7, 7]])
    assert torch.equal(
        move_axis(units, 0, (Segment(0),), "out", maps, sizes),
        torch.tensor([[2.0, 2], [6, 6]], dtype=torch.float64),
    )


def test_exact_and_sinkhorn_plans_have_the_marginals():
    rng = np.random.default_rng(0)
    cost, a, b = rng.random((5, 3)), np.full(5, 0.2), np.array([0.5, 0.3, 0.2])
    for solver in ("emd", "sinkhorn"):
        t = plan(cost, a, b, solver, reg=0.05)
        assert np.allclose(t.sum(1), a, atol=1e-6) and np.allclose(t.sum(0), b, atol=1e-6)
    with pytest.raises(LandscapeError, match="unknown OT solver"):
        plan(cost, a, b, "greedy")


def _mlp(hidden, classes=10, seed=0):
    torch.manual_seed(seed)
    return build_model(
        "mlp", {"input_shape": SHAPE, "num_classes": classes, "hidden": hidden}
    ).eval()


@pytest.mark.parametrize(
    "other,message",
    [
        (lambda: _mlp([8, 8]), "different depths"),
        (lambda: _mlp([8], classes=3), "different numbers of classes"),
        (
            lambda: build_model(
                "mlp", {"input_shape": [3, 8, 8], "num_classes": 10, "hidden": [8]}
            ),
            "different inputs",
        ),
        (lambda: _model("tests.factories:tiny_cnn", channels=8), "incompatible architectures"),
    ],
)
def test_incompatible_models_raise_one_line(other, message):
    for call in (
        lambda: fusion.fuse([_mlp([8]), other()], mode="wts"),
        lambda: fusion.align(other(), _mlp([8]), mode="wts"),
    ):
        with pytest.raises(LandscapeError, match=message):
            call()


def test_bad_inputs_raise_one_line():
    a, b = _mlp([8]), _mlp([8], seed=1)
    a.features[0].weight.data[0, 0] = float("nan")
    with pytest.raises(LandscapeError, match=r"non-finite values .* in features\.0\.weight"):
        fusion.fuse([a, b], mode="wts")
    with pytest.raises(LandscapeError, match="non-finite"):
        fusion.fuse([a, b], method="vanilla")
    b2 = _mlp([8], seed=2)
    with pytest.raises(LandscapeError, match="need x"):
        fusion.align(b, b2, mode="acts")
    with pytest.raises(LandscapeError, match="equal shapes"):
        fusion.fuse([b, _mlp([9])], method="vanilla")
    with pytest.raises(LandscapeError, match="3 weights for 2 models"):
        fusion.fuse([b, b2], mode="wts", weights=[1, 2, 3])
    with pytest.raises(LandscapeError, match="at least two models"):
        fusion.fuse([b], mode="wts")
    with pytest.raises(LandscapeError, match="unknown alignment mode"):
        fusion.fuse([b, b2], mode="grads")


def test_vanilla_is_the_weighted_average_of_parameters_and_buffers():
    a, b = _model("mlp", hidden=[8], bn=True, seed=0), _model("mlp", hidden=[8], bn=True, seed=1)
    f = fusion.fuse([a, b], method="vanilla", weights=[3, 1])
    for key, value in f.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * a.state_dict()[key] + 0.25 * b.state_dict()[key]), (
                key
            )
    assert f.landscape_spec == b.landscape_spec and not any(
        p is q for p, q in zip(f.parameters(), b.parameters())
    )


def test_inputs_are_not_modified():
    a, b = _model("resnet18", width=0.125, seed=0), _model("resnet18", width=0.125, seed=1)
    before = copy.deepcopy(a.state_dict())
    fusion.fuse([a, b], mode="wts")
    assert all(torch.equal(before[k], v) for k, v in a.state_dict().items())


class BatchDependent(nn.Module):
    """Structure that depends on the batch size: an extra layer for batches of more than 8."""

    def __init__(self):
        super().__init__()
        self.fc, self.extra, self.out = nn.Linear(64, 8), nn.Linear(8, 8), nn.Linear(8, 10)

    def forward(self, x):
        h = F.relu(self.fc(x.flatten(1)))
        if x.shape[0] > 8:
            h = F.relu(self.extra(h))
        return self.out(h)


def test_a_model_whose_structure_depends_on_the_batch_size_is_an_error_in_acts_mode():
    """The graph is traced on two examples; activations are read on batches of `batch_size` with
    hooks on the model's modules, which must be called as in the trace."""
    a, b = BatchDependent(), BatchDependent()
    with pytest.raises(
        LandscapeError, match=r"^module 'extra' is called 1 times instead of 0 on this batch"
    ):
        fusion.align(a, b, mode="acts", x=X, batch_size=16)
    fusion.align(a, b, mode="acts", x=X, batch_size=4)  # batches like the trace's: fine


class FixedData(nn.Module):
    """Hidden units multiplied by a constant made in forward, or added to the (normalised) network
    input."""

    def __init__(self, constant):
        super().__init__()
        self.constant = constant
        self.fc, self.mid, self.out = nn.Linear(64, 64), nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x):
        x = (x.flatten(1) - 0.5) / 0.25
        h = F.relu(self.fc(x))
        h = h * torch.linspace(0.5, 1.5, 64) if self.constant else h + x
        return self.out(F.relu(self.mid(h)))


def test_units_combined_with_fixed_data_stay_in_place():
    with pytest.warns(fusion.FrozenUnitsWarning, match=r"aten\.mul .*a tensor fusion cannot move"):
        g = fusion.build_graph(FixedData(True), X[:2])
    assert g.groups[group(g, "fc")].fixed and not g.groups[group(g, "mid")].fixed
    with warnings.catch_warnings():
        # a residual from the network input: fixed by construction, no warning
        warnings.simplefilter("error")
        g = fusion.build_graph(FixedData(False), X[:2])
    assert g.groups[group(g, "fc")].reason == "combined with the network input"
    assert not g.groups[group(g, "mid")].fixed
