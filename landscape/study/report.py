"""The study report, rebuilt from the HDF5 store alone.

Settings, "what the numbers say", the seed study's tables (numbered and captioned as in the paper
when the study compares with it, with its published values beside ours) and captioned figures in
PNG and PDF.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..curvature.stationarity import FAR_FROM_STATIONARY
from ..io.atomic import atomic_path
from ..io.store import open_store
from ..plots.figure import DPI
from .figures import Drawn, Figures
from .findings import family_size, findings
from .published import CITATION, find, seed_tables
from .stats import ALPHA, LEVEL, MIN_N
from .tables import (
    FAR_MARK,
    Table,
    barrier_rows,
    finetune_rows,
    markdown,
    model_rows,
    pair_rows,
    settings_rows,
)
from .view import StudyView

OWN_TITLES = {
    (
        "barrier",
        "corresponding",
        None,
    ): "LMC barrier pre / post OT alignment, A and B trained with the same batch size",
    ("barrier", "mixed", None): "LMC barrier pre / post OT alignment for mixed batch sizes",
    (
        "model",
        "corresponding",
        "same",
    ): "Same initialisation for A and B, trained with the same batch size. A is aligned to B.",
    (
        "model",
        "corresponding",
        "diff",
    ): "Different initialisation for A and B, trained with the same batch size. A is aligned to B.",
    (
        "model",
        "mixed",
        "diff",
    ): "Different initialisation for A and B, trained with different batch sizes. A is "
    "aligned to B.",
    (
        "model",
        "mixed",
        "same",
    ): "Same initialisation for A and B, trained with different batch sizes. A is aligned to B.",
}
STATIONARITY = (
    f"‖∇L‖/‖θ‖: the norm of the training loss's gradient on the curvature's examples over that of "
    "the "
    "weights, where the curvature was measured (at a minimum of the loss with weight decay λ it "
    "is λ); "
    f"{FAR_MARK}k/n: above {FAR_FROM_STATIONARY:g} in k of n replicates, far from a stationary "
    f"point, and their curvature ({FAR_MARK}) does not describe a minimum."
)
SOURCES = {
    "barrier": "`/barriers/<A>~<B>/none` and `/ot`, attributes `barrier_train` and `barrier_test`",
    "model": "`/models/<model>/metrics` (`test_acc`, `test_n`), `/eigenvalues` (`eigenvalues`), "
    "`/trace` (`trace`, `stderr`) and `/pairs/<pair>/ensemble` (`test_acc`)",
}


def write_report(
    store: str | os.PathLike,
    out_dir: str | os.PathLike,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = DPI,
) -> Path:
    """Write `report.md` and its figures into `out_dir` from the study store.

    Args:
        store: The study's result store.
        out_dir: The report's folder (created when missing).
        formats: The figure formats, each figure in every one; none for no figures.
        dpi: The resolution of raster formats.

    Returns:
        The report's path.

    Examples:
        >>> import json, tempfile
        >>> from landscape.io.store import write_results
        >>> cfg = {"name": "tiny", "arch": "mlp", "arch_kwargs": {}, "data": "digits",
        ...        "batch_sizes": [32], "lrs": [0.05], "train": {"epochs": 10}, "finetune": {},
        ...        "fusion": {"mode": "acts", "align_samples": 200, "solver": "emd",
        ...        "iterations": 1, "reset_bn_samples": 0},
        ...        "measure": {"samples": 1024, "batch_size": 256, "esd_steps": 80, "esd_runs": 2,
        ...        "eig_k": 1, "eig_tol": 1e-3, "trace_hvps": 120, "barrier_points": 21}}
        >>> pair = {"name": "bs32", "a": "A", "b": "B", "cell": "bs32", "init": "same",
        ...         "batches": "corresponding", "bs_a": 32, "bs_b": 32, "replicate": 0,
        ...         "seeds_a": [42, 42], "seeds_b": [42, 43]}
        >>> groups = {"study/config": ({}, {"config": json.dumps(cfg)}),
        ...           "study/pairs/bs32": ({}, pair),
        ...           "barriers/A~B/none": ({}, {"barrier_train": 0.5}),
        ...           "barriers/A~B/ot": ({}, {"barrier_train": 0.1})}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "study.h5", groups)
        ...     report = write_report(Path(tmp) / "study.h5", Path(tmp) / "report", formats=())
        ...     lines = report.read_text().splitlines()
        >>> lines[0], [line[:35] for line in lines if line.startswith("| 32 |")]
        ('# Study report: tiny', ['| 32 | same | 1 | 0.5000 | 0.1000 |'])
    """
    with open_store(store) as reader:
        view = StudyView(reader, Path(store))
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        drawn = Figures(view, out_dir, formats, dpi).all() if formats else []
        text = _text(view, out_dir, drawn, tuple(formats))
    report = out_dir / "report.md"
    with atomic_path(report) as tmp:
        tmp.write_text(text)
    return report


def _tables(view: StudyView) -> list[Table]:
    """The tables the store has cells for, numbered.

    Numbered as in the seed study when the study compares with it (tables without a counterpart
    there follow as A1, A2, ...), else 1, 2, ... in the seed study's order.

    Returns:
        The tables, barrier tables first.
    """
    seeds = seed_tables(view.compare) if view.compare else []
    out, extra = [], 0
    for kind, batches, init in OWN_TITLES:
        if not view.cells_of(init, batches):
            continue
        seed = find(seeds, kind, batches, init) if seeds else None
        if seed is not None:
            title = f"Table {seed.number}. {seed.caption}"
        else:
            extra += 1
            title = f"Table {'A' if seeds else ''}{extra}. {OWN_TITLES[kind, batches, init]}"
        out.append(Table(kind, batches, init, title, seed))
    return sorted(out, key=lambda t: (t.kind != "barrier", t.seed.number if t.seed else 99))


def _uncertainty(view: StudyView) -> str:
    """What ± means throughout the report, said in its introduction.

    Returns:
        The sentence.
    """
    if view.replicates > 1:
        return (
            f"± is the standard deviation over the {view.replicates} replicates of a cell (n: how "
            "many finished; a cell with fewer shows (n=k))."
        )
    test = view.sizes.get("test")
    return (
        "One replicate: ± is the measurement's own standard error, binomial over the "
        f"{test or 'test'} test examples for accuracies and over the Hutch++ probes for traces; "
        "barriers and top eigenvalues carry none."
    )


def _pm(view: StudyView) -> str:
    """What ± means in a table, said under each table.

    Returns:
        The sentence.
    """
    if view.replicates > 1:
        return f"±: standard deviation over the {view.replicates} replicates of a cell."
    return (
        "±: the measurement's own standard error (one replicate); none where there is no such "
        "error."
    )


def _aligned_note(view: StudyView) -> str:
    """Rows equal by construction: with exact EMD matchings, "A aligned to B" is A permuted.

    Returns:
        The note (with a leading space), or "" for other solvers.
    """
    if view.config["fusion"]["solver"] != "emd":
        return ""
    return (
        ' "A aligned to B" is A with its units permuted (exact EMD matching): its accuracy, top '
        "eigenvalue "
        "and trace equal A's by construction, up to the trace estimator's noise; the row checks "
        "the alignment."
    )


def _text(view: StudyView, out_dir: Path, drawn: list[Drawn], formats: tuple[str, ...]) -> str:
    """The report's Markdown.

    Returns:
        The report's text.
    """
    cfg = view.config
    store = Path(os.path.relpath(view.path.resolve(), out_dir.resolve())).as_posix()
    intro = (
        f"The batch-size study `{cfg['name']}` of `landscape study`: parents A and B trained with "
        "the batch "
        "sizes below, fused by vanilla averaging and by OT fusion (A aligned to B), fine-tuned, "
        "and measured. "
        f"Every number is read from the result store [`{Path(store).name}`]({store}); each table "
        f"names the groups it came from. {_uncertainty(view)}"
    )
    lines = [f"# Study report: {cfg['name']}", "", intro, ""]
    if view.compare:
        lines += [
            f"The `seed` columns are the values printed in the seed study ({CITATION}), tables "
            "numbered as "
            "there; it measured one seed pair per cell. Figures cited from it carry its numbers.",
            "",
        ]
    lines += [
        "## Settings",
        "",
        *markdown(["Setting", "Value"], settings_rows(view)),
        "",
        "Pairs (seeds of replicate 0; later replicates shift them):",
        "",
        *markdown(
            ["Pair", "Init", "A (batch, init seed, data seed)", "B (batch, init seed, data seed)"],
            pair_rows(view),
        ),
        "",
    ]
    ft = finetune_rows(view)
    if ft:
        lines += [
            "Fine-tuning runs (each its own model and table row, Batch = fine-tuning batch size):",
            "",
            *markdown(["Pair", "Fused model", "Batch", "lr", "Momentum", "Epochs", "Schedule"], ft),
            "",
        ]
    lines += [
        "## What the numbers say",
        "",
        "Each claim of the seed study, tested on this study's numbers: the effect, its "
        f"{LEVEL:.0%} confidence interval (not ±: Student's t on the test's degrees of freedom), "
        "the two-sided p of no effect (least squares against log2 of the batch size for trends, "
        "paired t-test "
        "for two numbers of the same pairs, Welch's t-test otherwise) and that p adjusted by "
        "Holm's method "
        f'over all {family_size(view)} tests of this report. An effect "exceeds its uncertainty" '
        "when the "
        f"adjusted p is below {ALPHA:g} and at least {MIN_N} values stand behind it (fewer leave "
        "a t-test "
        "under 4 degrees of freedom, resting on a normality that so few values cannot show).",
        "",
    ]
    lines += [f"- {sentence}" for sentence in findings(view)] + [""]
    sections = {"barrier": "## Linear mode connectivity", "model": "## Accuracy and sharpness"}
    for table in _tables(view):
        if table.kind in sections:
            lines += [sections.pop(table.kind), ""]
        header, rows = (barrier_rows if table.kind == "barrier" else model_rows)(view, table)
        lines += [
            f"### {table.title}",
            "",
            *markdown(header, rows),
            "",
            f"Source: {SOURCES[table.kind]}. "
            + (
                "Barriers: train and test cross-entropy, one value per pair."
                if table.kind == "barrier"
                else "Test accuracy in %, top Hessian eigenvalue and trace of "
                "the training loss; Batch of an FT row is its fine-tuning "
                "batch size. " + STATIONARITY + _aligned_note(view)
            )
            + " "
            + _pm(view),
            "",
        ]
    if drawn:
        lines += ["## Figures", ""]
        for i, figure in enumerate(drawn, start=1):
            shown = "png" if "png" in formats else formats[0]
            others = ", ".join(
                f"[{fmt.upper()}]({figure.stem}.{fmt})" for fmt in formats if fmt != shown
            )
            lines += [
                f"![Figure {i}]({figure.stem}.{shown})",
                "",
                f"*Figure {i}.* {figure.caption}" + (f" ({others})" if others else ""),
                "",
            ]
    return "\n".join(lines)
