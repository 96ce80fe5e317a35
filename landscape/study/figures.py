"""The report's figures, drawn from the store alone, each with the caption printed under it.

The barrier and sharpness trends against the batch size (mean ± standard deviation over
replicates), the interpolation curves (seed study figures 1-2), the spectral densities of the fused
models (figures 3-5) and the train-loss contours around the fine-tuned OT fusions (figure 6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..plots.esd import plot_esd_overlay
from ..plots.figure import palette
from ..plots.path import draw_interpolation, legend_below
from ..plots.surface import plot_surface_grid
from ..plots.trends import Panel, Series, plot_trends
from .view import Cell, StudyView

INIT_STYLE = {"same": ("o", "-"), "diff": ("s", "--")}
INIT_NAME = {"same": "same init", "diff": "different init"}


@dataclass(frozen=True)
class Drawn:
    """A figure of the report: its file stem (one file per format) and its caption.

    Attributes:
        stem: The file name without suffix, in the report's folder.
        caption: The caption the report prints under it.

    Examples:
        >>> Drawn("contours", "Training loss around the fused model.").stem
        'contours'
    """

    stem: str
    caption: str


class Figures:
    """Draws the report's figures into `out_dir` in `formats` at `dpi`.

    Each method draws one kind of figure when the store has its data and returns what it drew.

    Args:
        view: The study.
        out_dir: The folder the figures go to.
        formats: The figure formats.
        dpi: The resolution of raster formats.

    Examples:
        >>> import tempfile
        >>> from landscape.io.store import open_store, write_results
        >>> def cell(name, bs, pre, post):  # a same-init pair and its train-loss barriers
        ...     pair = {"name": name, "a": name + "A", "b": name + "B", "cell": name,
        ...             "init": "same", "batches": "corresponding", "bs_a": bs, "bs_b": bs,
        ...             "replicate": 0}
        ...     return {f"study/pairs/{name}": ({}, pair),
        ...             f"barriers/{name}A~{name}B/none": ({}, {"barrier_train": pre}),
        ...             f"barriers/{name}A~{name}B/ot": ({}, {"barrier_train": post})}
        >>> groups = {"study/config": ({}, {"config": "{}"}), **cell("bs32", 32, 0.5, 0.1),
        ...           **cell("bs128", 128, 0.9, 0.2)}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "s.h5", groups)
        ...     with open_store(Path(tmp) / "s.h5") as store:
        ...         view = StudyView(store, Path(tmp) / "s.h5")
        ...         figures = Figures(view, Path(tmp), ("svg",), 100)
        ...         drawn = figures.barriers()
        ...         print(drawn.stem, (Path(tmp) / "barrier_vs_batch_size.svg").exists())
        ...         print(figures.sharpness(), figures.spectra(), figures.contours())
        barrier_vs_batch_size True
        None [] None
    """

    def __init__(self, view: StudyView, out_dir: Path, formats: Sequence[str], dpi: int):
        self.view, self.out_dir, self.formats, self.dpi = view, out_dir, tuple(formats), dpi
        n = view.replicates
        self.spread = (
            f"mean ± standard deviation over {n} replicates"
            if n > 1
            else "one replicate, so no error bars"
        )

    def all(self) -> list[Drawn]:
        """Every figure the store has the data for, in the report's order.

        Returns:
            The figures drawn.
        """
        drawn = [self.barriers(), self.sharpness()]
        drawn += [self.interpolation(cells) for cells in self._by_batches()]
        drawn += [*self.spectra(), self.contours()]
        return [d for d in drawn if d is not None]

    # ---- trends ----------------------------------------------------------------------------------
    def _series(self, cells: list[Cell], label: str, color, init: str, values) -> Series:
        """One trend line: the cells' estimates (`values` of a cell) against A's batch size.

        Returns:
            The series, NaN where a cell has no value.
        """
        marker, ls = INIT_STYLE[init]
        estimates = [values(c) for c in cells]
        return Series(
            label,
            tuple(c.bs_a for c in cells),
            tuple(np.nan if e is None else e.mean for e in estimates),
            tuple(np.nan if e is None or e.sd is None else e.sd for e in estimates),
            color,
            marker,
            ls,
        )

    def barriers(self) -> Drawn | None:
        """Train and test LMC barriers against the batch size, pre and post alignment.

        Same and different init are drawn in each panel.

        Returns:
            The figure, or None when no barrier is stored.
        """
        colours = palette()
        panels = []
        for split in ("train", "test"):
            series = []
            for init in ("same", "diff"):
                cells = self.view.cells_of(init, "corresponding")
                for align, colour, when in (
                    ("none", colours[3], "pre"),
                    ("ot", colours[0], "post"),
                ):
                    series.append(
                        self._series(
                            cells,
                            f"{INIT_NAME[init]}, {when}-alignment",
                            colour,
                            init,
                            lambda c, a=align, s=split: self.view.cell_barrier(c, a, s),
                        )
                    )
            panels.append(Panel(f"{split} loss", f"LMC barrier ({split} loss)", tuple(series)))
        return self._trends(
            "barrier_vs_batch_size",
            panels,
            "LMC barrier between A and B against the batch size",
            "LMC barrier (the largest excess of the loss on the straight line from A to B over the "
            "linear interpolation of its ends) between parents trained with the same batch size, "
            "before (orange) and after (blue) OT alignment of A to B; solid circles: same "
            "initialisation, dashed squares: different initialisation; left train loss, right "
            f"test loss; {self.spread}.",
        )

    def _trends(
        self,
        stem: str,
        panels: list[Panel],
        title: str,
        caption: str,
        styles: dict[tuple[str, str], str] | None = None,
    ) -> Drawn | None:
        """Draw trend panels (when any holds a value) as `stem`, a row's panels on one y-scale.

        `styles` names the (marker, line style) pairs when the series' labels do not.

        Returns:
            The figure, or None when no panel holds a value.
        """
        if not any(np.isfinite(s.mean).any() for p in panels for s in p.series):
            return None
        plot_trends(
            panels,
            self.out_dir / stem,
            title,
            formats=self.formats,
            dpi=self.dpi,
            styles=styles,
            share_rows=True,
        )
        return Drawn(stem, caption)

    def sharpness(self) -> Drawn | None:
        """Top eigenvalue and trace against the batch size for the parents and the fused models.

        Returns:
            The figure, or None when no curvature is stored.
        """
        colours = palette()
        panels = []
        for metric, what in (("top_eig", "top Hessian eigenvalue"), ("trace", "Hessian trace")):
            for init in ("same", "diff"):
                cells = self.view.cells_of(init, "corresponding")
                if not cells:
                    continue
                series = tuple(
                    self._series(
                        cells,
                        label,
                        colours[i],
                        init,
                        lambda c, r=row, m=metric: self.view.cell_value(c, r(c), m),
                    )
                    for i, (row, label) in enumerate(_sharpness_rows(cells))
                )
                panels.append(Panel(f"{INIT_NAME[init]}: {what}", what, series))
        return self._trends(
            "sharpness_vs_batch_size",
            panels,
            "Sharpness of the training loss against the batch size",
            "Top Hessian eigenvalue (top row) and Hessian trace (bottom row) of the training "
            "loss for the parents, their vanilla average, the OT fusion (A aligned to B, averaged "
            "with B) and, where fine-tuned, the OT fusion fine-tuned at B's batch size; left "
            f"column same initialisation, right column different initialisation; {self.spread}.",
            {INIT_STYLE[k]: INIT_NAME[k] for k in INIT_STYLE},
        )

    # ---- interpolation curves --------------------------------------------------------------------
    def _by_batches(self) -> list[list[Cell]]:
        """The cells grouped by (A batch, B batch).

        Returns:
            The groups, equal batch sizes first.
        """
        groups: dict[tuple[int, int], list[Cell]] = {}
        for cell in self.view.cells_of():
            groups.setdefault((cell.bs_a, cell.bs_b), []).append(cell)
        return [groups[k] for k in sorted(groups, key=lambda k: (k[0] != k[1], k))]

    def interpolation(self, cells: list[Cell]) -> Drawn | None:
        """Loss and accuracy on the line from A to B for one (A batch, B batch).

        Same and different init are drawn side by side (seed study figures 1-2).

        Args:
            cells: The cells of one (A batch, B batch).

        Returns:
            The figure, or None when no interpolation curve is stored.
        """
        from matplotlib.figure import Figure

        from ..plots.figure import save_figure, style

        curves = {}
        for cell in cells:
            runs = {
                al: [
                    r[0]
                    for p in cell.pairs
                    if (r := self.view.arrays(f"/barriers/{p['a']}~{p['b']}/{al}")) is not None
                ]
                for al in ("none", "ot")
            }
            if any(runs.values()):
                curves[cell.init] = runs
        if not curves:
            return None
        a, b = cells[0].bs_a, cells[0].bs_b
        batches = f"batch {a}" if a == b else f"A batch {a}, B batch {b}"
        with style():
            fig = Figure(figsize=(4.3 * len(curves), 6.2), layout="constrained")
            axes = np.atleast_2d(fig.subplots(2, len(curves), squeeze=False))
            for j, (init, runs) in enumerate(
                sorted(curves.items(), key=lambda kv: kv[0] != "same")
            ):
                for i, what in enumerate(("loss", "acc")):
                    draw_interpolation(axes[i, j], runs, what)
                    axes[i, j].set_title(
                        f"{INIT_NAME[init]}: {'loss' if what == 'loss' else 'accuracy'}"
                    )
            legend_below(fig, axes[0, 0])
            fig.suptitle(f"Linear interpolation from A to B ({batches})")
            stem = f"interpolation_bs{a}" + ("" if a == b else f"-bs{b}")
            save_figure(fig, self.out_dir / stem, self.formats, self.dpi)
        bands = (
            f"bands: ± one standard deviation over {self.view.replicates} replicates"
            if self.view.replicates > 1
            else "one replicate"
        )
        return Drawn(
            stem,
            f"Loss (top) and accuracy (bottom) on the straight line from A (a = 0) to B (a = 1), "
            f"{batches}: before alignment (orange) and after OT alignment of A to B (blue; the two "
            "coincide where alignment leaves A as it is), train solid and test dashed; the stars "
            "mark the vanilla average (a = 0.5 before alignment) and the OT fusion (a = 0.5 after "
            f"alignment); {bands}.",
        )

    # ---- spectra and contours --------------------------------------------------------------------
    def spectra(self) -> list[Drawn]:
        """ESDs of the vanilla and OT fused models (replicate 0), equal and mixed batch sizes.

        Returns:
            The figures drawn (none without stored densities).
        """
        drawn = []
        for row, what, batches, stem in (
            ("vanilla", "vanilla average", "corresponding", "esd_vanilla"),
            ("ot", "OT fusion", "corresponding", "esd_ot"),
            ("ot", "OT fusion", "mixed", "esd_ot_mixed"),
        ):
            curves, styles = [], []
            for cell in sorted(
                self.view.cells_of(batches=batches), key=lambda c: (c.init != "same", c.bs_a)
            ):
                stored = self.view.arrays(f"/models/{cell.pairs[0]['name']}.{row}/esd")
                if stored:
                    curves.append((_label(cell), *stored))
                    styles.append(INIT_STYLE[cell.init][1])
            if not curves:
                continue
            plot_esd_overlay(
                curves,
                self.out_dir / stem,
                f"Hessian eigenvalue spectral density of the {what}",
                formats=self.formats,
                dpi=self.dpi,
                styles=styles,
            )
            drawn.append(
                Drawn(
                    stem,
                    f"Eigenvalue spectral density of the training-loss Hessian of the {what} "
                    f"({'mixed' if batches == 'mixed' else 'equal'} batch sizes), by stochastic "
                    "Lanczos quadrature, log density, one line per batch size and initialisation "
                    "(solid same, dashed different) on one axis; each smoothed by one Gaussian "
                    "kernel twice the median gap between the pooled Ritz values; replicate 0.",
                )
            )
        return drawn

    def contours(self) -> Drawn | None:
        """Train-loss contours around the fine-tuned OT fusions of different-init pairs (figure 6).

        Returns:
            The figure, or None when no surface is stored.
        """
        panels = []
        for cell in self.view.cells_of("diff", "corresponding"):
            for kind in ("plane", "2d"):
                stored = self.view.arrays(f"/surfaces/{cell.pairs[0]['name']}/{kind}")
                if stored:
                    panels.append((f"batch {cell.bs_a}", *stored))
        if not panels:
            return None
        kind = panels[0][2].get("kind", "plane")
        stem = "contours"
        plot_surface_grid(
            panels,
            self.out_dir / stem,
            "Training loss around the fine-tuned OT fusion (different initialisation)",
            formats=self.formats,
            dpi=self.dpi,
        )
        where = (
            "on the plane through A aligned to B, B and the fine-tuned OT fusion (axes in "
            "parameter-space distance; x and y are not to the same scale)"
            if kind == "plane"
            else "along two random filter-normalised directions around the fine-tuned OT fusion"
        )
        return Drawn(
            stem,
            f"Training loss {where}, one panel per batch size, on one logarithmic colour scale; "
            "white lines are iso-loss contours; replicate 0.",
        )


def _sharpness_rows(cells: list[Cell]) -> list[tuple[Callable[[Cell], str], str]]:
    """The models the sharpness figure draws; the fine-tuned OT fusion when every cell has one.

    Returns:
        (row key of a cell, label) per model.
    """
    rows = [
        (lambda c, k=key: k, label)
        for key, label in (
            ("a", "Model A"),
            ("b", "Model B"),
            ("vanilla", "Vanilla avg"),
            ("ot", "OTFusion"),
        )
    ]
    if all(("ot", c.bs_b) in c.finetunes for c in cells):
        rows.append((lambda c: StudyView.ft_row("ot", c.bs_b), "OTFusion FT"))
    return rows


def _label(cell: Cell) -> str:
    """A cell's legend label: its batch sizes and init.

    Returns:
        The label.
    """
    batch = (
        f"batch {cell.bs_a}"
        if cell.bs_a == cell.bs_b
        else f"A batch {cell.bs_a}, B batch {cell.bs_b}"
    )
    return f"{batch}, {INIT_NAME[cell.init]}"
