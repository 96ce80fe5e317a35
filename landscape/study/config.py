"""A batch-size study's settings, read from a TOML file (or a bundled preset) and checked.

Sections (`sections.py`): `[study]` (architecture, data, replicates, the seed-study tables to
compare with), `[train]` (batch sizes, their learning rates, any training setting), `[pairs]` (seeds
of A and B: same-init and different-init pairs for every batch size, and mixed batch-size pairs,
`pairs.py`), `[fusion]`, `[finetune]` (defaults and per-pair runs, as the seed study's Table 6),
`[measure]`. `load_config` turns them into one frozen `StudyConfig`.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..choices import CURVATURES, SHARPNESS_KINDS, SHARPNESS_NORMS
from ..errors import LandscapeError
from ..training.loop import TrainConfig
from .pairs import PairSpec, read_pairs
from .sections import (
    CONTOUR_KINDS,
    FUSED,
    LOOP_FIELDS,
    FinetuneSection,
    FusionSection,
    MeasureSection,
    PairsSection,
    RunSection,
    StudySection,
    TrainSection,
    given,
)
from .settings import from_table, shifted

SECTIONS = ("study", "train", "pairs", "fusion", "finetune", "measure")


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning of fused `models` of the pairs trained with `batches` (None: every pair).

    `settings` is the run's `[[finetune.runs]]` entry: its batch size (None: B's), learning rate or
    factor of B's, and training settings (None: not set).

    Examples:
        >>> from landscape.study.pairs import Parent
        >>> run = FinetuneRun(("ot",), (32, 512), RunSection(batch_size=256))
        >>> run.matches(PairSpec(Parent(32, 42, 42), Parent(512, 42, 42)), "ot")
        True
    """

    models: tuple[str, ...]
    batches: tuple[int, int] | None
    settings: RunSection

    def matches(self, pair: PairSpec, model: str) -> bool:
        """Whether this run fine-tunes fused `model` of `pair`.

        Args:
            pair: the pair.
            model: `vanilla` or `ot`.

        Returns:
            True when the run lists the model and the pair's batch sizes (or every pair's).
        """
        return model in self.models and self.batches in (
            None,
            (pair.a.batch_size, pair.b.batch_size),
        )


@dataclass(frozen=True)
class StudyConfig:
    """Every setting of a batch-size study, one typed section per table of its TOML file.

    Examples:
        >>> cfg = StudyConfig(
        ...     name="tiny",
        ...     arch="mlp",
        ...     arch_kwargs={},
        ...     data="digits",
        ...     train=TrainSection(batch_sizes=(32, 128), lrs=(0.05, 0.1), epochs=3),
        ... )
        >>> cfg.lr_for(128), cfg.train_config(32, data_seed=7).epochs
        (0.1, 3)
    """

    name: str
    arch: str
    arch_kwargs: dict
    data: str
    train: TrainSection
    pairs: tuple[PairSpec, ...] = ()
    fusion: FusionSection = field(default_factory=FusionSection)
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    finetune_runs: tuple[FinetuneRun, ...] = ()
    measure: MeasureSection = field(default_factory=MeasureSection)
    replicates: int = 1
    compare: str | None = None  # "resnet18/cifar10": show the seed study's values beside ours

    def lr_for(self, batch_size: int) -> float:
        """The training learning rate paired with `batch_size` in `[train]`.

        Args:
            batch_size: one of `[train] batch_sizes`.

        Returns:
            Its learning rate.
        """
        return self.train.lrs[self.train.batch_sizes.index(batch_size)]

    def train_config(self, batch_size: int, data_seed: int) -> TrainConfig:
        """The training settings of a parent trained with `batch_size` and `data_seed`.

        Args:
            batch_size: one of `[train] batch_sizes`.
            data_seed: the seed of its data order (already shifted for the replicate).

        Returns:
            The `[train]` settings with this batch size, its learning rate and the data seed.
        """
        return TrainConfig(
            batch_size=batch_size,
            lr=self.lr_for(batch_size),
            data_seed=data_seed,
            **given(self.train, LOOP_FIELDS),
        )

    def finetunes(self, pair: PairSpec, model: str, replicate: int = 0) -> list[TrainConfig]:
        """The fine-tuning runs of fused `model` of `pair`, each as its training settings.

        The runs are the matching `[[finetune.runs]]`, or one run with the `[finetune]` defaults
        when no runs are listed; each takes the `[train]` settings, then `[finetune]`'s, then its
        own, at its batch size (default B's) and learning rate (default `lr_factor` times B's).

        Args:
            pair: the pair.
            model: `vanilla` or `ot`.
            replicate: the replicate, whose shift the data seed takes.

        Returns:
            One `TrainConfig` per run; none when the pair's initialisation is not fine-tuned.
        """
        ft = self.finetune
        if pair.init not in ft.init:
            return []
        if self.finetune_runs:
            runs = [r.settings for r in self.finetune_runs if r.matches(pair, model)]
        else:
            runs = [RunSection()] if model in ft.models else []
        out = []
        for run in runs:
            settings = {
                **given(self.train, LOOP_FIELDS),
                **given(ft, LOOP_FIELDS),
                **given(run, LOOP_FIELDS),
            }
            factor = ft.lr_factor if run.lr_factor is None else run.lr_factor
            lr = factor * self.lr_for(pair.b.batch_size) if run.lr is None else run.lr
            batch_size = pair.b.batch_size if run.batch_size is None else run.batch_size
            out.append(
                TrainConfig(
                    **settings,
                    batch_size=int(batch_size),
                    lr=float(lr),
                    data_seed=shifted(ft.data_seed, replicate),
                )
            )
        return out

    def record(self) -> dict[str, Any]:
        """The settings as the store's `/study/config` records them (plain JSON values).

        Returns:
            The study's fields, with `[train]`'s batch sizes, learning rates and other settings,
            `[finetune]`'s defaults and runs as the settings each gives.
        """
        return {
            "name": self.name,
            "arch": self.arch,
            "arch_kwargs": self.arch_kwargs,
            "data": self.data,
            "batch_sizes": list(self.train.batch_sizes),
            "lrs": list(self.train.lrs),
            "train": given(self.train, LOOP_FIELDS),
            "pairs": [asdict(p) for p in self.pairs],
            "fusion": asdict(self.fusion),
            "finetune": {k: v for k, v in given(self.finetune).items() if k != "runs"},
            "finetune_runs": [
                {
                    "models": r.models,
                    "batches": r.batches,
                    "settings": {k: v for k, v in given(r.settings).items() if k not in _RUN_SCOPE},
                }
                for r in self.finetune_runs
            ],
            "measure": asdict(self.measure),
            "replicates": self.replicates,
            "compare": self.compare,
        }


_RUN_SCOPE = frozenset({"batches", "models"})  # which pairs and models a run fine-tunes


def _runs(section: FinetuneSection, where: str) -> tuple[FinetuneRun, ...]:
    """The `[[finetune.runs]]` of `[finetune]`, checked.

    Returns:
        The runs, each with the fused models it fine-tunes (default `[finetune] models`).

    Raises:
        LandscapeError: for an unknown init or model, a run's setting of the wrong type, both lr
            and lr_factor, or batches that are not [A batch, B batch].
    """
    if set(section.init) - {"same", "diff"} or set(section.models) - set(FUSED):
        raise LandscapeError(
            f"{where}: [finetune] init is a list of same/diff, models a list of vanilla/ot"
        )
    runs = []
    for i, raw in enumerate(section.runs):
        run = from_table(RunSection, raw, where, f"finetune.runs {i + 1}")
        if run.lr is not None and run.lr_factor is not None:
            raise LandscapeError(f"{where}: [finetune] run {i + 1} gives both lr and lr_factor")
        if run.batches is not None and len(run.batches) != 2:
            raise LandscapeError(f"{where}: [finetune] run {i + 1}: batches is [A batch, B batch]")
        models = section.models if run.models is None else run.models
        if set(models) - set(FUSED):
            raise LandscapeError(f"{where}: [finetune] run {i + 1}: models are vanilla and/or ot")
        runs.append(FinetuneRun(models, run.batches or None, run))
    return tuple(runs)


def load_config(path: str | Path, data: str | None = None) -> StudyConfig:
    """Read and validate a batch-size study's TOML file; `data` overrides its dataset.

    Args:
        path: the TOML file.
        data: a dataset to use instead of the config's.

    Returns:
        The study's settings.

    Raises:
        LandscapeError: for a missing or invalid file, an unknown section or setting, a value of the
            wrong type (one line naming the setting), or settings that contradict each other.

    Examples:
        >>> from landscape.study import presets
        >>> cfg = load_config(presets.path("quick"))
        >>> cfg.train.batch_sizes, cfg.fusion.mode, len(cfg.pairs)
        ((32, 128, 512), 'acts', 10)
    """
    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise LandscapeError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise LandscapeError(f"{path}: unknown section [{unknown[0]}]")
    where = str(path)
    study = from_table(StudySection, raw.get("study", {}), where, "study")
    if study.experiments != ("batch-size",):
        raise LandscapeError(f"{path}: [study] experiments: this is a batch-size study config")
    train = from_table(TrainSection, raw.get("train", {}), where, "train")
    fusion = from_table(FusionSection, raw.get("fusion", {}), where, "fusion")
    finetune = from_table(FinetuneSection, raw.get("finetune", {}), where, "finetune")
    measure = from_table(MeasureSection, raw.get("measure", {}), where, "measure")
    pairs = from_table(PairsSection, raw.get("pairs", {}), where, "pairs")
    if len(train.lrs) != len(train.batch_sizes) or not train.batch_sizes:
        raise LandscapeError(f"{path}: [train] needs one learning rate per batch size")
    runs = _runs(finetune, where)
    cfg = StudyConfig(
        name=study.name or path.stem,
        arch=study.arch,
        arch_kwargs=dict(study.arch_kwargs),
        data=data or study.data,
        train=train,
        pairs=read_pairs(pairs, train.batch_sizes, where),
        fusion=fusion,
        finetune=finetune,
        finetune_runs=runs,
        measure=measure,
        replicates=study.replicates,
        compare=study.compare,
    )
    _check(cfg, where)
    return cfg


def _check(cfg: StudyConfig, where: str) -> None:
    """Check the settings that no single field's type can.

    Raises:
        LandscapeError: for replicates below 1, an unknown comparison, curvature or sharpness
            choice or contour kind, plane contours without a fine-tuned OT fusion to draw them
            around, or two fine-tuning runs of one model at the same batch size.
    """
    from .published import COMPARABLE

    m = cfg.measure
    if cfg.replicates < 1:
        raise LandscapeError(f"{where}: [study] replicates must be at least 1")
    if cfg.compare is not None and cfg.compare not in COMPARABLE:
        raise LandscapeError(f"{where}: [study] compare must be one of {', '.join(COMPARABLE)}")
    extra = [c for c in m.curvatures if c not in CURVATURES[1:]]
    if extra:
        raise LandscapeError(
            f"{where}: [measure] curvatures are among {', '.join(CURVATURES[1:])}, got {extra[0]!r}"
        )
    for setting, value, allowed in (
        ("sharpness_kind", m.sharpness_kind, SHARPNESS_KINDS),
        ("sharpness_norm", m.sharpness_norm, SHARPNESS_NORMS),
    ):
        if value not in allowed:
            raise LandscapeError(f"{where}: [measure] {setting} is one of {', '.join(allowed)}")
    if m.contour_kind not in CONTOUR_KINDS:
        raise LandscapeError(
            f"{where}: [measure] contour_kind is one of {', '.join(CONTOUR_KINDS)}"
        )
    if (
        m.contours
        and m.contour_kind == "plane"
        and not any(
            cfg.finetunes(p, "ot")
            for p in cfg.pairs
            if p.init == "diff" and p.batches == "corresponding"
        )
    ):
        raise LandscapeError(
            f"{where}: [measure] contour_kind = plane needs a fine-tuned OT fusion of a "
            "different-init pair (an OT fusion of two models is the midpoint of A aligned and B, "
            'so the three lie on one line): fine-tune one, or use contour_kind = "2d"'
        )
    for pair in cfg.pairs:
        variants = [(f, s.batch_size) for f in FUSED for s in cfg.finetunes(pair, f)]
        if len(set(variants)) != len(variants):
            raise LandscapeError(
                f"{where}: [finetune] two runs fine-tune the {pair.name} pair's model at the same "
                "batch size; give each run its own batch size"
            )
