"""Barriers, batched multi-point evaluation, random-direction and plane surfaces, resumable
contours, plots."""

import copy
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fusion
from landscape.data import subsample
from landscape.errors import LandscapeError
from landscape.geometry.barrier import barrier, interpolation_curve, signed_barrier
from landscape.geometry.directions import (
    filter_normalised_direction,
    grid_coefficients,
    path_coefficients,
    plane_axes,
    plane_ranges,
    serpentine,
    trainable_names,
)
from landscape.geometry.points import _plan, _sums_walk, _vmap_pays, _Walk, combine, evaluate_points
from landscape.geometry.surface import compute_surface, path_surface, plane_surface, random_surface
from landscape.io.checkpoint import save_checkpoint
from landscape.loss import correct, loss_sum
from landscape.models.zoo import arch_kwargs_for
from landscape.plots import plot_file
from landscape.training.bn import reset_bn
from landscape.training.loop import TrainConfig, init_model, train
from landscape.training.metrics import evaluate


@pytest.fixture(scope="module")
def splits(digits):
    return {s: subsample(digits.split(s), 400, 0) for s in ("train", "test")}


@pytest.fixture(scope="module")
def bn_cnn(digits):
    """A VGG11 with BatchNorm trained for one epoch (non-trivial running statistics)."""
    kwargs = arch_kwargs_for("vgg11", digits.input_shape, digits.num_classes, width=0.125, bn=True)
    cfg = TrainConfig(batch_size=64, lr=0.05, epochs=1, data_seed=0)
    return [train(init_model("vgg11", kwargs, s), digits, cfg).model.eval() for s in (1, 2)]


def permuted_copy(mlp: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same function with the hidden units of every layer permuted."""
    out = copy.deepcopy(mlp)
    linears = [m for m in out.modules() if isinstance(m, torch.nn.Linear)]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer, following in itertools.pairwise(linears):
            p = torch.randperm(layer.out_features, generator=g)
            layer.weight.copy_(layer.weight[p])
            if layer.bias is not None:
                layer.bias.copy_(layer.bias[p])
            following.weight.copy_(following.weight[:, p])
    return out


# ---- barrier formula -----------------------------------------------------------------------------
def test_barrier_formula_by_hand():
    assert barrier(np.array([0, 0.5, 1]), np.array([1.0, 3.0, 2.0])) == (1.5, 0.5)
    # the linear part is subtracted: a convex curve under the chord has barrier 0, its signed
    # barrier the largest interior excess (-0.45 at a=0.75: 0.8 against the chord's 1.25)
    value, at = barrier(np.linspace(0, 1, 5), np.array([2.0, 1.0, 0.5, 0.8, 1.0]))
    assert value == 0.0 and at == 0.75
    assert signed_barrier(np.linspace(0, 1, 5), np.array([2.0, 1.0, 0.5, 0.8, 1.0])) == (
        pytest.approx(-0.45),
        0.75,
    )
    value, at = barrier(np.linspace(0, 1, 5), np.array([0.0, 1.0, 3.0, 1.0, 4.0]))
    assert value == pytest.approx(3.0 - 2.0) and at == 0.5


def test_barrier_of_model_with_itself_is_zero(mlp_pair, splits):
    curve = interpolation_curve(mlp_pair[0], mlp_pair[0], splits, points=11)
    assert abs(curve.barrier_train) < 1e-6 and abs(curve.barrier_test) < 1e-6
    assert np.allclose(curve.train_loss, curve.train_loss[0], atol=1e-6)


def test_endpoints_are_the_models_own_loss(mlp_pair, splits):
    a, b = mlp_pair
    curve = interpolation_curve(a, b, splits, points=7)
    for split in ("train", "test"):
        ends = [evaluate(m, splits[split]) for m in (a, b)]
        assert getattr(curve, f"{split}_loss")[[0, -1]] == pytest.approx(
            [e.loss for e in ends], abs=1e-6
        )
        assert getattr(curve, f"{split}_acc")[[0, -1]] == pytest.approx(
            [e.acc for e in ends], abs=1e-9
        )


def test_curve_on_one_split_or_loader(mlp_pair, splits):
    a, b = mlp_pair
    both = interpolation_curve(a, b, {"test": splits["test"], "train": splits["train"]}, points=5)
    x, y = splits["train"].x, splits["train"].y
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=100)
    one = interpolation_curve(a, b, loader, points=5)
    np.testing.assert_allclose(one.train_loss, both.train_loss, rtol=1e-5)
    assert one.barrier_train == pytest.approx(both.barrier_train, rel=1e-4)
    assert len(one.test_loss) == 0 and np.isnan(one.barrier_test)
    with pytest.raises(
        LandscapeError, match="a train split and optionally a test split, got 'val'"
    ):
        interpolation_curve(a, b, {"val": loader})


def test_permuted_copy_has_a_barrier_that_alignment_removes(mlp_pair, splits, digits):
    a = mlp_pair[0]
    p = permuted_copy(a)
    assert torch.allclose(a(splits["test"].x), p(splits["test"].x), atol=1e-5)  # same function
    pre = interpolation_curve(p, a, splits, points=11)
    aligned = fusion.align(p, a, mode="acts", x=subsample(digits.train, 200, 0).x)
    post = interpolation_curve(aligned, a, splits, points=11)
    assert pre.barrier_train > 0.05
    assert post.barrier_train < 1e-5 and post.barrier_test < 1e-5


def test_alignment_lowers_the_barrier_of_independently_trained_mlps(mlp_pair, splits, digits):
    a, b = mlp_pair
    pre = interpolation_curve(a, b, splits)
    post = interpolation_curve(
        fusion.align(a, b, mode="acts", x=subsample(digits.train, 200, 0).x), b, splits
    )
    assert pre.barrier_train > 0 and post.barrier_train < pre.barrier_train
    assert post.barrier_test < pre.barrier_test


# ---- batched evaluation equals the loop ----------------------------------------------------------
@pytest.mark.parametrize("which", ["mlp", "bn_cnn"])
def test_batched_barrier_equals_the_loop(which, mlp_pair, bn_cnn, splits):
    a, b = mlp_pair if which == "mlp" else bn_cnn
    before = {k: v.clone() for k, v in a.state_dict().items()}
    batched = interpolation_curve(a, b, splits, points=21, batch_size=128, batching="vmap")
    # several loop chunks
    loop = interpolation_curve(a, b, splits, points=21, batch_size=128, batching="loop")
    for field in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert np.allclose(getattr(batched, field), getattr(loop, field), rtol=0, atol=1e-6), field
    assert batched.barrier_train == pytest.approx(loop.barrier_train, abs=1e-6)
    # the anchor model never moves
    assert all(torch.equal(v, before[k]) for k, v in a.state_dict().items())


def test_batched_contour_equals_the_loop(bn_cnn, splits):
    model = bn_cnn[0]
    surface = random_surface(model, 2, -1.0, 1.0, 5, seed=3)
    batched, _ = compute_surface(model, surface, splits["test"], 128, {}, batching="vmap")
    loop, _ = compute_surface(model, surface, splits["test"], 128, {}, batching="loop")
    assert np.allclose(batched["loss"], loop["loss"], rtol=1e-6, atol=1e-6)
    assert np.array_equal(batched["acc"], loop["acc"])


def test_reset_bn_recomputes_statistics_at_every_point(bn_cnn, splits):
    a, b = bn_cnn
    curve = interpolation_curve(a, b, splits, points=3, reset_bn=True)
    for model, i in ((a, 0), (b, -1)):
        reset = reset_bn(copy.deepcopy(model), splits["train"])
        assert curve.train_loss[i] == pytest.approx(evaluate(reset, splits["train"]).loss, abs=1e-6)
    plain = interpolation_curve(a, b, splits, points=3)
    # the midpoint really changed
    assert not np.allclose(curve.train_loss[1], plain.train_loss[1], atol=1e-4)


# ---- the walk: points moved in place -------------------------------------------------------------
def _extrapolated_line(n: int) -> torch.Tensor:
    """a from -3 to 4 on the line through A (a = 0) and B (a = 1): some running variances go below 0
    there."""
    a = np.linspace(-3.0, 4.0, n)
    return torch.as_tensor(np.stack([1 - a, a], 1))


def _serpentine_grid(model: torch.nn.Module, steps: int):
    surface = random_surface(model, 2, -1.0, 1.0, steps, seed=5)
    return surface.anchors, surface.coeffs[torch.as_tensor(serpentine(surface.shape))]


def _walk_vs_combine_bounds(
    anchors: Sequence[Mapping[str, torch.Tensor]], coeffs: torch.Tensor
) -> Iterator[dict[str, torch.Tensor]]:
    """For each point of a walk, a bound per floating key on |walked - combine| from the float32
    error analysis of both (Higham, "Accuracy and Stability of Numerical Algorithms", SIAM 2002, ch.
    3), following the walk's plan (`_plan`: built afresh, stepped from the run's start, or stepped
    in place).

    With u = 2^-24 (float32 unit roundoff), gamma_n = n u / (1 - n u), K anchors S_k, and for
    coefficients c the magnitude M(c) = sum_k |c_k| |S_k| (elementwise):
    - a point built afresh (`combine`, or the walk's `start_at`) rounds c to float32 then takes
      K-term dot products in any order: error <= gamma_{K+1} M(c);
    - an axpy y = x + alpha v from a point x with error E, moving by Dc in coefficients (alpha v =
      Dc @ S), rounds alpha, v (unless v is one anchor), their product and the sum: error <= (1 + u)
      E + u M(c_y) + gamma_4 M(Dc) (any order, fused or not); v is cached under its step rounded to
      1e-12, which adds 1e-12 max|Dc| sum_k |S_k|;
    - the walked running variances are clamped as `combine`'s are, which cannot widen a difference.
    The walked point's error grows from its run's start, whose magnitude can exceed the point's own
    (an extrapolated line walks from 4A - 3B towards B), so the bound is not a few ulps of the point
    itself.
    """
    u = 2.0**-24
    k = len(anchors)

    def gamma(n: int) -> float:
        return n * u / (1 - n * u)

    keys = [key for key, value in anchors[0].items() if value.is_floating_point()]
    magnitudes = {key: torch.stack([a[key].double().abs() for a in anchors]) for key in keys}
    c = coeffs.double()

    def size(weights: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: torch.tensordot(weights.abs(), magnitudes[key], dims=1) for key in keys}

    # the run's first point, and the walk's error bounds there and at p
    first, start, here = (
        0,
        {},
        {},
    )
    for p, move in enumerate(_plan(coeffs.numpy())):
        point = size(c[p])
        # combine's error, or a walk built afresh
        built = {key: gamma(k + 1) * m for key, m in point.items()}
        if move is None:
            first, start, here = p, built, built
        else:
            origin, before = (first, start) if move[1] else (p - 1, here)
            step = size(c[p] - c[origin])
            cache = 1e-12 * float((c[p] - c[origin]).abs().max())
            here = {
                key: (1 + u) * before[key]
                + u * point[key]
                + gamma(4) * step[key]
                + cache * magnitudes[key].sum(0)
                for key in keys
            }
        yield {key: here[key] + built[key] for key in keys}


def test_walk_builds_the_points_combine_builds(bn_cnn):
    """At every point of a walk the model holds what `combine` builds afresh, within the rounding
    both may make (`_walk_vs_combine_bounds`, whatever the thread count), clamped running variances
    and integer buffers included: along a line, a grid, and a scattered subset of a grid (as a
    resumed run walks)."""
    a, b = bn_cnn
    around_a, grid = _serpentine_grid(a, 6)
    scattered = grid[torch.randperm(len(grid), generator=torch.Generator().manual_seed(0))[:12]]
    for anchors, coeffs in (
        ([a.state_dict(), b.state_dict()], _extrapolated_line(30)),
        (around_a, grid),
        (around_a, scattered),
    ):
        walk = _Walk(a, anchors)
        fresh = combine(anchors, coeffs)
        for p, (_, bounds) in enumerate(
            zip(walk.visit(coeffs.numpy()), _walk_vs_combine_bounds(anchors, coeffs), strict=True)
        ):
            for key, value in walk.model.state_dict().items():
                expected = fresh[key][p]
                if value.is_floating_point():
                    assert ((value.double() - expected.double()).abs() <= bounds[key]).all(), (
                        p,
                        key,
                    )
                else:
                    assert torch.equal(value, expected), key
    clamped = combine([a.state_dict(), b.state_dict()], _extrapolated_line(30))
    # the clamp is exercised
    assert any((v == 0).any() for k, v in clamped.items() if k.endswith("running_var"))


def test_walk_does_not_drift_over_hundreds_of_steps(bn_cnn, splits):
    """499 steps along A->B and a 16x16 grid, each in one chunk: every walked point stays within 4
    float32 ulps (of its largest entry) of the exact combination, and its loss within 1e-6 of the
    freshly built point's."""
    a, b = bn_cnn
    eps = torch.finfo(torch.float32).eps
    few = subsample(splits["test"], 32, 0)
    for anchors, coeffs in (
        ([a.state_dict(), b.state_dict()], path_coefficients(2, 500)[1]),
        _serpentine_grid(a, 16),
    ):
        walk = _Walk(a, anchors)
        stacked = walk.flats[0].anchors.double()
        for p, _ in enumerate(walk.visit(coeffs.numpy())):
            exact = coeffs[p] @ stacked
            assert (
                walk.flats[0].raw.double() - exact
            ).abs().max() <= 4 * eps * exact.abs().max(), p
        walked = evaluate_points(a, anchors, coeffs, [few], 32, batching="loop", chunk=len(coeffs))
        fresh = evaluate_points(a, anchors, coeffs, [few], 32, batching="vmap")
        assert torch.allclose(walked[..., 0], fresh[..., 0], rtol=1e-6, atol=0)
        assert torch.equal(walked[..., 1], fresh[..., 1])


def test_caller_model_comes_back_bit_identical(bn_cnn, splits):
    a, b = bn_cnn
    before = {k: v.clone() for k, v in a.state_dict().items()}
    a.train()  # a mode of its own, which must survive too
    try:
        for kwargs in ({"batching": "loop"}, {"batching": "vmap"}, {"reset_on": splits["train"]}):
            evaluate_points(
                a,
                [a.state_dict(), b.state_dict()],
                _extrapolated_line(5),
                [splits["test"]],
                128,
                **kwargs,
            )
            assert a.training and all(p.requires_grad for p in a.parameters()), kwargs
            assert all(
                torch.equal(v, before[k]) and v.dtype == before[k].dtype
                for k, v in a.state_dict().items()
            ), kwargs
    finally:
        a.eval()


def test_auto_walks_on_the_cpu(mlp_pair, splits, monkeypatch):
    import landscape.geometry.points as points_module

    monkeypatch.setattr(
        points_module, "_vmap_pays", lambda *a, **kw: pytest.fail("timed on the CPU")
    )
    a, b = mlp_pair
    anchors, coeffs = [a.state_dict(), b.state_dict()], _extrapolated_line(40)
    auto = evaluate_points(a, anchors, coeffs, [splits["test"]], 128)
    assert torch.equal(
        auto, evaluate_points(a, anchors, coeffs, [splits["test"]], 128, batching="loop")
    )


def test_timing_vmap_against_the_walk_leaves_the_walk_intact(mlp_pair, splits):
    """What `auto` does on accelerators, run on the CPU: a yes or no, after which the walk gives
    what a new one gives; a rank without examples times nothing and walks."""
    a, b = mlp_pair
    anchors, coeffs = [a.state_dict(), b.state_dict()], _extrapolated_line(20).numpy()
    test = splits["test"]
    walk, loss, cpu = _Walk(a, anchors), loss_sum("ce"), torch.device("cpu")
    assert isinstance(
        _vmap_pays(walk, anchors, coeffs, (test.x[:64], test.y[:64]), loss, cpu), bool
    )
    assert _vmap_pays(walk, anchors, coeffs, None, loss, cpu) is False
    with torch.inference_mode():
        assert torch.equal(
            _sums_walk(walk, coeffs, [[(test.x, test.y)]], loss, True, None, cpu),
            _sums_walk(_Walk(a, anchors), coeffs, [[(test.x, test.y)]], loss, True, None, cpu),
        )


def test_walk_reduces_outputs_in_rounds_or_one_by_one_to_the_same_sums(
    mlp_pair, splits, monkeypatch
):
    """Outputs held for the whole chunk, reduced every few points (several batches and splits), or
    reduced one by one for a criterion given as a callable (not necessarily vmappable): the same
    sums."""
    import landscape.geometry.points as points_module

    a, b = mlp_pair
    anchors, coeffs = [a.state_dict(), b.state_dict()], _extrapolated_line(9)
    data = [splits["train"], splits["test"]]
    whole = evaluate_points(a, anchors, coeffs, data, 64, batching="loop")
    # 7590 logits per point: a flush every third point
    monkeypatch.setattr(points_module, "HELD_OUTPUTS", 20000)
    rounds = evaluate_points(a, anchors, coeffs, data, 64, batching="loop")
    one_by_one = evaluate_points(
        a, anchors, coeffs, data, 64, batching="loop", criterion=torch.nn.CrossEntropyLoss()
    )
    assert torch.allclose(rounds, whole, rtol=1e-12, atol=0)
    assert torch.allclose(one_by_one, whole, rtol=1e-6, atol=0)


def test_serpentine_order_visits_neighbours():
    assert serpentine((3, 4)).tolist() == [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11]
    assert serpentine((5,)).tolist() == [0, 1, 2, 3, 4]


def test_correct_predictions_follow_argmax_through_ties_and_nan():
    g = torch.Generator().manual_seed(0)
    out = torch.randint(0, 3, (3000, 10), generator=g).float()  # many equal maxima
    out[::7, 4] = float("nan")
    out[::13] = 0.0
    y = torch.randint(0, 10, (3000,), generator=g)
    assert correct(out, y).item() == (out.argmax(1) == y).sum().item()
    assert correct(out[:50], y[:50]).item() == (out[:50].argmax(1) == y[:50]).sum().item() > 0


def test_fast_cross_entropy_equals_torch():
    """The summed cross-entropy the evaluations use (transposed log-softmax for few classes on the
    CPU)."""
    g = torch.Generator().manual_seed(0)
    ce = loss_sum("ce")
    for n_classes in (2, 10, 15, 16, 100):
        out = torch.randn(359, n_classes, generator=g) * 3
        y = torch.randint(0, n_classes, (359,), generator=g)
        expected = F.cross_entropy(out.double(), y, reduction="sum").item()
        with torch.inference_mode():
            assert ce(out, y).item() == pytest.approx(expected, rel=1e-6), n_classes
        # with gradients: torch's
        assert ce(out, y).item() == F.cross_entropy(out, y, reduction="sum").item()


# ---- directions and surfaces ---------------------------------------------------------------------
def test_filter_normalisation_per_filter(bn_cnn):
    model = bn_cnn[0]
    state = model.state_dict()
    d = filter_normalised_direction(model, torch.Generator().manual_seed(0))
    params = set(trainable_names(model))
    for key, w in state.items():
        if key in params and w.dim() > 1:
            assert torch.allclose(
                d[key].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5
            ), key
        elif w.is_floating_point():
            # biases, BN parameters and buffers stay put
            assert torch.count_nonzero(d[key]) == 0, key
    with_1d = filter_normalised_direction(model, torch.Generator().manual_seed(0), include_1d=True)
    bias = next(k for k in params if state[k].dim() == 1)
    assert torch.equal(with_1d[bias], state[bias])


def test_contour_centre_is_the_models_loss(mlp_pair, splits):
    model = mlp_pair[0]
    surface = random_surface(model, 2, -1, 1, 5, seed=0)
    arrays, attrs = compute_surface(model, surface, splits["train"], 128, {"t": 1})
    assert arrays["loss"].shape == (5, 5) and attrs["axes"] == "x,y"
    expected = evaluate(model, splits["train"])
    assert arrays["loss"][2, 2] == pytest.approx(expected.loss, abs=1e-6)
    assert arrays["acc"][2, 2] == pytest.approx(expected.acc, abs=1e-9)
    assert arrays["loss"].max() > arrays["loss"][2, 2]


def test_contour_axis_order_is_x_then_y(mlp_pair, splits):
    """loss[i, j] is the model moved by x[i] along d1 and y[j] along d2."""
    model = mlp_pair[0]
    surface = random_surface(model, 2, -1, 1, 3, seed=4)
    arrays, _ = compute_surface(model, surface, splits["train"], 128, {"t": 2})
    d1, d2 = surface.anchors[1], surface.anchors[2]
    moved = copy.deepcopy(model)
    moved.load_state_dict(
        {
            k: v + 1.0 * d1[k] - 1.0 * d2[k] if v.is_floating_point() else v
            for k, v in model.state_dict().items()
        }
    )
    assert arrays["loss"][2, 0] == pytest.approx(evaluate(moved, splits["train"]).loss, abs=1e-5)


def test_plane_and_path_pass_through_the_models(mlp_pair, digits, splits):
    c = init_model("mlp", arch_kwargs_for("mlp", digits.input_shape, 10, hidden=[32, 16]), 9)
    models = [*mlp_pair, c]
    weights, coords = plane_axes([m.state_dict() for m in models], trainable_names(models[0]))
    coeffs = grid_coefficients(coords[:, 0], None, weights[:2]) + torch.as_tensor(
        coords[:, 1:]
    ) * torch.as_tensor(weights[2])
    assert torch.allclose(coeffs, torch.eye(3, dtype=torch.float64), atol=1e-9)
    plane = plane_surface(models, 5, 0.25, ["a", "b", "c"])
    assert len(plane.coeffs) == 25 and np.allclose(plane.model_x, coords[:, 0])
    path = path_surface(models, 4, ["a", "b", "c"])
    arrays, _ = compute_surface(models[0], path, splits["train"], 128, {"t": 3})
    assert arrays["loss"][[0, 3, 6]] == pytest.approx(
        [evaluate(m, splits["train"]).loss for m in (*mlp_pair, c)], abs=1e-6
    )


def test_plane_through_a_midpoint_is_refused(mlp_pair):
    """A two-model average is the float32 midpoint of its parents: about 1e-8 |B - A| off their
    line, which used to pass as a plane with a meaningless y axis."""
    a, b = mlp_pair
    mid = copy.deepcopy(a)
    mid.load_state_dict({k: (v + b.state_dict()[k]) / 2 for k, v in a.state_dict().items()})
    with pytest.raises(LandscapeError, match="lie on one line"):
        plane_surface([a, b, mid], 5, 0.25, ["a", "b", "average"])


def test_plane_ranges_pad_by_the_larger_extent():
    (x0, x1), (y0, y1) = plane_ranges(np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 0.1]]), 0.25)
    assert (x0, x1) == pytest.approx((-2.5, 12.5)) and (y0, y1) == pytest.approx((-2.5, 2.6))


def test_killed_contour_resumes_to_the_same_array(mlp_pair, splits, tmp_path, monkeypatch):
    model = mlp_pair[0]
    settings = {"seed": 1, "steps": 7}
    whole, _ = compute_surface(
        model, random_surface(model, 2, -1, 1, 7, 1), splits["train"], 128, settings, chunk=5
    )

    import landscape.geometry.surface as surface_module

    original = surface_module.evaluate_points
    calls = []

    def dies_after_two_chunks(*args, on_chunk, **kw):
        def chunk_then_die(rows, values):
            on_chunk(rows, values)
            calls.append(len(rows))
            if len(calls) == 2:
                raise KeyboardInterrupt

        return original(*args, on_chunk=chunk_then_die, **kw)

    out = tmp_path / "s.h5"
    monkeypatch.setattr(surface_module, "evaluate_points", dies_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        compute_surface(
            model,
            random_surface(model, 2, -1, 1, 7, 1),
            splits["train"],
            128,
            settings,
            out=out,
            group="/surfaces/m/2d",
            chunk=5,
            save_every=0,
        )
    monkeypatch.setattr(surface_module, "evaluate_points", original)
    with h5py.File(out) as f:
        assert f["surfaces/m/2d/done"][()].sum() == 10 and not f["surfaces/m/2d"].attrs["complete"]

    evaluated = []
    monkeypatch.setattr(
        surface_module,
        "evaluate_points",
        lambda *a, **kw: evaluated.append(len(a[2])) or original(*a, **kw),
    )
    resumed, _attrs = compute_surface(
        model,
        random_surface(model, 2, -1, 1, 7, 1),
        splits["train"],
        128,
        settings,
        out=out,
        group="/surfaces/m/2d",
        chunk=5,
        save_every=0,
    )
    assert evaluated == [49 - 10]  # only the points not yet done
    assert np.allclose(resumed["loss"], whole["loss"], rtol=0, atol=1e-6) and resumed["done"].all()
    with h5py.File(out) as f:
        assert f["surfaces/m/2d"].attrs["complete"]
        assert np.array_equal(f["surfaces/m/2d/loss"][()], resumed["loss"])


# ---- command line and plots ----------------------------------------------------------------------
def test_barrier_cli_both_and_plot(mlp_pair, tmp_path, run_cli):
    a = mlp_pair[0]
    save_checkpoint(a, tmp_path / "a.pt")
    save_checkpoint(permuted_copy(a, 3), tmp_path / "p.pt")
    out = tmp_path / "r.h5"
    code, stdout, err = run_cli(
        "barrier",
        tmp_path / "p.pt",
        tmp_path / "a.pt",
        "--align",
        "both",
        "--points",
        "5",
        "--samples",
        "300",
        "--json",
        "--out",
        out,
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["none"]["barrier_train"] > 0.05 and result["ot"]["barrier_train"] < 1e-5
    assert result["none"]["alphas"] == [0, 0.25, 0.5, 0.75, 1]
    with h5py.File(out) as f:
        g = f["barriers/p~a/none"]
        assert set(g) == {"alphas", "train_loss", "train_acc", "test_loss", "test_acc"}
        assert g.attrs["barrier_train"] == pytest.approx(result["none"]["barrier_train"])
        assert "argmax_test" in g.attrs and "barriers/p~a/ot" in f
    code, stdout, err = run_cli(
        "barrier",
        tmp_path / "p.pt",
        tmp_path / "a.pt",
        "--align",
        "ot",
        "--reg",
        "0.05",
        "--points",
        "3",
        "--samples",
        "100",
        "--json",
    )
    assert code == 0, err
    # as align
    assert (json.loads(stdout)["ot"]["solver"], json.loads(stdout)["ot"]["reg"]) == (
        "sinkhorn",
        0.05,
    )
    code, stdout, err = run_cli(
        "contour", tmp_path / "a.pt", "--steps", "3", "--samples", "100", "--out", out, "--quiet"
    )
    assert code == 0, err
    code, stdout, err = run_cli("plot", out, "--out-dir", tmp_path / "figs")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "r_interpolation_p-a.png",
        "r_surfaces_a_2d.png",
        "r_surfaces_a_2d_3d.png",
    ]


def test_geometry_cli_errors(mlp_pair, digits, tmp_path, run_cli):
    save_checkpoint(mlp_pair[0], tmp_path / "a.pt")
    wide = init_model("mlp", arch_kwargs_for("mlp", digits.input_shape, 10, hidden=[64, 16]), 0)
    save_checkpoint(wide, tmp_path / "w.pt")
    save_checkpoint(
        init_model("mlp", arch_kwargs_for("mlp", digits.input_shape, 10, hidden=[32]), 0),
        tmp_path / "d.pt",
    )
    (tmp_path / "junk.h5").write_text("not hdf5")
    widths = (
        "different widths (features.0.weight is (32, 64) and (64, 64)): align them first (--align "
        "ot)"
    )
    layers = (
        "different layers (6 and 4 tensors; features.2.bias is only in model 1): only models of one"
    )
    for args, words in (
        (("barrier", tmp_path / "a.pt", tmp_path / "w.pt"), widths),
        (("barrier", tmp_path / "a.pt", tmp_path / "d.pt"), layers),
        (("barrier", tmp_path / "a.pt", tmp_path / "a.pt", "--points", "1"), "--points"),
        (("contour", tmp_path / "a.pt", tmp_path / "w.pt"), "align them first (landscape align)"),
        (("contour", tmp_path / "a.pt", "--kind", "plane"), "exactly three"),
        (("contour", tmp_path / "a.pt", "--range", "1:-1"), "--range"),
        (("plot", tmp_path / "junk.h5"), "not an HDF5"),
    ):
        code, _stdout, err = run_cli(*args)
        assert (
            code == 2
            and err.startswith("error:")
            and words in err
            and len(err.strip().splitlines()) == 1
        ), err


def test_plot_file_draws_every_kind(mlp_pair, splits, tmp_path):
    from landscape.io.store import result_arrays, write_result

    out = tmp_path / "r.h5"
    model = mlp_pair[0]
    arrays, attrs = compute_surface(
        model, random_surface(model, 1, -1, 1, 5, 0), splits["train"], 128, {}
    )
    write_result(out, "/surfaces/a/1d", arrays, attrs)
    write_result(
        out, "/barriers/a~b/ot", *result_arrays(interpolation_curve(*mlp_pair, splits, points=3))
    )
    write_result(
        out,
        "/models/a/esd",
        {"grid": np.linspace(-1, 5, 50), "density": np.ones(50) / 6},
        {"sigma2": 0.1},
    )
    names = sorted(p.name for p in plot_file(out, tmp_path / "figs"))
    assert names == ["r_esd_hessian.png", "r_interpolation_a-b.png", "r_surfaces_a_1d.png"]
