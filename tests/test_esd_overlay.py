"""ESD overlays: the densities of a file on one axis with one kernel width chosen from the runs, and
figure names that carry the file's stem."""

import numpy as np
import pytest

from landscape.curvature.density import smooth
from landscape.io.store import write_result
from landscape.plots import esd, plot_file

# two runs, pooled gaps all 0.5
INTERLEAVED = np.array([[0.0, 1.0, 2.0, 3.0], [0.5, 1.5, 2.5, 3.5]])


def test_kernel_width_follows_the_median_gap_rule():
    assert esd.kernel_sigma2([INTERLEAVED]) == pytest.approx((2 * 0.5) ** 2)
    # the rule pools every density's runs: adding 4.0 and 4.5 keeps the median gap
    assert esd.kernel_sigma2([INTERLEAVED, np.array([[4.0, 4.5]])]) == pytest.approx(1.0)
    # near-duplicate nodes: the floor of 1e-3 of the range (10) wins over 2 x the median gap (2e-6)
    assert esd.kernel_sigma2([np.array([[0.0, 1e-6, 2e-6, 10.0]])]) == pytest.approx(0.01**2)
    assert esd.kernel_sigma2([np.array([[3.0, 3.0]])]) == pytest.approx(0.003**2)


def test_the_chosen_kernel_removes_the_comb_of_one_run():
    weights = np.full_like(INTERLEAVED, 0.25)
    ((grid, density),) = esd.overlay_curves(
        [("a", {"nodes": INTERLEAVED, "weights": weights}, {})]
    )[0]
    inner = density[(grid > 1.0) & (grid < 2.5)]
    assert inner.max() / inner.min() < 1.1  # one smooth bump over the nodes, no spike per node
    rise = np.diff(inner)
    assert ((rise[:-1] > 0) & (rise[1:] <= 0)).sum() == 1  # a single local maximum
    # the fixed default kernel (1e-5 x range) resolves every node as a spike
    grid, density, _ = smooth(INTERLEAVED, weights)
    inner = density[(grid > 1.0) & (grid < 2.5)]
    assert inner.max() > 1e6 * inner.min()
    assert np.trapezoid(density, grid) == pytest.approx(1.0, rel=1e-3)


def _two_esds(path):
    """Store ESDs of models a and b (nodes of b spread 4 times wider); return their nodes."""
    rng = np.random.default_rng(0)
    stored = []
    for name, scale in (("a", 1.0), ("b", 4.0)):
        nodes = np.sort(rng.normal(size=(2, 6)) * scale, axis=1)
        write_result(
            path,
            f"/models/{name}/esd",
            {
                "nodes": nodes,
                "weights": np.full((2, 6), 1 / 6),
                "grid": np.linspace(-1, 1, 5),
                "density": np.ones(5),
            },
            {"curvature": "hessian", "sigma2": 1e-5},
        )
        stored.append(nodes)
    return stored


def test_two_esds_of_a_file_share_one_axis_and_one_legend(tmp_path, monkeypatch):
    drawn = []

    def keep(fig, *args, **kwargs):
        drawn.append(fig)
        return save(fig, *args, **kwargs)

    save = esd.save_figure
    monkeypatch.setattr(esd, "save_figure", keep)
    out = tmp_path / "r.h5"
    nodes = _two_esds(out)
    assert [p.name for p in plot_file(out, tmp_path / "figs")] == ["r_esd_hessian.png"]
    (fig,) = drawn
    (ax,) = fig.axes
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == ["a", "b"]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    lo, hi = ax.get_xlim()
    sigma2 = esd.kernel_sigma2(nodes)
    ends = []
    for line, n in zip(
        lines, nodes
    ):  # each recomputed from its nodes with the shared kernel, on the shared span
        grid, density, _ = smooth(n, np.full((2, 6), 1 / 6), sigma2)
        np.testing.assert_allclose(line.get_xdata()[2:-2], grid)
        np.testing.assert_allclose(line.get_ydata()[2:-2], density + esd.FLOOR)
        ends.append(line.get_xdata()[[0, -1]])
        assert lo <= grid[0] and grid[-1] <= hi
    np.testing.assert_array_equal(ends[0], ends[1])


def test_figures_of_two_files_in_one_folder_do_not_collide(tmp_path):
    for stem in ("first", "second"):
        _two_esds(tmp_path / f"{stem}.h5")
        write_result(
            tmp_path / f"{stem}.h5",
            "/surfaces/m/1d",
            {
                "x": np.linspace(-1, 1, 3),
                "loss": np.ones(3),
                "done": np.ones(3, dtype=bool),
                "acc": np.ones(3),
                "model_x": np.array([0.0]),
            },
            {"kind": "1d"},
        )
    first = plot_file(tmp_path / "first.h5", tmp_path / "figs")
    second = plot_file(tmp_path / "second.h5", tmp_path / "figs")
    assert not set(first) & set(second)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "first_esd_hessian.png",
        "first_surfaces_m_1d.png",
        "second_esd_hessian.png",
        "second_surfaces_m_1d.png",
    ]
