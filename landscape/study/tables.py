"""The report's tables as Markdown: the LMC barriers, the model tables and the settings.

The LMC barriers and the model tables of the seed study (mean ± standard deviation over replicates,
or the measurement's own standard error with one replicate), with the seed study's published values
beside ours when the study compares with it, and the settings the numbers came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .published import SeedTable
from .stats import MISSING, fmt
from .view import FT_LABELS, METRICS, ROWS, Cell, StudyView

INIT = {"same": "same", "diff": "different"}
DIGITS = {"test_acc": 2, "top_eig": 2, "trace": 2}
HEADS = {"test_acc": "Test acc., %", "top_eig": "Top λ", "trace": "Trace"}
BARRIER_DIGITS = 4
ERROR_DIGITS = 2  # error barriers in percentage points
ALIGNERS = {"ot": "optimal transport", "rebasin": "Git Re-Basin"}  # the study's [fusion] method
CURVATURE = ("top_eig", "trace")
# curvature measured far from a stationary point in some replicate (the count follows the ratio)
FAR_MARK = "†"


@dataclass(frozen=True)
class Table:
    """One table of the report: what it tabulates, its title and, when compared, the seed's table.

    Attributes:
        kind: "barrier" or "model".
        batches: "corresponding" or "mixed".
        init: "same" or "diff" for model tables; None for barrier tables.
        title: The table's title.
        seed: The seed study's table of the same numbers, when the study compares with it.

    Examples:
        >>> table = Table("model", "corresponding", "same", "Table 1. Same initialisation")
        >>> table.seed is None
        True
    """

    kind: str  # barrier | model
    batches: str  # corresponding | mixed
    init: str | None  # model tables: same | diff
    title: str
    seed: SeedTable | None = None


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table.

    Args:
        header: The column heads.
        rows: The rows' cells.

    Returns:
        The table's lines.

    Examples:
        >>> for line in markdown(["Batch", "Barrier"], [["32", "0.50"], ["128", "0.90"]]):
        ...     print(line)
        | Batch | Barrier |
        |---|---|
        | 32 | 0.50 |
        | 128 | 0.90 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _seed(value: str | None) -> str:
    """A seed study's printed value.

    Returns:
        The value, or the missing-cell mark.
    """
    return MISSING if value is None else value


def barrier_rows(view: StudyView, table: Table) -> tuple[list[str], list[list[str]]]:
    """LMC barriers per cell: train and test loss pre/post alignment, and the test error barrier.

    The seed study's train barriers stand beside ours when the table has a seed table; the error
    barrier is in percentage points.

    Args:
        view: The study.
        table: The barrier table.

    Returns:
        The header and the rows.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from landscape.io.store import open_store, write_results
        >>> pair = {"name": "bs32", "a": "A", "b": "B", "cell": "bs32", "init": "same",
        ...         "batches": "corresponding", "bs_a": 32, "bs_b": 32, "replicate": 0}
        >>> groups = {"study/config": ({}, {"config": "{}"}), "study/pairs/bs32": ({}, pair),
        ...           "barriers/A~B/none": ({}, {"barrier_train": 0.5}),
        ...           "barriers/A~B/ot": ({}, {"barrier_train": 0.1})}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "s.h5", groups)
        ...     with open_store(Path(tmp) / "s.h5") as store:
        ...         view = StudyView(store, Path(tmp) / "s.h5")
        ...         header, rows = barrier_rows(view, Table("barrier", "corresponding", None, "t"))
        >>> header[3:5], rows[0][:5]
        (['Pre, train', 'Post, train'], ['32', 'same', '1', '0.5000', '0.1000'])
    """
    mixed = table.batches == "mixed"
    header = (["A batch", "B batch"] if mixed else ["Batch"]) + ["Init", "n"]
    seed = table.seed
    for split in ("train", "test"):
        for align in ("pre", "post"):
            header.append(f"{align.capitalize()}, {split}")
            if seed is not None and split == "train":
                header.append("seed")
    header += ["Pre, test error %", "Post, test error %"]
    rows = []
    cells = sorted(
        view.cells_of(batches=table.batches), key=lambda c: (c.bs_a, c.bs_b, c.init != "same")
    )
    for cell in cells:
        row = ([str(cell.bs_a), str(cell.bs_b)] if mixed else [str(cell.bs_a)]) + [INIT[cell.init]]
        row.append(str(len(cell.pairs)))
        for split in ("train", "test"):
            for align, which in (("none", "pre"), ("ot", "post")):
                row.append(
                    fmt(view.cell_barrier(cell, align, split), BARRIER_DIGITS, view.replicates)
                )
                if seed is not None and split == "train":
                    row.append(_seed(seed.barrier(cell.bs_a, cell.bs_b, cell.init, which)))
        row += [
            fmt(view.cell_barrier(cell, align, "test", "error"), ERROR_DIGITS, view.replicates)
            for align in ("none", "ot")
        ]
        rows.append(row)
    return header, rows


def _rows_of(cell: Cell) -> list[tuple[str, str, str, int | None]]:
    """The rows of a cell, in the seed study's order.

    Returns:
        (label, row key, Batch column, fine-tuning batch) per row.
    """
    rows = [
        (label, key, str({"a": cell.bs_a, "b": cell.bs_b}.get(key, "")), None)
        for label, key in ROWS
    ]
    rows += [
        (FT_LABELS[source], StudyView.ft_row(source, bs), str(bs), bs)
        for source, bs in cell.finetunes
    ]
    return rows


def model_rows(view: StudyView, table: Table) -> tuple[list[str], list[list[str]]]:
    """Test accuracy, top eigenvalue and trace of every model of every cell of the table.

    Curvature measured far from a stationary point in some replicate is marked `FAR_MARK`; the last
    column is ||∇L|| / ||θ||. Models with none of the three numbers are left out.

    Args:
        view: The study.
        table: The model table.

    Returns:
        The header and the rows.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from landscape.io.store import open_store, write_results
        >>> pair = {"name": "bs32", "a": "A", "b": "B", "cell": "bs32", "init": "same",
        ...         "batches": "corresponding", "bs_a": 32, "bs_b": 32, "replicate": 0}
        >>> groups = {"study/config": ({}, {"config": "{}"}), "study/pairs/bs32": ({}, pair),
        ...           "models/A/metrics": ({}, {"test_acc": 0.5, "test_n": 100})}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "s.h5", groups)
        ...     with open_store(Path(tmp) / "s.h5") as store:
        ...         view = StudyView(store, Path(tmp) / "s.h5")
        ...         header, rows = model_rows(view, Table("model", "corresponding", "same", "t"))
        >>> header[3], [row[2:4] for row in rows]  # binomial s.e. of 50% on 100 examples
        ('Test acc., %', [['Model A', '50.00 ± 5.00']])
    """
    seed = table.seed
    header = ["A/B batch", "Batch", "Model"]
    for metric in METRICS:
        header += [HEADS[metric]] + (["seed"] if seed is not None else [])
    header.append("‖∇L‖/‖θ‖")
    rows = []
    for cell in view.cells_of(table.init, table.batches):
        first = True
        for label, key, batch, ft_batch in _rows_of(cell):
            values = [view.cell_value(cell, key, metric) for metric in METRICS]
            if all(v is None for v in values):
                continue
            gradient, far = view.cell_stationarity(cell, key)
            row = [f"{cell.bs_a}/{cell.bs_b}" if first else "", batch, label]
            for metric, value in zip(METRICS, values):
                mark = FAR_MARK if far and metric in CURVATURE and value is not None else ""
                row.append(fmt(value, DIGITS[metric], view.replicates) + mark)
                if seed is not None:
                    row.append(_seed(seed.model(cell.bs_a, cell.bs_b, label, metric, ft_batch)))
            row.append(
                fmt(gradient, 3, view.replicates)
                + (f" {FAR_MARK}{far}/{gradient.n}" if far else "")
            )
            rows.append(row)
            first = False
    return header, rows


def _kept(keep: str) -> str:
    """Which weights a training run kept, in words.

    Returns:
        The words for "last" or "best".
    """
    return "the last epoch's" if keep == "last" else "the best validation accuracy's"


def _kv(items: dict[str, Any]) -> str:
    """Settings as "key value" pairs, the unset ones left out.

    Returns:
        The pairs, separated by commas.
    """
    return ", ".join(f"{k} {v}" for k, v in items.items() if v not in (None, "", "None"))


def settings_rows(view: StudyView) -> list[list[str]]:
    """The study's settings as (setting, value) rows, read from the store.

    Args:
        view: The study.

    Returns:
        The rows: architecture, data, batch sizes, training, replicates, fusion, curvature,
        barriers and contours.

    Examples:
        >>> import json
        >>> cfg = {"arch": "mlp", "arch_kwargs": {"hidden": [16]}, "data": "digits",
        ...        "batch_sizes": [32, 128], "lrs": [0.05, 0.1], "train": {"epochs": 10},
        ...        "finetune": {}, "fusion": {"mode": "acts", "align_samples": 200,
        ...        "solver": "emd", "iterations": 1, "reset_bn_samples": 0},
        ...        "measure": {"samples": 1024, "batch_size": 256, "esd_steps": 80, "esd_runs": 2,
        ...        "eig_k": 1, "eig_tol": 1e-3, "trace_hvps": 120, "barrier_points": 21}}
        >>> import tempfile
        >>> from pathlib import Path
        >>> from landscape.io.store import open_store, write_results
        >>> pair = {"name": "bs32", "a": "A", "b": "B", "cell": "bs32", "init": "same",
        ...         "batches": "corresponding", "bs_a": 32, "bs_b": 32, "replicate": 0}
        >>> groups = {"study/config": ({}, {"config": json.dumps(cfg)}),
        ...           "study/pairs/bs32": ({}, pair)}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "s.h5", groups)
        ...     with open_store(Path(tmp) / "s.h5") as store:
        ...         view = StudyView(store, Path(tmp) / "s.h5")
        ...         rows = settings_rows(view)
        >>> rows[0]
        ['Architecture', '`mlp` hidden [16]']
        >>> rows[2]
        ['Batch sizes (learning rate)', '32 (lr 0.05), 128 (lr 0.1)']
    """
    cfg, sizes = view.config, view.sizes
    train, f, m = cfg["train"], cfg["fusion"], cfg["measure"]
    lrs = ", ".join(f"{b} (lr {lr:g})" for b, lr in zip(cfg["batch_sizes"], cfg["lrs"]))
    loop = _kv(
        {
            "epochs": train.get("epochs"),
            "schedule": train.get("schedule"),
            "momentum": train.get("momentum"),
            "weight decay": train.get("weight_decay"),
            "plateau factor": train.get("plateau_factor"),
            "plateau patience": train.get("plateau_patience"),
            "early-stopping patience": train.get("patience"),
            "min. epochs": train.get("min_epochs"),
            "monitor": train.get("monitor"),
        }
    )
    contour = (
        (
            f"{m['contour_kind']} contours, {m['contour_steps']} x {m['contour_steps']} points on "
            "the training loss (replicate 0, different-init pairs)"
        )
        if m.get("contours")
        else "no contours"
    )
    rows = [
        ["Architecture", f"`{cfg['arch']}` {_kv(cfg['arch_kwargs']) or '(defaults)'}"],
        [
            "Data",
            f"`{cfg['data']}`: {sizes.get('train', '?')} training, {sizes.get('val', '?')} "
            f"validation, {sizes.get('test', '?')} test examples",
        ],
        ["Batch sizes (learning rate)", lrs],
        [
            "Training (SGD)",
            f"{loop}; kept weights: {_kept(train.get('keep', 'last'))} (fine-tuning: "
            f"{_kept(cfg['finetune'].get('keep', train.get('keep', 'last')))})",
        ],
        [
            "Replicates",
            f"{view.replicates}: replicate r adds {view.seed_shift}·r to every seed (parents' init "
            "and data seeds, fusion, fine-tuning and measurement seeds)",
        ],
        [
            "Fusion",
            f"A aligned to B by {ALIGNERS.get(f.get('method', 'ot'))}; {f['mode']} alignment from "
            f"{f['align_samples']} training examples, "
            f"{f['solver']} solver, {f['iterations']} iteration(s), BatchNorm reset on "
            f"{f['reset_bn_samples']} examples",
        ],
        [
            "Curvature",
            f"training loss on {m['samples']} training examples (batches of {m['batch_size']}): "
            f"one block Lanczos run ({m['esd_steps'] * m['esd_runs']} HVPs at least) gives the "
            f"top-{m['eig_k']} eigenvalue (relative error bound {m['eig_tol']:g}), the ESD by "
            "block SLQ "
            "(fused models of replicate 0) and the trace (exact on its basis, Hutchinson on the "
            f"rest, at most {m['trace_hvps']} probes)",
        ],
        [
            "Barriers",
            f"{m['barrier_points']} evenly spaced points on [0, 1], train and test loss"
            + (f" on {m['barrier_samples']} examples each" if m.get("barrier_samples") else ""),
        ],
        ["Contours", contour],
    ]
    return rows


def pair_rows(view: StudyView) -> list[list[str]]:
    """The seeds of every cell's parents in replicate 0.

    Args:
        view: The study.

    Returns:
        Per cell: its name, its init, and A's and B's (batch size, init seed, data seed).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from landscape.io.store import open_store, write_results
        >>> pair = {"name": "bs32", "a": "A", "b": "B", "cell": "bs32", "init": "same",
        ...         "batches": "corresponding", "bs_a": 32, "bs_b": 32, "replicate": 0,
        ...         "seeds_a": [42, 42], "seeds_b": [42, 43]}
        >>> groups = {"study/config": ({}, {"config": "{}"}), "study/pairs/bs32": ({}, pair)}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "s.h5", groups)
        ...     with open_store(Path(tmp) / "s.h5") as store:
        ...         view = StudyView(store, Path(tmp) / "s.h5")
        ...         print(pair_rows(view))
        [['`bs32`', 'same', '(32, 42, 42)', '(32, 42, 43)']]
    """
    rows = []
    for cell in view.cells_of():
        p = cell.pairs[0]
        a, b = (
            f"({bs}, {s[0]}, {s[1]})"
            for bs, s in ((cell.bs_a, p["seeds_a"]), (cell.bs_b, p["seeds_b"]))
        )
        rows.append([f"`{cell.name}`", INIT[cell.init], a, b])
    return rows


def finetune_rows(view: StudyView) -> list[list[str]]:
    """Every fine-tuning run (the seed study's Table 6).

    Args:
        view: The study.

    Returns:
        Per run: the cell, the fused model, its batch size, learning rate, momentum, epochs and
        schedule.

    Examples:
        >>> import json
        >>> ft = {"source": "ot", "settings": {"batch_size": 32, "lr": 0.01, "momentum": 0.9,
        ...       "epochs": 5, "schedule": "cosine", "plateau_factor": 0.5, "patience": 0,
        ...       "min_epochs": 0}}
        >>> import tempfile
        >>> from pathlib import Path
        >>> from landscape.io.store import open_store, write_results
        >>> pair = {"name": "bs32", "a": "A", "b": "B", "cell": "bs32", "init": "same",
        ...         "batches": "corresponding", "bs_a": 32, "bs_b": 32, "replicate": 0,
        ...         "finetuned": json.dumps([ft])}
        >>> groups = {"study/config": ({}, {"config": "{}"}), "study/pairs/bs32": ({}, pair)}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "s.h5", groups)
        ...     with open_store(Path(tmp) / "s.h5") as store:
        ...         view = StudyView(store, Path(tmp) / "s.h5")
        ...         print(finetune_rows(view))
        [['`bs32`', 'OTFusion', '32', '0.01', '0.9', '5', 'cosine']]
    """
    rows = []
    for cell in view.cells_of():
        for ft in cell.pairs[0]["finetuned"]:
            s = ft["settings"]
            details = _kv(
                {
                    "factor": s["plateau_factor"] if s["schedule"] == "plateau" else None,
                    "early-stopping patience": s["patience"] or None,
                    "min. epochs": s["min_epochs"] or None,
                }
            )
            rows.append(
                [
                    f"`{cell.name}`",
                    FT_LABELS[ft["source"]].removesuffix(" FT"),
                    str(s["batch_size"]),
                    f"{s['lr']:g}",
                    f"{s['momentum']:g}",
                    str(s["epochs"]),
                    s["schedule"] + (f" ({details})" if details else ""),
                ]
            )
    return rows
