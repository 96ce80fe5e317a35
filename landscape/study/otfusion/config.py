"""The settings of an OT-fusion study, read from a TOML file.

`[study] experiments` names the kinds the study runs, with one section per kind, each a frozen
dataclass checked against its type hints (`landscape/study/settings.py`).

Sections: `[study]` (name, architecture, data, replicates), `[train]` (every `TrainConfig` field,
shared by all models trained), `[skill-transfer]`, `[widths]`, `[ensemble]`, `[ablation]` (the kinds
listed).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...errors import LandscapeError
from ...training.loop import TrainConfig
from ..settings import from_table

EXPERIMENTS = ("batch-size", "skill-transfer", "widths", "ensemble", "ablation")
OT_KINDS = EXPERIMENTS[1:]
Kind = Literal["batch-size", "skill-transfer", "widths", "ensemble", "ablation"]
Mode = Literal["acts", "wts"]  # fusion's alignment modes (fusion/choices.py)
Solver = Literal["emd", "sinkhorn"]  # fusion's OT solvers
Aligner = Literal["ot", "rebasin"]  # fusion's alignment methods: OT or Git Re-Basin
Init = Literal["diff", "same"]
PROPORTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class StudySettings:
    """`[study]`: what is trained on what, and how often.

    Replicate r shifts every seed by 1000·r.

    Examples:
        >>> StudySettings("demo", "mlp").data, StudySettings("demo", "mlp").replicates
        ('digits', 1)
    """

    name: str
    arch: str
    experiments: tuple[Kind, ...] = ("batch-size",)
    arch_kwargs: dict = field(default_factory=dict)
    data: str = "digits"
    replicates: int = 1


@dataclass(frozen=True)
class SkillTransfer:
    """`[skill-transfer]` (Sec. 5.1, Fig. 2): two specialists fused in proportions w_B.

    A sees the special label plus `share` of the others, B the rest of the others; they are fused in
    proportions w_B (`proportions`) by vanilla and OT averaging, for each of `inits`.

    Examples:
        >>> SkillTransfer().special_label, SkillTransfer().inits
        (4, ('diff', 'same'))
    """

    special_label: int = 4
    share: float = 0.1
    proportions: tuple[float, ...] = PROPORTIONS
    inits: tuple[Init, ...] = ("diff", "same")
    mode: Mode = "acts"
    align_samples: int = 200
    solver: Solver = "emd"
    reg: float = 0.01
    compare: str | None = None


@dataclass(frozen=True)
class Widths:
    """`[widths]` (Sec. 5.2, Fig. 3): structured pruning, then OT fusion of the dense model.

    Each of `layers` loses `fractions` of its units (smallest L1 norm), then the dense model is
    OT-fused into the pruned one with the pruned model's weight `weight`.

    Examples:
        >>> Widths(layers=("features.2",)).mode
        'wts'
    """

    layers: tuple[str, ...]
    fractions: tuple[float, ...] = PROPORTIONS
    weight: float = 0.5
    mode: Mode = "wts"
    align_samples: int = 200
    solver: Solver = "emd"
    reg: float = 0.01
    compare: str | None = None


@dataclass(frozen=True)
class Ensemble:
    """`[ensemble]` (Sec. 5.3, Tables 1-3): K models replaced by one fused model.

    For each K of `models`, the first K of max(K) models trained from different initialisations:
    individuals, prediction ensemble, vanilla and OT averages, each fine-tuned for
    `finetune_epochs` (0: not fine-tuned) at `finetune_lr` (None: [train] lr).

    Examples:
        >>> Ensemble(models=(2, 4)).finetune_epochs
        0
    """

    models: tuple[int, ...] = (2, 4)
    finetune_epochs: int = 0
    finetune_lr: float | None = None
    mode: Mode = "acts"
    align_samples: int = 200
    solver: Solver = "emd"
    reg: float = 0.01
    compare: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ablation:
    """`[ablation]` (App. S2): two models of different initialisation, fused in three tables.

    Tables S2-S4: every mode, solver (Sinkhorn at every regularisation of `regs`) and number of
    activation samples of `samples`. Table S1: the same two models saved after each of `epochs`
    (one training run to the last; none: no table), fused by exact OT on `epoch_samples`
    activation samples. Alignment methods: vanilla averaging against each of `methods` (OT, Git
    Re-Basin) in each of `modes` (exact OT; activations on the largest of `samples`).

    Examples:
        >>> Ablation(epochs=(1, 5)).methods
        ('ot', 'rebasin')
    """

    samples: tuple[int, ...] = (2, 10, 25, 50, 100, 200)
    solvers: tuple[Solver, ...] = ("emd", "sinkhorn")
    regs: tuple[float, ...] = (0.05, 0.1)
    modes: tuple[Mode, ...] = ("acts", "wts")
    epochs: tuple[int, ...] = ()
    epoch_samples: int = 50
    methods: tuple[Aligner, ...] = ("ot", "rebasin")
    compare: str | None = None


SECTIONS = {
    "skill-transfer": SkillTransfer,
    "widths": Widths,
    "ensemble": Ensemble,
    "ablation": Ablation,
}


@dataclass(frozen=True)
class OTStudyConfig:
    """Every setting of an OT-fusion study: `[study]`, `[train]` and one section per kind run.

    Examples:
        >>> cfg = OTStudyConfig(
        ...     StudySettings("demo", "mlp", experiments=("ablation",)),
        ...     TrainConfig(epochs=1),
        ...     ablation=Ablation(),
        ... )
        >>> cfg.name, cfg.kind("ablation").samples[-1], cfg.kind("skill-transfer")
        ('demo', 200, None)
    """

    study: StudySettings
    train: TrainConfig
    skill_transfer: SkillTransfer | None = None
    widths: Widths | None = None
    ensemble: Ensemble | None = None
    ablation: Ablation | None = None

    @property
    def name(self) -> str:
        """The study's name (`[study] name`)."""
        return self.study.name

    def kind(self, name: str) -> SkillTransfer | Widths | Ensemble | Ablation | None:
        """The settings of one experiment kind.

        Args:
            name: the kind, as `[study] experiments` names it ("skill-transfer", "ablation", ...).

        Returns:
            Its section's settings, or None when the study does not run it.
        """
        return getattr(self, name.replace("-", "_"))


def read_toml(path: str | Path) -> dict:
    """The TOML file at `path` as a dict.

    Args:
        path: the file.

    Returns:
        Its tables.

    Raises:
        LandscapeError: the file is missing or not valid TOML (one line).

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "s.toml"
        ...     _ = path.write_text('study = { name = "x" }')
        ...     read_toml(path)
        {'study': {'name': 'x'}}
    """
    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise LandscapeError(f"{path}: invalid TOML: {exc}") from None


def experiments_of(raw: dict) -> tuple[str, ...]:
    """The experiment kinds a config names.

    Args:
        raw: the config's tables (`read_toml`).

    Returns:
        `[study] experiments` as a tuple ("batch-size" when it names none).

    Examples:
        >>> experiments_of({"study": {"experiments": ["widths", "ablation"]}})
        ('widths', 'ablation')
        >>> experiments_of({})
        ('batch-size',)
    """
    study = raw.get("study", {})
    kinds = study.get("experiments", ["batch-size"]) if isinstance(study, dict) else ["batch-size"]
    return tuple(kinds) if isinstance(kinds, list) else (kinds,)


def load_ot_config(path: str | Path, data: str | None = None) -> OTStudyConfig:
    """Read and check an OT-fusion study config; `data` overrides its dataset.

    Args:
        path: the TOML file.
        data: a dataset to use instead of the config's.

    Returns:
        The settings.

    Raises:
        LandscapeError: for a missing or invalid file, an unknown section or setting, a value of the
            wrong type, a kind listed without its section or a section not listed, or impossible
            values.

    Examples:
        >>> from landscape.study import presets
        >>> cfg = load_ot_config(presets.path("otfusion-sinkhorn"), data="digits")
        >>> cfg.study.data, cfg.ablation.epochs
        ('digits', (1, 2, 5, 7, 10, 15, 20))
    """
    where = str(path)
    raw = read_toml(path)
    unknown = sorted(set(raw) - {"study", "train", *SECTIONS})
    if unknown:
        raise LandscapeError(f"{where}: unknown section [{unknown[0]}]")
    study = from_table(StudySettings, raw.get("study", {}), where, "study")
    if data is not None:
        study = StudySettings(**{**study.__dict__, "data": data})
    if "batch-size" in study.experiments or not study.experiments:
        raise LandscapeError(
            f"{where}: [study] experiments: batch-size is a study of its own; list OT-fusion "
            f"kinds ({', '.join(OT_KINDS)})"
        )
    kinds = {}
    for name, cls in SECTIONS.items():
        if (name in study.experiments) != (name in raw):
            raise LandscapeError(
                f"{where}: [{name}] "
                + ("is missing" if name in study.experiments else "is not in [study] experiments")
            )
        if name in raw:
            kinds[name.replace("-", "_")] = from_table(cls, raw[name], where, name)
    cfg = OTStudyConfig(
        study, from_table(TrainConfig, raw.get("train", {}), where, "train"), **kinds
    )
    _check(cfg, where)
    return cfg


def _check(cfg: OTStudyConfig, where: str) -> None:
    """Reject values the types allow but the experiments cannot use.

    Raises:
        LandscapeError: naming the file, section and problem.
    """
    cfg.train.validate()
    problems = [("study", "replicates must be at least 1", cfg.study.replicates < 1)]
    if cfg.skill_transfer:
        s = cfg.skill_transfer
        problems += [
            ("skill-transfer", "share must be in (0, 1)", not 0 < s.share < 1),
            (
                "skill-transfer",
                "proportions must be in [0, 1]",
                any(not 0 <= w <= 1 for w in s.proportions),
            ),
            ("skill-transfer", "align_samples must be positive", s.align_samples < 1),
        ]
    if cfg.widths:
        w = cfg.widths
        problems += [
            ("widths", "fractions must be in [0, 1)", any(not 0 <= f < 1 for f in w.fractions)),
            ("widths", "weight must be in [0, 1]", not 0 <= w.weight <= 1),
            ("widths", "layers must name at least one layer", not w.layers),
        ]
    if cfg.ensemble:
        e = cfg.ensemble
        problems += [
            ("ensemble", "models must be at least 2 each", not e.models or min(e.models) < 2),
            ("ensemble", "finetune_epochs must be at least 0", e.finetune_epochs < 0),
        ]
    if cfg.ablation:
        a = cfg.ablation
        problems += [
            ("ablation", "samples must be positive", any(m < 1 for m in a.samples)),
            ("ablation", "regs must be positive", any(r <= 0 for r in a.regs)),
            (
                "ablation",
                "samples must list at least one m for acts alignment",
                "acts" in a.modes and not a.samples,
            ),
            ("ablation", "epochs must be positive", any(e < 1 for e in a.epochs)),
            ("ablation", "epochs must be increasing", list(a.epochs) != sorted(set(a.epochs))),
            ("ablation", "epoch_samples must be positive", a.epoch_samples < 1),
            (
                "ablation",
                "epochs need [train] patience 0 (early stopping could end training before them)",
                bool(a.epochs) and cfg.train.patience > 0,
            ),
        ]
    from .published import settings

    for kind in cfg.study.experiments:
        wanted = cfg.kind(kind).compare
        for setting in (wanted,) if isinstance(wanted, str) else wanted or ():
            problems.append(
                (
                    kind,
                    f"compare must be one of {', '.join(settings(kind))}, got {setting!r}",
                    setting not in settings(kind),
                )
            )
    for section, message, bad in problems:
        if bad:
            raise LandscapeError(f"{where}: [{section}] {message}")
