"""The report's arithmetic on hand-computed numbers: replicate estimates, trends against the batch
size, paired and Welch tests; the progress lines written to a log; figures that are the same bytes
every time."""

import math

import numpy as np
import pytest

from landscape import progress
from landscape.study.stats import Test as Effect
from landscape.study.stats import estimate, fmt, holm, paired, trend, unpaired


def test_estimate_and_format():
    assert fmt(estimate([1.0, 3.0]), 4) == "2.0000 ± 1.4142"  # sample sd of 1 and 3 is sqrt(2)
    assert fmt(estimate([50.0, 70.0, None]), 2, expected_n=3) == "60.00 ± 14.14 (n=2)"
    # one replicate: the measurement's own s.e.
    assert fmt(estimate([21.1], own_se=0.42)) == "21.10 ± 0.42"
    assert fmt(estimate([0.5]), 4) == "0.5000"  # one barrier: no ±
    assert fmt(estimate([None, math.nan])) == "–"  # noqa: RUF001


def test_trend_is_the_slope_per_doubling():
    x = [32, 32, 128, 128, 512, 512]
    y = [1.0, 1.2, 2.1, 1.9, 3.0, 3.2]  # log2 x = 5, 5, 7, 7, 9, 9
    t = trend(x, y)
    # by hand: log2 x has mean 7 and Sxx = 2 * (-2)**2 + 2 * 0 + 2 * 2**2 = 16; 6 points, 4 degrees
    # of freedom
    sxy = sum((math.log2(a) - 7) * (b - np.mean(y)) for a, b in zip(x, y))
    slope = sxy / 16.0
    residuals = [b - (np.mean(y) + slope * (math.log2(a) - 7)) for a, b in zip(x, y)]
    se = math.sqrt(sum(r * r for r in residuals) / 4 / 16.0)
    assert t.effect == pytest.approx(slope) and t.se == pytest.approx(se) and t.n == 6
    assert t.significant
    flat = trend([32, 128, 512], [0.0, 0.0, 0.0])
    assert flat.effect == 0 and flat.p == 1.0 and not flat.significant
    assert trend([32, 32], [1.0, 2.0]) is None


def test_paired_and_welch():
    t = paired([1.0, 2.0, 3.0], [0.5, 1.7, 2.0])  # differences 0.5, 0.3, 1.0
    assert t.effect == pytest.approx(0.6) and t.se == pytest.approx(math.sqrt(0.13 / 3))
    # t = 2.88 on 2 degrees of freedom
    assert t.p == pytest.approx(0.1022, abs=1e-3) and not t.significant
    assert paired([0.1, 0.2], [0.1 + 1e-10, 0.2]).effect == 0.0  # float rounding is no difference
    w = unpaired([1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0])
    assert w.effect == pytest.approx(-3.5) and w.se == pytest.approx(math.sqrt(1 / 3 + (5 / 3) / 4))
    assert unpaired([1.0], [2.0, 3.0]) is None


def test_holm_adjusts_over_the_family():
    """By hand: p = 0.01, 0.04, 0.03, 0.005 over m = 4 tests sort as 0.005, 0.01, 0.03, 0.04 and
    become 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06; missing
    and exact tests are no part of the family."""
    tests = [Effect(1.0, 0.1, p, 10, 9) for p in (0.01, 0.04, 0.03, 0.005)]
    exact = Effect(0.0, 0.0, 1.0, 10)
    adjusted = holm([tests[0], None, tests[1], exact, tests[2], tests[3]])
    assert adjusted[1] is None and adjusted[3] == exact
    assert [t.p_adjusted for t in adjusted if t is not None and not t.exact] == pytest.approx(
        [0.03, 0.06, 0.06, 0.02]
    )
    assert [t.significant for t in adjusted if t is not None and not t.exact] == [
        True,
        False,
        False,
        True,
    ]
    # p = 0.04 alone, 0.06 in the family
    assert tests[1].significant and not adjusted[2].significant


def test_interval_and_minimum_n():
    """The 95% interval is Student's t on the test's degrees of freedom (t(0.975, 2) = 4.302653); a
    trend on 2 batch sizes x 2 replicates (n = 4) gets no verdict however small its p."""
    t = paired([1.0, 2.0, 3.0], [0.5, 1.7, 2.0])
    half = 4.302653 * math.sqrt(0.13 / 3)
    assert t.df == 2 and t.interval() == pytest.approx((0.6 - half, 0.6 + half), rel=1e-6)
    assert "95% CI [-0.296, +1.5] (p = 0.102, n = 3)" in t.text()
    w = unpaired([1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0])
    vx, vy = 1 / 3, (5 / 3) / 4
    assert w.df == pytest.approx((vx + vy) ** 2 / (vx**2 / 2 + vy**2 / 3))  # Welch-Satterthwaite
    few = trend([32, 32, 512, 512], [1.0, 1.02, 2.0, 2.01])
    assert few.n == 4 and few.p < 0.01 and not few.testable and not few.significant
    assert trend([32, 32, 128, 128, 512, 512], [1.0, 1.2, 2.1, 1.9, 3.0, 3.2]).testable


def test_findings_sentences():
    from landscape.study.findings import _Verdict

    claim = _Verdict(None, "Barrier against the batch size", "grows", "shrinks", " per doubling")
    few = trend([32, 32, 512, 512], [1.0, 1.02, 2.0, 2.01])
    assert "no verdict from fewer than 6 values" in claim.sentence(
        few
    ) and "**" not in claim.sentence(few)
    many = holm(
        [
            trend([32, 32, 128, 128, 512, 512], [1.0, 1.2, 2.1, 1.9, 3.0, 3.2]),
            Effect(1.0, 1.0, 0.5, 9, 8),
        ]
    )[0]
    text = claim.sentence(many)
    assert text.startswith("Barrier against the batch size: **grows**, +0.5 per doubling, 95% CI [")
    assert "Holm-adjusted p < 0.001" in text and text.endswith("n = 6): exceeds its uncertainty.")


def test_progress_lines_without_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    progress.set_quiet(False)
    bar = progress.bar(total=4, desc="stage")
    bar.update(2)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("progress: stage: 2/4 (50%), elapsed 0:00, ETA 0:00")
    assert lines[-1] == "progress: stage: 2/4 done in 0:00"
    monkeypatch.setattr(progress, "INTERVAL", 60.0)
    stage = progress.bar(total=0, desc="empty stage", stage=True)
    stage.close()
    short = progress.bar(total=3, desc="short")  # under INTERVAL seconds: silent
    short.update(3)
    short.close()
    with pytest.raises(ValueError):
        failing = progress.bar(total=3, desc="failing", stage=True)
        try:
            raise ValueError("bad input")
        finally:
            failing.close()  # no line: the error line is the last word
    assert capsys.readouterr().err.splitlines() == ["progress: empty stage: 0/0 done in 0:00"]
    progress.set_quiet(True)
    quiet = progress.bar(total=3, desc="quiet", stage=True)
    quiet.update(3)
    quiet.close()
    progress.set_quiet(False)
    assert capsys.readouterr().err == ""


def test_figures_are_the_same_bytes_every_time(tmp_path):
    from landscape.plots.trends import Panel, Series, plot_trends

    series = (Series("a", (32, 128, 512), (0.1, 0.2, 0.4), (0.01, np.nan, 0.02), "C0"),)
    first = plot_trends(
        [Panel("t", "y", series)], tmp_path / "one" / "f", "title", formats=("png", "pdf", "svg")
    )
    second = plot_trends(
        [Panel("t", "y", series)], tmp_path / "two" / "f", "title", formats=("png", "pdf", "svg")
    )
    assert [p.name for p in first] == ["f.png", "f.pdf", "f.svg"]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_plot_formats_and_a_bad_format(tmp_path, run_cli):
    from landscape.io.store import write_result

    store = tmp_path / "r.h5"
    write_result(
        store,
        "/models/a/esd",
        {"grid": np.linspace(-1, 5, 50), "density": np.ones(50) / 6},
        {"sigma2": 0.1},
    )
    code, _, err = run_cli(
        "plot", store, "--out-dir", tmp_path / "figs", "--format", "png,pdf", "--dpi", "80"
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "r_esd_hessian.pdf",
        "r_esd_hessian.png",
    ]
    code, _, err = run_cli("plot", store, "--out-dir", tmp_path / "bad", "--format", "png,gif")
    assert (
        code == 2
        and err.startswith("error: unknown figure format 'gif'")
        and len(err.strip().splitlines()) == 1
    )
    assert not (tmp_path / "bad").exists()


def test_colorbar_labels_span_the_whole_scale():
    from landscape.plots.surface import colorbar_ticks

    # not up to 1 only
    assert colorbar_ticks(0.07, 1.88) == pytest.approx([0.07, 0.1, 0.2, 0.5, 1.0, 1.88])
    assert colorbar_ticks(0.0015, 0.67) == pytest.approx(
        [0.0015, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.67]
    )


def test_contours_of_a_file_share_one_colour_scale(tmp_path, run_cli, monkeypatch):
    """Two 2-D surfaces with losses 0.0015-0.67 and 0.07-2.2 are drawn on one scale (0.0015-2.2), or
    on the one --vmin/--vmax/--levels fix; `plot --quiet` is accepted and a non-positive scale
    refused."""
    from landscape.io.store import write_result
    from landscape.plots import files

    store = tmp_path / "s.h5"
    grid = np.linspace(-1, 1, 5)
    for name, (lo, hi) in {"a": (0.0015, 0.67), "b": (0.07, 2.2)}.items():
        loss = np.geomspace(lo, hi, 25).reshape(5, 5)
        write_result(
            store,
            f"/surfaces/{name}/2d",
            {
                "x": grid,
                "y": grid,
                "loss": loss,
                "acc": loss * 0,
                "done": loss > 0,
                "model_x": np.zeros(1),
                "model_y": np.zeros(1),
            },
            {"kind": "2d"},
        )
    seen = []
    real = files.plot_surface
    monkeypatch.setattr(files, "plot_surface", lambda *a, **k: seen.append(a[6]) or real(*a, **k))
    assert run_cli("plot", store, "--out-dir", tmp_path / "f", "--quiet")[0] == 0
    assert len(seen) == 2 and np.array_equal(seen[0], seen[1]) and len(seen[0]) == 24
    assert (seen[0][0], seen[0][-1]) == pytest.approx((0.0015, 2.2))
    seen.clear()
    code, _, _ = run_cli(
        "plot",
        store,
        "--out-dir",
        tmp_path / "g",
        "--vmin",
        "0.01",
        "--vmax",
        "10",
        "--levels",
        "9",
    )
    assert code == 0
    assert seen[0] == pytest.approx(np.geomspace(0.01, 10, 9))
    code, _, err = run_cli("plot", store, "--out-dir", tmp_path / "h", "--vmin", "0")
    assert code == 2 and "0 < vmin < vmax" in err and not (tmp_path / "h").exists()


def test_one_legend_that_matches_the_marks():
    """Series drawn with circles in one panel and dashed squares in another: the legend gives each
    label's colour once (no marker of either panel) plus one entry per (marker, line style) pair,
    named."""
    from landscape.plots.trends import Panel, Series, legend_handles

    same = Panel(
        "same",
        "y",
        (
            Series("A", (32,), (1.0,), (np.nan,), "C0", "o", "-"),
            Series("B", (32,), (2.0,), (np.nan,), "C1", "o", "-"),
        ),
    )
    diff = Panel("diff", "y", (Series("A", (32,), (1.0,), (np.nan,), "C0", "s", "--"),))
    handles, labels = legend_handles(
        [same, diff], {("o", "-"): "same init", ("s", "--"): "different init"}
    )
    assert labels == ["A", "B", "same init", "different init"]
    assert [h.get_marker() for h in handles] == ["None", "None", "o", "s"]
    assert [h.get_linestyle() for h in handles] == ["-", "-", "-", "--"]
    handles, labels = legend_handles([diff])  # one style: the colour entries carry it
    assert labels == ["A"] and (handles[0].get_marker(), handles[0].get_linestyle()) == ("s", "--")
