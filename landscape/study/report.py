"""The study report: the seed study's tables and figures, rebuilt from the HDF5 store alone."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..errors import LandscapeError
from ..io.atomic import atomic_path
from ..io.store import StoreReader, open_store
from ..plots.esd import plot_esd_grid
from ..plots.figure import save_figure
from ..plots.path import plot_interpolation
from ..plots.surface import plot_surface

ROWS = [("Model A", "a"), ("Model B", "b"), ("Vanilla avg", "vanilla"), ("A aligned to B", "aligned"),
        ("Pred. avg", "ensemble"), ("OTFusion", "ot"), ("Vanilla avg FT", "vanilla-ft"), ("OTFusion FT", "ot-ft")]

MISSING = "–"  # noqa: RUF001 -- an en dash marks a cell that was not measured, as in the seed study's tables


class StudyView:
    """The study in a result store: its config, its pairs, and the numbers of their models."""

    def __init__(self, store: StoreReader, path: Path):
        if not store.has("/study/pairs"):
            raise LandscapeError(f"{path}: holds no study (run `landscape study` first)")
        self.store = store
        self.config = json.loads(store.attrs("/study/config")["config"])
        self.pairs = {name: store.attrs(f"/study/pairs/{name}") for name in store.children("/study/pairs")}

    def attr(self, group: str, key: str) -> float | None:
        """A scalar attribute, or None where the group or attribute is missing."""
        if not self.store.has(group):
            return None
        value = self.store.attrs(group).get(key)
        return None if value is None else float(value)

    def arrays(self, group: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """All datasets and attributes of `group`, or None."""
        if not self.store.has(group):
            return None
        return self.store.arrays(group), self.store.attrs(group)

    def model_name(self, pair: dict, row: str) -> str:
        """The stored model name behind a table row of `pair`."""
        return {"a": pair["a"], "b": pair["b"]}.get(row, f"{pair['name']}.{row}")

    def cell(self, pair: dict, row: str) -> tuple[float | None, float | None, float | None]:
        """(test accuracy %, top eigenvalue, trace) of a row; None where not measured."""
        if row == "ensemble":
            acc = self.attr(f"/pairs/{pair['name']}/ensemble", "test_acc")
            return (None if acc is None else 100 * acc), None, None
        name = self.model_name(pair, row)
        acc = self.attr(f"/models/{name}/metrics", "test_acc")
        eig = self.arrays(f"/models/{name}/eigenvalues")
        top = float(np.max(eig[0]["eigenvalues"])) if eig and "eigenvalues" in eig[0] else None
        return (None if acc is None else 100 * acc), top, self.attr(f"/models/{name}/trace", "trace")

    def barrier(self, pair: dict, align: str) -> float | None:
        """Train-loss barrier of a pair, pre (`none`) or post (`ot`) alignment."""
        return self.attr(f"/barriers/{pair['a']}~{pair['b']}/{align}", "barrier_train")


def _fmt(v: float | None, digits: int = 2) -> str:
    return MISSING if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _pairs_of(view: StudyView, scenario: str) -> list[dict]:
    return sorted((p for p in view.pairs.values() if p["scenario"] == scenario), key=lambda p: (p["bs_a"], p["bs_b"]))


def _barrier_tables(view: StudyView) -> list[str]:
    out: list[str] = []
    same, diff = ({p["bs_a"]: p for p in _pairs_of(view, s)} for s in ("same", "diff"))
    sizes = sorted(set(same) | set(diff))
    if sizes:
        rows = [[str(bs)] + [_fmt(view.barrier(d[bs], al), 4) if bs in d else MISSING
                             for d in (same, diff) for al in ("none", "ot")] for bs in sizes]
        out += ["### Table 1. LMC barrier (train loss) pre / post OT alignment", ""]
        out += _table(["Batch size", "Same init pre", "Same init post", "Diff. init pre", "Diff. init post"], rows)
        out.append("")
    mixed = _pairs_of(view, "mixed")
    if mixed:
        rows = [[str(p["bs_a"]), str(p["bs_b"]), _fmt(view.barrier(p, "none"), 4), _fmt(view.barrier(p, "ot"), 4)]
                for p in mixed]
        out += ["### LMC barrier for mixed batch sizes (different init; seed study Table 7)", ""]
        out += [*_table(["A batch", "B batch", "pre", "post"], rows), ""]
    return out


def _model_tables(view: StudyView) -> list[str]:
    out: list[str] = []
    titles = {"same": "Same initialisation for A and B, trained with the same batch size (seed study Table 2)",
              "diff": "Different initialisation for A and B, trained with the same batch size (seed study Table 3)",
              "mixed": "Different initialisation, A and B trained with different batch sizes (seed study Table 4)"}
    for scenario, title in titles.items():
        pairs = _pairs_of(view, scenario)
        if not pairs:
            continue
        out += [f"### {title}. A is aligned to B.", ""]
        rows = []
        for p in pairs:
            for label, row in ROWS:
                acc, top, trace = view.cell(p, row)
                if acc is None and top is None:
                    continue
                batch = {"a": p["bs_a"], "b": p["bs_b"]}.get(row, "")
                rows.append([f"{p['bs_a']}/{p['bs_b']}" if label == "Model A" else "", str(batch), label,
                             _fmt(acc), _fmt(top), _fmt(trace)])
        out += [*_table(["Pair (A/B batch)", "Batch", "Model", "Test acc., %", "Top λ", "Trace"], rows), ""]
    return out


def _vs_batch_size(view: StudyView, out_dir: Path) -> list[str]:
    figs: list[str] = []
    same, diff = ({p["bs_a"]: p for p in _pairs_of(view, s)} for s in ("same", "diff"))
    if not (same or diff):
        return figs

    def barriers() -> Figure:
        fig = Figure(figsize=(5, 3.5))
        ax = fig.subplots()
        for label, pairs, style in (("same init", same, "-"), ("diff. init", diff, "--")):
            sizes = sorted(pairs)
            for align, color in (("none", "tab:red"), ("ot", "tab:blue")):
                ax.plot(sizes, [view.barrier(pairs[s], align) or np.nan for s in sizes], style, marker="o",
                        color=color, label=f"{label}, {'pre' if align == 'none' else 'post'}")
        ax.set(xscale="log", xlabel="batch size", ylabel="LMC barrier (train loss)", title="Barrier vs batch size")
        ax.set_xticks(sorted(set(same) | set(diff)), [str(s) for s in sorted(set(same) | set(diff))])
        ax.legend(fontsize=7)
        return fig

    def sharpness() -> Figure:
        fig = Figure(figsize=(9, 3.5))
        axes = fig.subplots(1, 2)
        pairs = diff or same
        sizes = sorted(pairs)
        for row, label in (("a", "Model A"), ("b", "Model B"), ("vanilla", "Vanilla avg"), ("ot", "OTFusion"),
                           ("ot-ft", "OTFusion FT")):
            cells = [view.cell(pairs[s], row) for s in sizes]
            for ax, i in zip(axes, (1, 2)):
                vals = [c[i] if c[i] is not None else np.nan for c in cells]
                if not np.all(np.isnan(vals)):
                    ax.plot(sizes, vals, marker="o", label=label)
        for ax, name in zip(axes, ("top Hessian eigenvalue", "Hessian trace")):
            ax.set(xscale="log", xlabel="batch size", ylabel=name, title=f"{name} vs batch size")
            ax.set_xticks(sizes, [str(s) for s in sizes])
            ax.legend(fontsize=7)
        return fig

    for name, draw in (("barrier_vs_batch_size.png", barriers), ("sharpness_vs_batch_size.png", sharpness)):
        save_figure(draw(), out_dir / name, dpi=110)
        figs.append(name)
    return figs


def write_report(store: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write `report.md` and its figures into `out_dir` from the study store; return the report's path."""
    with open_store(store) as reader:
        return _write(StudyView(reader, Path(store)), Path(out_dir))


def _write(view: StudyView, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = view.config
    lines = [f"# Study report: {cfg['name']}", "",
             (f"Architecture `{cfg['arch']}` {json.dumps(cfg['arch_kwargs'])}, data `{cfg['data']}`, batch sizes "
             f"{cfg['batch_sizes']} with learning rates {cfg['lrs']}; training {json.dumps(cfg['train'])}; fusion "
             f"{json.dumps(cfg['fusion'])}; fine-tuning {json.dumps(cfg['finetune'])}; measurements "
             f"{json.dumps(cfg['measure'])}."), "",
             ("Every number below is read from the HDF5 store; curvature is measured on the training loss of "
             f"{cfg['measure']['samples']} training examples, accuracy on the test split."), "",
             "## Linear mode connectivity", ""]
    lines += _barrier_tables(view)
    lines += ["## Accuracy and sharpness", "", *_model_tables(view)]
    figures = _vs_batch_size(view, out_dir) + _extra_figures(view, out_dir)
    if figures:
        lines += ["## Figures", ""] + [f"![{f[:-4]}]({f})" for f in figures] + [""]
    report = out_dir / "report.md"
    with atomic_path(report) as tmp:
        tmp.write_text("\n".join(lines))
    return report


def _extra_figures(view: StudyView, out_dir: Path) -> list[str]:
    """Interpolation curves (seed figures 1-2), ESDs of the fused models (figures 3-5) and plane contours
    (figure 6), drawn by the same functions as `landscape plot`."""
    figs: list[str] = []
    ordered = [p for s in ("same", "diff", "mixed") for p in _pairs_of(view, s)]
    for p in _pairs_of(view, "diff") or _pairs_of(view, "same"):
        stored = {al: view.arrays(f"/barriers/{p['a']}~{p['b']}/{al}") for al in ("none", "ot")}
        curves = {al: result[0] for al, result in stored.items() if result}
        if curves:
            name = f"interpolation_{p['name']}.png"
            plot_interpolation(curves, out_dir / name, f"{_label(p)}: A (a=0) to B (a=1), A aligned to B")
            figs.append(name)
    for row, what, scenarios in (("vanilla", "vanilla averaging", ("same", "diff")),
                                 ("ot", "OT fusion", ("same", "diff")), ("ot", "OT fusion", ("mixed",))):
        stored = [(_label(p), view.arrays(f"/models/{p['name']}.{row}/esd")) for p in ordered
                  if p["scenario"] in scenarios]
        panels = [(label, *result) for label, result in stored if result]
        if panels:
            name = f"esd_{row}{'_mixed' if scenarios == ('mixed',) else ''}.png"
            plot_esd_grid(panels, out_dir / name, f"Hessian ESD of the {what} model (log scale; own axis scales)")
            figs.append(name)
    for p in ordered:
        plane = view.arrays(f"/surfaces/{p['name']}/plane")
        if plane:
            name = f"contour_{p['name']}.png"
            plot_surface(*plane, out_dir / name, f"{_label(p)}: train loss on the plane")
            figs.append(name)
    return figs


def _label(pair: dict) -> str:
    init = {"same": "same init", "diff": "diff. init", "mixed": "diff. init"}[pair["scenario"]]
    batch = f"batch {pair['bs_a']}" if pair["bs_a"] == pair["bs_b"] else f"batch {pair['bs_a']}/{pair['bs_b']}"
    return f"{batch}, {init}"
