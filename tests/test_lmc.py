"""Linear mode connectivity measurements: error barriers (signed and clamped) by hand on a
three-point toy, REPAIR's promised statistics on a hand-checked two-layer MLP and its effect on
trained MLPs, and Git Re-Basin's weight matching against one layer-wise assignment pass."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import fusion
from landscape import LandscapeError
from landscape.data import subsample
from landscape.geometry.barrier import curve_from_values, interpolation_curve
from landscape.training.repair import repair, unit_statistics
from tests.test_fusion_permutation import one_thread  # noqa: F401 (autouse fixture)


def test_error_and_signed_barriers_by_hand():
    alphas = np.array([0.0, 0.5, 1.0])
    train = np.array([[1.0, 0.9], [3.0, 0.6], [2.0, 0.8]])  # (loss, accuracy) per point
    # below the chord: negative signed barriers
    test = np.array([[1.0, 0.9], [1.2, 0.95], [2.0, 0.8]])
    c = curve_from_values(alphas, train, test)
    assert (c.barrier_train, c.signed_barrier_train, c.argmax_train) == (1.5, 1.5, 0.5)
    assert c.error_barrier_train == pytest.approx(0.4 - 0.15) and c.argmax_error_train == 0.5
    assert c.signed_error_barrier_train == pytest.approx(0.25)
    assert (
        c.barrier_test == 0.0
        and c.signed_barrier_test == pytest.approx(1.2 - 1.5)
        and c.argmax_test == 0.5
    )
    assert c.error_barrier_test == 0.0 and c.signed_error_barrier_test == pytest.approx(0.05 - 0.15)
    empty = curve_from_values(alphas, train, np.zeros((0, 2)))
    assert math.isnan(empty.error_barrier_test) and math.isnan(empty.signed_barrier_test)


class Toy(nn.Module):
    """logits = w x + (0, 0.1): one input, two classes."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[w], [-w]]))

    def forward(self, x):
        return x @ self.w.T + torch.tensor([0.0, 0.1])


def test_interpolation_curve_error_barrier_on_a_three_point_toy():
    """A (w=1) classifies x = 1, -1, 2 (labels 0, 1, 0) all right, B (w=-1) all wrong; at a=0.5 w=0
    and every example gets class 1 (logit 0.1 > 0): one of three right. Errors 0, 2/3, 1: the chord
    is 1/2 at a=0.5."""
    x, y = torch.tensor([[1.0], [-1.0], [2.0]]), torch.tensor([0, 1, 0])
    curve = interpolation_curve(
        Toy(1.0), Toy(-1.0), {"train": [(x, y)], "test": [(x, y)]}, points=3
    )
    assert np.allclose(curve.train_acc, [1, 1 / 3, 0])
    assert (
        curve.error_barrier_train == pytest.approx(2 / 3 - 1 / 2)
        and curve.argmax_error_train == 0.5
    )
    mid = (2 * math.log1p(math.exp(0.1)) + math.log1p(math.exp(-0.1))) / 3
    ends = [F_ce(w, x, y) for w in (1.0, -1.0)]
    assert curve.train_loss[1] == pytest.approx(mid)
    assert curve.signed_barrier_train == pytest.approx(mid - sum(ends) / 2)


def F_ce(w, x, y):
    logits = x * torch.tensor([w, -w]) + torch.tensor([0.0, 0.1])
    return torch.nn.functional.cross_entropy(logits, y).item()


def _mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).eval()


def test_repair_gives_each_unit_the_interpolated_statistics():
    a, b = _mlp(0), _mlp(1)
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    data = [
        (x[:30], torch.zeros(30, dtype=torch.long)),
        (x[30:], torch.zeros(20, dtype=torch.long)),
    ]
    alpha = 0.3
    mid = copy.deepcopy(a)
    for p, pa, pb in zip(mid.parameters(), a.parameters(), b.parameters()):
        p.data = (1 - alpha) * pa.data + alpha * pb.data
    fixed = repair(mid, [a, b], [1 - alpha, alpha], data)

    def stats(model):  # by hand: the first layer's outputs on all 50 examples, population std
        h = (x @ model[0].weight.T + model[0].bias).double()
        return h.mean(0), h.std(0, correction=0)

    (ma, sa), (mb, sb), (mm, sm) = stats(a), stats(b), stats(fixed)
    assert torch.allclose(mm, (1 - alpha) * ma + alpha * mb, atol=1e-5)
    assert torch.allclose(sm, (1 - alpha) * sa + alpha * sb, atol=1e-5)
    # the plain midpoint had other statistics
    assert not torch.allclose(stats(mid)[1], sm, atol=1e-3)
    # logits kept
    assert torch.equal(fixed[2].weight, mid[2].weight) and torch.equal(fixed[2].bias, mid[2].bias)
    measured = unit_statistics(fixed, data, ["0"])["0"]
    assert torch.allclose(measured[0], mm, atol=1e-6) and torch.allclose(measured[1], sm, atol=1e-6)
    # the input is kept
    assert torch.equal(mid[0].weight, ((1 - alpha) * a[0].weight + alpha * b[0].weight))


def test_repair_needs_biases_and_examples():
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(8, 3)
    with pytest.raises(LandscapeError, match="layer '0' has none"):
        repair(model, [model, model], [0.5, 0.5], [(x, torch.zeros(8, dtype=torch.long))])
    with pytest.raises(LandscapeError, match="yields no batches"):
        repair(model, [model, model], [0.5, 0.5], [])


@pytest.fixture(scope="module")
def aligned_pair(mlp_pair, digits):
    a, b = mlp_pair
    return fusion.align(a, b, mode="wts", method="rebasin"), b


def test_repair_lowers_the_midpoint_loss_of_aligned_mlps(aligned_pair, digits):
    """Measured: train loss at a=0.5 0.1058 plain, 0.0951 repaired (test 0.1525 and 0.1532: these
    small digits MLPs lose little variance, so the held-out loss barely moves)."""
    a, b = aligned_pair
    splits = {s: subsample(digits.split(s), 300, 0) for s in ("train", "test")}
    plain = interpolation_curve(a, b, splits, points=3)
    fixed = interpolation_curve(a, b, splits, points=3, repair_on=subsample(digits.train, 300, 1))
    assert fixed.repair and not plain.repair
    # the ends are the models
    assert np.allclose(fixed.train_loss[[0, 2]], plain.train_loss[[0, 2]])
    assert fixed.train_loss[1] < plain.train_loss[1] - 0.005
    with pytest.raises(LandscapeError, match="choose one"):
        interpolation_curve(a, b, splits, points=3, reset_bn=True, repair_on=splits["train"])


def test_weight_matching_barrier_no_worse_than_one_layerwise_pass(mlp_pair, aligned_pair, digits):
    """Measured (train loss barrier, 300 examples): none 0.826, one layer-wise pass (OT wts with
    uniform masses: an assignment per layer in forward order) 0.107, Re-Basin weight matching
    0.086."""
    a, b = mlp_pair
    splits = {s: subsample(digits.split(s), 300, 0) for s in ("train", "test")}
    one_pass = interpolation_curve(fusion.align(a, b, mode="wts"), b, splits, points=11)
    matched = interpolation_curve(aligned_pair[0], b, splits, points=11)
    plain = interpolation_curve(a, b, splits, points=11)
    assert matched.barrier_train <= one_pass.barrier_train < plain.barrier_train


def test_cli_rebasin_repair_and_error_barriers(mlp_pair, tmp_path, run_cli):
    import json

    import h5py

    from landscape.io.checkpoint import load_checkpoint, save_checkpoint

    a, b = (tmp_path / "a.pt", tmp_path / "b.pt")
    save_checkpoint(mlp_pair[0], a)
    save_checkpoint(mlp_pair[1], b)
    out = tmp_path / "r.h5"
    code, stdout, err = run_cli(
        "barrier",
        a,
        b,
        "--align",
        "rebasin",
        "--mode",
        "wts",
        "--repair",
        "--repair-samples",
        "200",
        "--points",
        "3",
        "--samples",
        "200",
        "--json",
        "--out",
        out,
    )
    assert code == 0, err
    result = json.loads(stdout)["rebasin"]
    assert result["solver"] == "assignment" and result["function_kept"] and result["repair"]
    assert result["error_barrier_train"] == max(result["signed_error_barrier_train"], 0.0)
    with h5py.File(out) as f:
        g = f["barriers/a~b/rebasin"]
        assert g.attrs["repair_samples"] == 200 and "signed_error_barrier_test" in g.attrs
    code, stdout, err = run_cli(
        "barrier", a, b, "--align", "rebasin", "--points", "3", "--samples", "100"
    )
    assert code == 0 and "error barrier train" in stdout and "signed" in stdout, err
    code, stdout, err = run_cli(
        "align",
        a,
        b,
        "--align",
        "rebasin",
        "--mode",
        "acts",
        "--out",
        tmp_path / "al.pt",
        "--json",
        "--no-eval",
    )
    assert code == 0 and json.loads(stdout)["function_kept"], err
    code, stdout, err = run_cli(
        "fuse",
        a,
        b,
        "--align",
        "rebasin",
        "--mode",
        "wts",
        "--repair",
        "--out",
        tmp_path / "f.pt",
        "--json",
    )
    assert code == 0, err
    meta = load_checkpoint(tmp_path / "f.pt")[1]
    assert (
        meta["method"] == "rebasin"
        and meta["repair_samples"] == 500
        and meta["solver"] == "assignment"
    )
    code, _, err = run_cli(
        "fuse", a, b, "--align", "rebasin", "--reg", "0.1", "--out", tmp_path / "g.pt"
    )
    assert (
        code == 2
        and err.startswith("error: Git Re-Basin finds permutations")
        and not (tmp_path / "g.pt").exists()
    )


def test_curve_coefficients_by_hand():
    from landscape.geometry.curve import curve_coefficients

    t = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(
        curve_coefficients("bezier", t)[[0, 2, 4]], [[1, 0, 0], [0.25, 0.5, 0.25], [0, 0, 1]]
    )
    np.testing.assert_allclose(
        curve_coefficients("polychain", t),
        [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0.5, 0.5], [0, 0, 1]],
    )
    with pytest.raises(LandscapeError, match="unknown curve kind 'spline'"):
        curve_coefficients("spline", t)


def test_trained_bezier_curve_has_a_lower_barrier_than_the_straight_line(mlp_pair, digits):
    """Measured (train loss barrier on 300 examples, 7 points): straight line 0.829, Bezier curve
    after 20 epochs 0.072 (polychain 0.031); test error barrier 20.2 points on the line, 1.6 on the
    curve."""
    from landscape.geometry.curve import measure_curve, train_curve

    a, b = mlp_pair
    splits = {s: subsample(digits.split(s), 300, 0) for s in ("train", "test")}
    line = interpolation_curve(a, b, splits, points=7)
    bend = train_curve(a, b, digits.train, kind="bezier", epochs=20, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), mlp_pair[0].parameters()))
    curve = measure_curve(a, bend, b, "bezier", splits, points=7)
    # the same ends
    np.testing.assert_allclose(curve.train_loss[[0, -1]], line.train_loss[[0, -1]], rtol=1e-5)
    assert curve.barrier_train < line.barrier_train / 4
    assert curve.error_barrier_test < line.error_barrier_test


def test_cli_curve_stores_the_bend_and_both_paths_and_plots_them(mlp_pair, tmp_path, run_cli):
    import json

    import h5py

    from landscape.io.checkpoint import load_checkpoint, save_checkpoint

    a, b = (tmp_path / "a.pt", tmp_path / "b.pt")
    save_checkpoint(mlp_pair[0], a)
    save_checkpoint(mlp_pair[1], b)
    store, bend = tmp_path / "c.h5", tmp_path / "bend.pt"
    code, stdout, err = run_cli(
        "curve",
        a,
        b,
        "--kind",
        "polychain",
        "--epochs",
        "3",
        "--points",
        "5",
        "--samples",
        "200",
        "--out",
        bend,
        "--store",
        store,
        "--json",
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["polychain"]["barrier_train"] < result["none"]["barrier_train"]
    assert result["polychain"]["alphas"] == [0, 0.25, 0.5, 0.75, 1]
    _, meta = load_checkpoint(bend)
    assert meta["kind"] == "polychain" and [p["path"] for p in meta["parents"]] == [str(a), str(b)]
    with h5py.File(store) as f:
        assert (
            set(f["barriers/a~b"]) == {"none", "polychain"}
            and f["barriers/a~b/polychain"].attrs["epochs"] == 3
        )
    code, stdout, err = run_cli("plot", store, "--out-dir", tmp_path / "plots")
    assert code == 0 and "interpolation_a-b.png" in stdout, err
    code, _, err = run_cli("curve", a, b, "--epochs", "0", "--out", tmp_path / "x.pt")
    assert (
        code == 2
        and err.startswith("error: --epochs must be at least 1")
        and not (tmp_path / "x.pt").exists()
    )


def test_contour_path_with_repair_matches_the_repaired_barrier(
    aligned_pair, digits, tmp_path, run_cli
):
    import json

    from landscape.io.checkpoint import save_checkpoint

    a, b = aligned_pair
    save_checkpoint(a, tmp_path / "a.pt")
    save_checkpoint(b, tmp_path / "b.pt")
    code, stdout, err = run_cli(
        "contour",
        tmp_path / "a.pt",
        tmp_path / "b.pt",
        "--kind",
        "path",
        "--steps",
        "3",
        "--samples",
        "150",
        "--repair",
        "--repair-samples",
        "120",
        "--json",
    )
    assert code == 0, err
    loss = json.loads(stdout)["loss"]
    train = subsample(digits.train, 150, 0)
    curve = interpolation_curve(a, b, train, points=3, repair_on=subsample(digits.train, 120, 0))
    np.testing.assert_allclose(loss, curve.train_loss, rtol=1e-6)
    assert loss[1] < interpolation_curve(a, b, train, points=3).train_loss[1]
    code, _, err = run_cli("contour", tmp_path / "a.pt", "--kind", "2d", "--repair")
    assert code == 2 and "--repair applies to points between models" in err


def test_study_config_chooses_the_alignment_method(tmp_path, run_cli):
    from landscape.study.config import load_config
    from tests.test_study import TINY

    text = TINY.format(hvps=20)
    assert "[fusion]\n" in text
    path = tmp_path / "rb.toml"
    path.write_text(text.replace("[fusion]\n", '[fusion]\nmethod = "rebasin"\n'))
    assert load_config(path).fusion.method == "rebasin"
    (tmp_path / "ot.toml").write_text(text)
    assert load_config(tmp_path / "ot.toml").fusion.method == "ot"
    path.write_text(text.replace("[fusion]\n", '[fusion]\nmethod = "greedy"\n'))
    code, _, err = run_cli(
        "study", path, "--workdir", tmp_path / "runs", "--report-dir", tmp_path / "report"
    )
    assert code == 2 and err.startswith(
        "error: config [fusion] method must be one of ot, rebasin, got 'greedy'"
    )
    assert not (tmp_path / "runs").exists()


def test_study_report_barrier_table_has_the_test_error_barrier():
    """The barrier table's last two columns: the test error barrier before and after alignment, in
    percentage points, read from the stored fractions (a result stored before error barriers shows
    as missing)."""
    from landscape.study.stats import MISSING
    from landscape.study.tables import Table, barrier_rows
    from landscape.study.view import Cell, StudyView

    stored = {
        ("/barriers/A~B/none", "barrier_train"): 0.5,
        ("/barriers/A~B/ot", "barrier_train"): 0.1,
        ("/barriers/A~B/none", "barrier_test"): 0.6,
        ("/barriers/A~B/ot", "barrier_test"): 0.2,
        ("/barriers/A~B/none", "error_barrier_test"): 0.125,
    }

    class View:  # the real barrier lookups over a dictionary of stored attributes
        replicates = 1
        barrier, cell_barrier = StudyView.barrier, StudyView.cell_barrier

        def attr(self, group, name):
            return stored.get((group, name))

        def cells_of(self, init=None, batches=None):
            return [Cell("bs32", "same", "corresponding", 32, 32, ({"a": "A", "b": "B"},))]

    header, rows = barrier_rows(View(), Table("barrier", "corresponding", None, "t"))
    assert header[-2:] == ["Pre, test error %", "Post, test error %"]
    assert rows[0][-2:] == ["12.50", MISSING]
    assert rows[0][3:7] == ["0.5000", "0.1000", "0.6000", "0.2000"]
