"""The report of an OT-fusion study, rebuilt from its store alone.

Settings, then one section per experiment with its tables (ours as mean ± sd over replicates, the
paper's values as printed beside them, their setting named) and figures (accuracy against w_B with
bands; accuracy against the fraction pruned; accuracy against the epochs trained).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...io.atomic import atomic_path
from ...io.store import open_store
from ...plots.bands import Band, BandPanel, plot_bands
from ...plots.figure import DPI
from ..tables import markdown
from .published import CITATION, published
from .view import OTView, stat, stats

MISSING = "-"
INIT_NAME = {"diff": "different init", "same": "same init"}


def write_ot_report(
    store: str | os.PathLike,
    out_dir: str | os.PathLike,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = DPI,
) -> Path:
    """Write `report.md` and its figures into `out_dir` from an OT-fusion study's store.

    Args:
        store: the study's `study.h5`.
        out_dir: the folder for the report (created).
        formats: figure formats (none: no figures).
        dpi: resolution of PNG figures.

    Returns:
        The report's path.

    Examples:
        >>> import tempfile
        >>> from landscape.io.store import write_result
        >>> config = {
        ...     "study": {"name": "demo", "data": "digits", "arch": "mlp", "arch_kwargs": {}},
        ...     "train": {"epochs": 2, "batch_size": 16, "lr": 0.05, "momentum": 0.5},
        ...     "ablation": {"epoch_samples": 50},
        ... }
        >>> config["study"]["replicates"] = 1
        >>> config["train"].update(weight_decay=0.0, schedule="none")
        >>> described = {
        ...     "config": json.dumps(config),
        ...     "experiments": '["ablation"]',
        ...     "replicates": 1,
        ...     "data_sizes": '{"train": 1294, "val": 144, "test": 359}',
        ... }
        >>> names = ("a_acc", "b_acc", "ensemble_acc", "vanilla_acc", "ot_acc")
        >>> epochs = {"epochs": [1, 2], **{name: [0.5, 0.9] for name in names}}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = Path(tmp) / "study.h5"
        ...     write_result(store, "/study/config", {}, described)
        ...     write_result(store, "/ablation/epochs-r0", epochs, {})
        ...     text = write_ot_report(store, Path(tmp) / "report", formats=()).read_text()
        >>> [line for line in text.splitlines() if line.startswith("| 2 |")]
        ['| 2 | 90.00 | 90.00 | 90.00 | 90.00 | 90.00 | - | - | - | - | - |']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open_store(store) as reader:
        view = OTView(reader, Path(store))
        report = _Report(view, out_dir, tuple(formats), dpi)
        text = report.text()
    path = out_dir / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


class _Report:
    """Build the report's sections and figures (numbered in order)."""

    def __init__(self, view: OTView, out_dir: Path, formats: tuple[str, ...], dpi: int):
        self.view, self.out_dir, self.formats, self.dpi = view, out_dir, formats, dpi
        self.figures = 0

    def text(self) -> str:
        v = self.view
        store = Path(os.path.relpath(v.path.resolve(), self.out_dir.resolve())).as_posix()
        n = v.replicates
        spread = (
            f"± is the standard deviation over the {n} replicates (replicate r shifts every seed "
            "by 1000·r)"
            if n > 1
            else "one replicate, so no ± (run more with `replicates`)"
        )
        lines = [
            f"# Study report: {v.config['study']['name']}",
            "",
            f"The experiments of {CITATION}, run by `landscape study`. Every number is read from "
            "the result "
            f"store [`{Path(store).name}`]({store}); test accuracy in % on the whole test split "
            f"({v.sizes['test']} examples); {spread}. The `paper` columns are the values printed "
            "in the "
            "paper for its own setting, named above each table: they show what the experiment "
            "found there, not what this study's data and model should give.",
            "",
            "## Settings",
            "",
            *markdown(["Setting", "Value"], self._settings()),
            "",
        ]
        sections = {
            "skill-transfer": self._skill,
            "widths": self._widths,
            "ensemble": self._ensemble,
            "ablation": self._ablation,
        }
        for kind in v.experiments:
            lines += sections[kind]()
        return "\n".join(lines)

    def _settings(self) -> list[list[str]]:
        study, train = self.view.config["study"], self.view.config["train"]
        rows = [
            [
                "data",
                f"`{study['data']}` (train {self.view.sizes['train']}, validation "
                f"{self.view.sizes['val']}, test {self.view.sizes['test']} examples)",
            ],
            ["model", f"`{study['arch']}` {json.dumps(study['arch_kwargs'])}"],
            [
                "training",
                ", ".join(
                    f"{k} {train[k]}"
                    for k in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule")
                ),
            ],
            ["replicates", str(study["replicates"])],
        ]
        for kind in self.view.experiments:
            s = self.view.settings(kind)
            rows.append(
                [
                    f"[{kind}]",
                    ", ".join(f"{k} {json.dumps(val)}" for k, val in s.items() if k != "compare"),
                ]
            )
        return rows

    def _figure(self, stem: str, panels: list[BandPanel], title: str, caption: str) -> list[str]:
        if not self.formats:
            return []
        plot_bands(panels, self.out_dir / stem, title, self.formats, self.dpi)
        self.figures += 1
        shown = "png" if "png" in self.formats else self.formats[0]
        others = ", ".join(f"[{f.upper()}]({stem}.{f})" for f in self.formats if f != shown)
        return [
            f"![Figure {self.figures}]({stem}.{shown})",
            "",
            f"*Figure {self.figures}.* {caption}" + (f" ({others})" if others else ""),
            "",
        ]

    def _paper(self, kind: str) -> tuple[dict | None, list[str]]:
        setting = self.view.settings(kind).get("compare")
        if not setting:
            return None, []
        table = published(kind, setting)
        return table, [f"Paper ({table['source']}): {table['setting']}.", ""]

    # ---- skill transfer --------------------------------------------------------------------------
    def _skill(self) -> list[str]:
        s = self.view.settings("skill-transfer")
        paper, intro = self._paper("skill-transfer")
        lines = [
            "## Skill transfer (Sec. 5.1)",
            "",
            f"Model A is trained on every example of label {s['special_label']} and "
            f"{100 * s['share']:g}% of "
            f"the other labels' examples, model B on the other {100 * (1 - s['share']):g}% without "
            "label "
            f"{s['special_label']}; A and B are fused with B's weight w_B by vanilla averaging, OT "
            "fusion "
            f"({s['mode']} alignment, {s['align_samples']} of A's own training examples) and the "
            "prediction "
            'ensemble, without retraining. "Special" is the accuracy on the test examples of label '
            f"{s['special_label']}. Source: `/skill-transfer/<init>-r<r>`.",
            "",
            *intro,
        ]
        panels = []
        for init in s["inits"]:
            runs = self.view.groups("skill-transfer", init)
            if not runs:
                continue
            w = [float(x) for x in runs[0][0]["proportions"]]
            curves = {
                k: stats([r[0][k] for r in runs])
                for k in ("vanilla_acc", "ot_acc", "ensemble_acc", "ot_special", "vanilla_special")
            }
            a, b = stat([r[1]["a_acc"] for r in runs]), stat([r[1]["b_acc"] for r in runs])
            a_sp, b_sp = (
                stat([r[1]["a_special"] for r in runs]),
                stat([r[1]["b_special"] for r in runs]),
            )
            best = int(np.argmax([c.mean for c in curves["ot_acc"]]))
            lines += [
                f"### {INIT_NAME[init].capitalize()} (n = {len(runs)})",
                "",
                f"Parents: A {a.pct()} (special {a_sp.pct()}), B {b.pct()} (special {b_sp.pct()}). "
                f"Best OT average: {curves['ot_acc'][best].pct()} at w_B = {w[best]:g}."
                + (
                    f" Paper (different init): A {paper['a_acc']}, B {paper['b_acc']}, best OT "
                    f"average {paper['ot_best']}."
                    if paper and init == "diff"
                    else ""
                ),
                "",
                *markdown(
                    ["w_B", "Vanilla", "OT", "Ensemble", "Vanilla special", "OT special"],
                    [
                        [
                            f"{x:g}",
                            curves["vanilla_acc"][i].pct(),
                            curves["ot_acc"][i].pct(),
                            curves["ensemble_acc"][i].pct(),
                            curves["vanilla_special"][i].pct(),
                            curves["ot_special"][i].pct(),
                        ]
                        for i, x in enumerate(w)
                    ],
                ),
                "",
            ]
            band = [
                Band(
                    label,
                    tuple(w),
                    tuple(100 * c.mean for c in curves[key]),
                    tuple(100 * (c.sd or np.nan) for c in curves[key]),
                )
                for label, key in (
                    ("OT average", "ot_acc"),
                    ("vanilla average", "vanilla_acc"),
                    ("prediction ensemble", "ensemble_acc"),
                )
            ]
            band += [
                Band("model A", (), (100 * a.mean,), (np.nan,), "--"),
                Band("model B", (), (100 * b.mean,), (np.nan,), ":"),
            ]
            panels.append(
                BandPanel(
                    INIT_NAME[init], "w_B (weight of model B)", "test accuracy (%)", tuple(band)
                )
            )
        if panels:
            lines += self._figure(
                "skill_transfer",
                panels,
                "One-shot skill transfer",
                "Test accuracy of the fusions of A and B against B's weight w_B "
                f"(the paper's Figure 2); bands: ± sd over {self.view.replicates} replicates; "
                "dashed and dotted lines: the parents.",
            )
        return lines

    # ---- widths ----------------------------------------------------------------------------------
    def _widths(self) -> list[str]:
        s = self.view.settings("widths")
        paper, intro = self._paper("widths")
        lines = [
            "## Different widths: structured pruning, then OT fusion (Sec. 5.2)",
            "",
            "One layer at a time loses the given fraction of its units (those of smallest L1 norm "
            "of their incoming weights); then the dense model is OT-fused into the pruned one "
            f"({s['mode']} alignment, pruned model's weight {s['weight']:g}), which keeps the "
            "pruned widths. "
            "Sparsity: the share of all parameters removed. Source: `/widths/<layer>-r<r>`.",
            "",
            *intro,
        ]
        if paper:
            lines += [
                *markdown(
                    [
                        "Paper: layer",
                        "Fraction",
                        "Sparsity",
                        "Dense",
                        "Pruned",
                        "Pruned + OT fusion",
                    ],
                    [
                        [
                            r["layer"],
                            f"{r['fraction']:g}",
                            r["sparsity"],
                            paper["dense_acc"],
                            r["pruned_acc"],
                            r["fused_acc"],
                        ]
                        for r in paper["rows"]
                    ],
                ),
                "",
            ]
        panels = []
        for layer in s["layers"]:
            runs = self.view.groups("widths", layer)
            if not runs:
                continue
            f = [float(x) for x in runs[0][0]["fractions"]]
            pruned, fused = (stats([r[0][k] for r in runs]) for k in ("pruned_acc", "fused_acc"))
            dense = stat([r[1]["dense_acc"] for r in runs])
            sparsity = [float(x) for x in runs[0][0]["sparsity"]]
            lines += [
                f"### Layer `{layer}` (dense model {dense.pct()}, n = {len(runs)})",
                "",
                *markdown(
                    ["Fraction pruned", "Sparsity", "Pruned", "Pruned + OT fusion", "Gain"],
                    [
                        [
                            f"{x:g}",
                            f"{100 * sparsity[i]:.1f}%",
                            pruned[i].pct(),
                            fused[i].pct(),
                            f"{100 * (fused[i].mean - pruned[i].mean):+.2f}",
                        ]
                        for i, x in enumerate(f)
                    ],
                ),
                "",
            ]
            panels.append(
                BandPanel(
                    f"layer {layer}",
                    "fraction of units pruned",
                    "test accuracy (%)",
                    (
                        Band(
                            "pruned",
                            tuple(f),
                            tuple(100 * c.mean for c in pruned),
                            tuple(100 * (c.sd or np.nan) for c in pruned),
                        ),
                        Band(
                            "pruned + OT fusion",
                            tuple(f),
                            tuple(100 * c.mean for c in fused),
                            tuple(100 * (c.sd or np.nan) for c in fused),
                        ),
                        Band("dense", (), (100 * dense.mean,), (np.nan,), "--"),
                    ),
                )
            )
        if panels:
            lines += self._figure(
                "widths",
                panels,
                "Structured pruning with and without OT fusion",
                "Test accuracy against the fraction of a layer's units pruned, before and after "
                "fusing the dense model into the pruned one (the paper's Figure 3); bands: ± sd.",
            )
        return lines

    # ---- ensemble --------------------------------------------------------------------------------
    def _ensemble(self) -> list[str]:
        s = self.view.settings("ensemble")
        ft = s["finetune_epochs"]
        lines = [
            "## Ensemble replacement with K models (Sec. 5.3)",
            "",
            "K models from different initialisations: each alone, their prediction ensemble (K "
            f"models kept), and one model from vanilla or OT averaging ({s['mode']} alignment, "
            f"{s['align_samples']} training examples)"
            + (f", each fine-tuned for {ft} epochs" if ft else "")
            + ". Efficiency: how "
            "many times fewer models are evaluated than the ensemble keeps. Source: "
            "`/ensemble/k<K>-r<r>`.",
            "",
        ]
        columns = [
            ("ensemble_acc", "Prediction ensemble", "ensemble"),
            ("vanilla_acc", "Vanilla", "vanilla"),
            ("ot_acc", "OT", "ot"),
        ]
        if ft:
            columns += [
                ("vanilla_ft_acc", "Vanilla FT", "vanilla_ft"),
                ("ot_ft_acc", "OT FT", "ot_ft"),
            ]
        header = ["", "Individual models", *(c[1] for c in columns)]
        for k in s["models"]:
            runs = self.view.groups("ensemble", f"k{k}")
            if not runs:
                continue
            individual = stats([r[0]["individual_acc"] for r in runs])
            rows = [
                [
                    "Accuracy",
                    "[" + ", ".join(c.pct() for c in individual) + "]",
                    *(stat([r[1][key] for r in runs]).pct() for key, _, _ in columns),
                ],
                ["Efficiency", "1x", "1x", *(f"{k}x" for _ in columns[1:])],
            ]
            for setting in s.get("compare", []):
                paper = next(
                    (r for r in published("ensemble", setting)["rows"] if r["k"] == k), None
                )
                if paper:
                    rows.append(
                        [
                            f"Paper ({setting})",
                            "[" + ", ".join(paper["individual"]) + "]",
                            *(paper.get(name, MISSING) for _, _, name in columns),
                        ]
                    )
            lines += [f"### K = {k} (n = {len(runs)})", "", *markdown(header, rows), ""]
        for setting in s.get("compare", []):
            table = published("ensemble", setting)
            lines += [f"Paper {setting} ({table['source']}): {table['setting']}.", ""]
        return lines

    # ---- ablation --------------------------------------------------------------------------------
    def _ablation(self) -> list[str]:
        paper, intro = self._paper("ablation")
        runs = self.view.groups("ablation", "")
        lines = [
            "## Ablations (App. S2): activation samples, exact vs Sinkhorn, acts vs wts, epochs, "
            "Git Re-Basin",
            "",
            "Two models from different initialisations fused by OT with every alignment mode, "
            "solver "
            '(Sinkhorn at each regularisation) and number m of activation samples; "A aligned" is '
            "model A "
            "after alignment to B, before averaging (an exact OT map is a permutation, so A "
            "aligned computes what A computes). Source: `/ablation/r<r>`.",
            "",
            *intro,
        ]
        if runs:
            lines += self._ablation_grid(runs, paper)
        return lines + self._epochs(paper) + self._methods()

    def _ablation_grid(self, runs: list[tuple[dict, dict]], paper: dict | None) -> list[str]:
        """Return Tables S2-S4: the baselines, then a row per mode, solver, reg and m."""
        lines = []
        base = {
            k: stat([r[1][k] for r in runs])
            for k in ("a_acc", "b_acc", "ensemble_acc", "vanilla_acc")
        }
        lines += [
            f"Baselines (n = {len(runs)}): A {base['a_acc'].pct()}, B {base['b_acc'].pct()}, "
            "prediction "
            f"ensemble {base['ensemble_acc'].pct()}, vanilla average {base['vanilla_acc'].pct()}."
            + (
                f" Paper: A {paper['a_acc']}, B {paper['b_acc']}, ensemble "
                f"{paper['ensemble_acc']}, vanilla {paper['vanilla_acc']}."
                if paper
                else ""
            ),
            "",
        ]
        rows_by_run = [json.loads(r[1]["rows"]) for r in runs]
        out = []
        for i, row in enumerate(rows_by_run[0]):
            ot = stat([rr[i]["ot_acc"] for rr in rows_by_run])
            aligned = stat([rr[i]["aligned_acc"] for rr in rows_by_run])
            match = next(
                (
                    p
                    for p in (paper or {}).get("rows", [])
                    if (p["mode"], p["solver"], p.get("reg"), p.get("samples"))
                    == (row["mode"], row["solver"], row["reg"], row["samples"])
                ),
                None,
            )
            out.append(
                [
                    row["mode"],
                    row["solver"],
                    MISSING if row["reg"] is None else f"{row['reg']:g}",
                    MISSING if row["samples"] is None else str(row["samples"]),
                    ot.pct(),
                    aligned.pct(),
                    match["ot_acc"] if match else MISSING,
                    match["aligned_acc"] if match else MISSING,
                ]
            )
        lines += [
            *markdown(
                [
                    "Mode",
                    "Solver",
                    "Reg",
                    "m",
                    "OT average",
                    "A aligned",
                    "Paper OT average",
                    "Paper A aligned",
                ],
                out,
            ),
            "",
        ]
        return lines

    def _epochs(self, paper: dict | None) -> list[str]:
        """Return Table S1's section: a row per epoch, ours beside the paper's."""
        runs = self.view.groups("ablation", "epochs")
        if not runs:
            return []
        s = self.view.settings("ablation")
        published_rows = {r["epoch"]: r for r in (paper or {}).get("epoch_rows", [])}
        names = ("a_acc", "b_acc", "ensemble_acc", "vanilla_acc", "ot_acc")
        ours = {k: stats([r[0][k] for r in runs]) for k in names}
        out = []
        for i, epoch in enumerate(int(e) for e in runs[0][0]["epochs"]):
            theirs = published_rows.get(epoch, {})
            out.append(
                [
                    str(epoch),
                    *(ours[k][i].pct() for k in names),
                    *(theirs.get(k, MISSING) for k in names),
                ]
            )
        columns = ["A", "B", "Prediction avg.", "Vanilla avg.", "OT avg."]
        epochs = tuple(float(e) for e in runs[0][0]["epochs"])
        bands = tuple(
            Band(
                label,
                epochs,
                tuple(100 * c.mean for c in ours[k]),
                tuple(100 * (c.sd or np.nan) for c in ours[k]),
                style,
            )
            for label, k, style in (
                ("OT average", "ot_acc", "-"),
                ("vanilla average", "vanilla_acc", "-"),
                ("prediction ensemble", "ensemble_acc", "-"),
                ("model A", "a_acc", "--"),
                ("model B", "b_acc", ":"),
            )
        )
        return [
            f"### Fusion after different training epochs (Table S1, n = {len(runs)})",
            "",
            "Models A and B saved after each epoch of one training run and fused there: "
            f"activation alignment on m = {s['epoch_samples']} training examples, exact OT. "
            "Source: `/ablation/epochs-r<r>`."
            + (f" Paper: {paper['epochs_source']}." if paper else ""),
            "",
            *markdown(["Epoch", *columns, *(f"Paper {c}" for c in columns)], out),
            "",
            *self._figure(
                "epochs",
                [BandPanel("", "epochs trained", "test accuracy (%)", bands)],
                "Fusion after different training epochs",
                "Test accuracy of A, B and their fusions against the epochs the two models were "
                f"trained (the paper's Figure S2); bands: ± sd over {self.view.replicates} "
                "replicates.",
            ),
        ]

    def _methods(self) -> list[str]:
        """Return the section of OT against Git Re-Basin, vanilla averaging as the baseline."""
        runs = self.view.groups("ablation", "methods")
        if not runs:
            return []
        rows_by_run = [json.loads(r[1]["rows"]) for r in runs]
        samples = runs[0][1].get("samples")
        method_name = {"vanilla": "vanilla averaging", "ot": "OT", "rebasin": "Git Re-Basin"}
        out = []
        for i, row in enumerate(rows_by_run[0]):
            values = {
                k: stat([rr[i][k] for rr in rows_by_run])
                for k in ("fused_acc", "aligned_acc", "loss_barrier", "error_barrier")
            }
            out.append(
                [
                    method_name[row["method"]],
                    row["mode"] or MISSING,
                    values["fused_acc"].pct(),
                    values["aligned_acc"].pct() if row["mode"] else MISSING,
                    values["loss_barrier"].text(1, 4),
                    values["error_barrier"].pct(),
                ]
            )
        return [
            f"### OT fusion against Git Re-Basin (n = {len(runs)})",
            "",
            "The same two models aligned to B by OT (exact; Singh & Jaggi) or by Git Re-Basin "
            '(Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation '
            'Symmetries", ICLR 2023: weight matching, or activation matching by correlation), '
            + (f"activations on m = {samples} training examples, " if samples else "")
            + "then averaged with B; vanilla "
            "averaging aligns nothing. Barriers: test loss and error (percentage points) of the "
            "midpoint of the line from A aligned to B above the mean of its ends, signed "
            "(negative: below). Source: `/ablation/methods-r<r>`.",
            "",
            *markdown(
                ["Method", "Mode", "Fused", "A aligned", "Loss barrier", "Error barrier"], out
            ),
            "",
        ]
