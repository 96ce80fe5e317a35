"""Activations read before or after the nonlinearity (`acts_at`, `--acts-at`): the elementwise
functions the alignment graph finds after each layer, the cost they give, exact recovery of a
permuted copy in both places, and the one-line errors."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fusion
from fusion.graph import build_graph
from fusion.metrics import activation_moments
from landscape import LandscapeError
from landscape.io.checkpoint import load_checkpoint, save_checkpoint
from landscape.io.store import read_result
from landscape.models.zoo import build_model
from tests.test_fusion_permutation import (
    CASES,
    _model,
    _permute,
    one_thread,  # noqa: F401 (autouse fixture)
)


def _two_layer(w1, b1, w2) -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(w1))
        model[0].bias.copy_(torch.tensor(b1))
        model[2].weight.copy_(torch.tensor(w2))
    return model.eval()


def test_hidden_cost_is_the_rms_distance_of_pre_or_post_relu_activations_by_hand():
    a = _two_layer([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 0.0, -1.0], [[1.0, 1.0, 1.0]] * 2)
    b = _two_layer([[2.0, 0.0], [0.0, -1.0], [1.0, -1.0]], [0.0, 1.0, 0.0], [[1.0, 1.0, 1.0]] * 2)
    x = torch.tensor([[1.0, -2.0], [-1.0, 3.0]])
    # hidden units (rows) on the two examples (columns), worked out from the weights above
    pre_a = np.array([[1.0, -1.0], [-2.0, 3.0], [-2.0, 1.0]])
    pre_b = np.array([[2.0, -2.0], [3.0, -2.0], [3.0, -4.0]])
    post_a, post_b = np.maximum(pre_a, 0), np.maximum(pre_b, 0)
    graph_a, graph_b = build_graph(a, x), build_graph(b, x)
    hidden = next(
        gid
        for gid, g in enumerate(graph_b.groups)
        if not g.fixed and g.features and g.features[0].module == "0"
    )
    assert [str(step[0]) for step in graph_b.groups[hidden].features[0].after] == [
        "aten.relu.default"
    ]
    costs = {}
    for where, acts_a, acts_b in (("pre", pre_a, pre_b), ("post", post_a, post_b)):
        moments = activation_moments([a], b, [graph_a], graph_b, x, acts_at=where)[0]
        costs[where] = moments[hidden].cost()
        # unit i of A against unit j of B: sqrt of the mean over examples of the squared difference
        expected = np.sqrt(((acts_a[:, None, :] - acts_b[None, :, :]) ** 2).mean(-1))
        np.testing.assert_allclose(costs[where], expected, rtol=1e-12)
    # unit 0 against unit 0: (1 - 2)^2 and (-1 - -2)^2 before the ReLU; (1 - 2)^2 and 0 after it
    assert costs["pre"][0, 0] == pytest.approx(1.0) and costs["post"][0, 0] == pytest.approx(
        0.5**0.5
    )


class _Mixed(nn.Module):
    """Three ways of writing the nonlinearity: a module, in place with a dropout after it (then a
    view specialised on the traced batch), a function; and a layer whose output is added to another
    (not followed by a nonlinearity).
    """

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 5)
        self.skip = nn.Linear(4, 6)
        self.act, self.inplace, self.drop = nn.GELU(), nn.ReLU(inplace=True), nn.Dropout(0.5)
        self.out = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.inplace(self.a(x))).view(x.shape[0], 6)  # traced as view(h, [2, 6])
        h = self.b(h) + self.skip(x)
        return self.out(F.leaky_relu(self.c(self.act(h)), 0.1))


def test_the_graph_records_the_elementwise_functions_after_each_layer():
    model = _Mixed().eval()
    graph = build_graph(model, torch.randn(2, 4))
    after = {
        f.module: [str(step[0]).split(".")[1] for step in f.after]
        for g in graph.groups
        for f in g.features
    }
    # a: ReLU in place, then the dropout (identity in eval mode); b and skip: the add stops it
    assert after == {
        "a": ["relu_", "dropout"],
        "b": [],
        "skip": [],
        "c": ["leaky_relu"],
        "out": [],
    }
    # the view to the traced shape is not a step: activations are read on batches of other sizes
    aligned = fusion.align(model, model, x=torch.randn(5, 4), acts_at="post")
    assert all(torch.equal(aligned.state_dict()[k], v) for k, v in model.state_dict().items())


def _dead_units(model: nn.Module, x: torch.Tensor) -> int:
    """Units (channels) of the model's ReLUs that are zero on every example of `x`."""
    dead = []
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, out: dead.append(int((out.movedim(1, 0).flatten(1).amax(1) == 0).sum()))
        )
        for m in model.modules()
        if isinstance(m, nn.ReLU)
    ]
    model(x)
    for h in hooks:
        h.remove()
    return sum(dead)


PERMUTED = {
    "mlp": (lambda: _model("mlp", seed=3, hidden=[24, 16, 12]), CASES["mlp"][1]),
    "user-cnn": CASES["user-cnn"],
}


@pytest.mark.parametrize("acts_at", ["pre", "post"])
@pytest.mark.parametrize("case", sorted(PERMUTED))
def test_a_permuted_copy_is_recovered_exactly_before_and_after_the_nonlinearity(case, acts_at):
    build, units = PERMUTED[case]
    b = build()
    a = _permute(b, units(b), seed=3)
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    # after a ReLU, units that are zero on every example cannot be told apart: none here
    assert _dead_units(b, x) == 0
    for method in ("ot", "rebasin"):
        aligned = fusion.align(a, b, method=method, mode="acts", x=x, acts_at=acts_at)
        assert all(torch.equal(aligned.state_dict()[k], v) for k, v in b.state_dict().items())


def test_post_changes_the_fusion_of_different_models():
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a, b = (CASES["mlp"][0]() for _ in range(2))
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    pre, post = (fusion.fuse([a, b], x=x, acts_at=where) for where in ("pre", "post"))
    assert any(not torch.equal(pre.state_dict()[k], v) for k, v in post.state_dict().items())


def test_bad_acts_at_is_an_error_naming_the_parameter():
    a = CASES["mlp"][0]()
    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(LandscapeError, match="unknown `acts_at` 'mid'; choose one of pre, post"):
        fusion.align(a, a, x=x, acts_at="mid")
    with pytest.raises(LandscapeError, match="`acts_at` 'post' has no effect"):
        fusion.fuse([a, a], mode="wts", x=x, acts_at="post")
    with pytest.raises(LandscapeError, match="`acts_at` 'post' has no effect: vanilla averaging"):
        fusion.fuse([a, a], method="vanilla", acts_at="post")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("acts_at")
    for i in range(2):
        torch.manual_seed(i)
        kwargs = {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16, 12]}
        save_checkpoint(build_model("mlp", kwargs), d / f"m{i}.pt")
    return d


def test_fuse_align_and_barrier_record_acts_at(ckpts, run_cli):
    a, b = ckpts / "m0.pt", ckpts / "m1.pt"
    for command in ("fuse", "align"):
        out = ckpts / f"{command}.pt"
        code, stdout, err = run_cli(
            command,
            a,
            b,
            "--acts-at",
            "post",
            "--samples",
            "50",
            "--no-eval",
            "--json",
            "--out",
            out,
        )
        assert code == 0, err
        assert (
            json.loads(stdout)["acts_at"] == "post" and load_checkpoint(out)[1]["acts_at"] == "post"
        )
    code, stdout, err = run_cli(
        "fuse", a, b, "--mode", "wts", "--no-eval", "--json", "--out", ckpts / "w.pt"
    )
    assert code == 0 and json.loads(stdout)["acts_at"] is None  # no activations read
    store = ckpts / "lmc.h5"
    code, stdout, err = run_cli(
        "barrier", a, b, "--align", "ot", "--acts-at", "post", "--points", "3", "--samples", "50",
        "--json", "--out", store,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["ot"]["acts_at"] == "post"
    assert read_result(store, "/barriers/m0~m1/ot")[1]["acts_at"] == "post"


@pytest.mark.parametrize(
    "args,message",
    [
        (["fuse", "--acts-at", "mid"], "Invalid value for '--acts-at'"),
        (["align", "--acts-at", "mid"], "Invalid value for '--acts-at'"),
        (["fuse", "--mode", "wts", "--acts-at", "post"], "--acts-at 'post' has no effect"),
        (["fuse", "--align", "vanilla", "--acts-at", "post"], "--acts-at 'post' has no effect"),
    ],
)
def test_bad_acts_at_on_the_command_line_is_one_line_with_exit_2(ckpts, run_cli, args, message):
    out = ckpts / "bad.pt"
    code, stdout, err = run_cli(args[0], ckpts / "m0.pt", ckpts / "m1.pt", *args[1:], "--out", out)
    assert code == 2 and stdout == ""
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "args", [["--acts-at", "post"], ["--align", "both", "--mode", "wts", "--acts-at", "post"]]
)
def test_barrier_refuses_acts_at_where_no_activations_are_read_before_any_work(
    ckpts, run_cli, args
):
    """`barrier` without alignment, or aligning by weights, reads no activations: `--acts-at post`
    is refused at once (with --align both, before the unaligned curve is computed)."""
    out = ckpts / "barrier_bad.h5"
    code, stdout, err = run_cli("barrier", ckpts / "m0.pt", ckpts / "m1.pt", *args, "--out", out)
    assert code == 2 and stdout == "" and not out.exists()
    assert err.strip() == (
        "error: --acts-at 'post' has no effect: no activations are read (they are with --align ot, "
        "rebasin or both and --mode acts)"
    ), err
    assert "progress" not in err
