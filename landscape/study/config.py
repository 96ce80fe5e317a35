"""Study configuration: a TOML file (or a bundled preset) describing the batch-size comparison
study.

Sections: `[study]` (architecture, data, replicates, the seed-study tables to compare with),
`[train]` (batch sizes, their learning rates, any training setting), `[pairs]` (seeds of A and B:
same-init and different-init pairs for every batch size, and mixed batch-size pairs), `[fusion]`,
`[finetune]` (defaults and per-pair runs, as the seed study's Table 6), `[measure]`.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from ..choices import CURVATURES, SHARPNESS_KINDS, SHARPNESS_NORMS
from ..errors import LandscapeError
from ..training.loop import TrainConfig
from .settings import described, from_table

SECTIONS = ("study", "train", "pairs", "fusion", "finetune", "measure")
FUSED = ("vanilla", "ot")  # the fused models that can be fine-tuned
CONTOUR_KINDS = ("plane", "2d")
LOOP_FIELDS = {f.name for f in fields(TrainConfig)} - {"batch_size", "lr", "data_seed"}


@dataclass(frozen=True)
class Parent:
    """A parent model: its batch size and (init seed, data seed) before the replicate shift."""

    batch_size: int
    init_seed: int
    data_seed: int


@dataclass(frozen=True)
class PairSpec:
    """A pair of parents, A aligned to B; `init` is "same" when A and B share the initial
    weights.
    """

    a: Parent
    b: Parent

    @property
    def init(self) -> str:
        return "same" if self.a.init_seed == self.b.init_seed else "diff"

    @property
    def batches(self) -> str:
        return "corresponding" if self.a.batch_size == self.b.batch_size else "mixed"

    @property
    def name(self) -> str:
        sizes = (
            f"bs{self.a.batch_size}"
            if self.batches == "corresponding"
            else f"bs{self.a.batch_size}-bs{self.b.batch_size}"
        )
        return f"{self.init}-{sizes}"


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning of one fused model of matching pairs: `batches` (A, B) or None for every
    pair.
    """

    models: tuple[str, ...]
    batches: tuple[int, int] | None
    settings: dict  # TrainConfig fields, plus lr or lr_factor; batch_size may be absent (then B's)

    def matches(self, pair: PairSpec, model: str) -> bool:
        return model in self.models and self.batches in (
            None,
            (pair.a.batch_size, pair.b.batch_size),
        )


@dataclass
class StudyConfig:
    """Every setting of a study; each section of the TOML file maps to fields here."""

    name: str
    arch: str
    arch_kwargs: dict
    data: str
    batch_sizes: list[int]
    lrs: list[float]
    train: dict = field(default_factory=dict)  # other TrainConfig fields (epochs, schedule, ...)
    pairs: list[PairSpec] = field(default_factory=list)
    fusion: dict = field(default_factory=dict)
    finetune: dict = field(
        default_factory=dict
    )  # defaults: init, models, lr_factor, data_seed, loop fields
    finetune_runs: list[FinetuneRun] = field(default_factory=list)
    measure: dict = field(default_factory=dict)
    replicates: int = 1
    compare: str | None = None  # "resnet18/cifar10": show the seed study's values beside ours

    def lr_for(self, batch_size: int) -> float:
        """The training learning rate paired with `batch_size`."""
        return self.lrs[self.batch_sizes.index(batch_size)]

    def train_config(self, batch_size: int, data_seed: int) -> TrainConfig:
        """The TrainConfig of a parent trained with `batch_size` and `data_seed`."""
        return TrainConfig(
            batch_size=batch_size, lr=self.lr_for(batch_size), data_seed=data_seed, **self.train
        )

    def finetunes(self, pair: PairSpec, model: str) -> list[dict]:
        """The fine-tuning runs of fused `model` of `pair`, each as its TrainConfig fields (seed not
        shifted): the matching `[[finetune.runs]]`, or one run with the defaults when no runs are
        listed.
        """
        if pair.init not in self.finetune["init"]:
            return []
        if self.finetune_runs:
            runs = [r.settings for r in self.finetune_runs if r.matches(pair, model)]
        else:
            runs = [{}] if model in self.finetune["models"] else []
        defaults = {k: v for k, v in self.finetune.items() if k in LOOP_FIELDS}
        out = []
        for run in runs:
            settings = {
                **self.train,
                **defaults,
                **{k: v for k, v in run.items() if k in LOOP_FIELDS},
            }
            factor = run.get("lr_factor", self.finetune["lr_factor"])
            out.append(
                {
                    **settings,
                    "batch_size": int(run.get("batch_size", pair.b.batch_size)),
                    "lr": float(run.get("lr", factor * self.lr_for(pair.b.batch_size))),
                    "data_seed": int(self.finetune["data_seed"]),
                }
            )
        return out


@dataclass(frozen=True)
class StudySection:
    """`[study]`."""

    arch: str
    name: str | None = None  # the file's stem
    arch_kwargs: dict = field(default_factory=dict)
    data: str = "digits"
    replicates: int = 1
    compare: str | None = None
    experiments: tuple[str, ...] = ("batch-size",)


@dataclass(frozen=True)
class FusionSection:
    """`[fusion]`: how every pair is aligned and fused."""

    method: str = "ot"  # "ot" or "rebasin" (Git Re-Basin)
    mode: str = "acts"
    align_samples: int = 200
    solver: str = "emd"
    reg: float = 0.01
    iterations: int = 1
    reset_bn_samples: int = 0
    seed: int = 0


@dataclass(frozen=True)
class MeasureSection:
    """`[measure]`: what is measured of every model and pair, on how many examples."""

    samples: int = 1024
    batch_size: int = 256
    eig_k: int = 1
    eig_tol: float = 1e-3
    trace_hvps: int = 100
    esd: bool = True
    esd_steps: int = 80
    esd_runs: int = 1
    barrier_points: int = 21
    barrier_samples: int | None = None
    contours: bool = False
    contour_kind: str = "plane"
    contour_steps: int = 15
    contour_range: float = 1.0
    contour_margin: float = 0.25
    seed: int = 0
    curvatures: tuple[
        str, ...
    ] = ()  # beside the Hessian: eig and trace of these matrices ("ggn", "fisher")
    sharpness: bool = False
    sharpness_kind: str = "adaptive"
    sharpness_norm: str = "l2"
    sharpness_rho: float = 0.05
    sharpness_steps: int = 10
    sharpness_restarts: int = 3
    sharpness_draws: int = 10


PAIRS = described(tuple[tuple[int, int], ...], "a list of [a, b] integer pairs")


@dataclass(frozen=True)
class PairsSection:
    """`[pairs]`: (init seed, data seed) of A and B for the same- and different-init pairs of every
    batch size, and mixed pairs `{ a = [batch, init seed, data seed], b = [...] }`.
    """

    same_init: PAIRS | None = None
    diff_init: PAIRS | None = None
    mixed: tuple[dict, ...] = ()


def _loop_fields(name: str, doc: str, *extra: tuple) -> type:
    """A dataclass of every TrainConfig field but batch size, lr and data seed, each optional (None:
    not set), plus `extra` fields.
    """
    hints = get_type_hints(TrainConfig)
    loop = [(f, hints[f] | None, field(default=None)) for f in sorted(LOOP_FIELDS)]
    cls = make_dataclass(name, [*extra, *loop], frozen=True)
    cls.__doc__ = doc
    return cls


TrainSection = _loop_fields(
    "TrainSection",
    "`[train]`: batch sizes, their learning rates, and training settings.",
    ("batch_sizes", tuple[int, ...]),
    ("lrs", tuple[float, ...]),
)
# Fine-tuning mirrors [train] (the seed study's A.3) except what [finetune] and its runs set.
FinetuneSection = _loop_fields(
    "FinetuneSection",
    "`[finetune]`: defaults of every fine-tuning run, and the runs.",
    ("lr_factor", float, field(default=1.0)),
    ("init", tuple[str, ...], field(default=("diff",))),
    ("models", tuple[str, ...], field(default=FUSED)),
    ("data_seed", int, field(default=0)),
    ("runs", tuple[dict, ...], field(default=())),
)
RunSection = _loop_fields(
    "RunSection",
    "One of `[[finetune.runs]]`.",
    ("batches", tuple[int, ...] | None, field(default=None)),
    ("models", tuple[str, ...] | None, field(default=None)),
    ("batch_size", int | None, field(default=None)),
    ("lr", float | None, field(default=None)),
    ("lr_factor", float | None, field(default=None)),
)


def _set(section: Any) -> dict:
    """The settings a section gives (None: not set)."""
    return {k: v for k, v in asdict(section).items() if v is not None}


def _parent(value: Any, where: str) -> Parent:
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value)):
        raise LandscapeError(
            f"{where}: a parent is [batch size, init seed, data seed], got {value!r}"
        )
    return Parent(*value)


def _pairs(raw: PairsSection, batch_sizes: list[int], where: str) -> list[PairSpec]:
    """Same- and different-init pairs for every batch size, then the mixed pairs as listed."""
    pairs = []
    for key in ("same_init", "diff_init"):
        seeds = getattr(raw, key)
        if seeds is None:
            continue
        if len(seeds) != 2:
            raise LandscapeError(f"{where}: [pairs] {key} is [[init_a, data_a], [init_b, data_b]]")
        (ia, da), (ib, db) = seeds
        if (ia == ib) != (key == "same_init"):
            raise LandscapeError(
                f"{where}: [pairs] {key} needs {'equal' if key == 'same_init' else 'different'} "
                "init seeds for A and B"
            )
        pairs += [PairSpec(Parent(bs, ia, da), Parent(bs, ib, db)) for bs in batch_sizes]
    for i, entry in enumerate(raw.mixed):
        if set(entry) != {"a", "b"}:
            raise LandscapeError(
                f"{where}: [pairs] mixed entries are {{ a = [batch, init seed, data seed], b = "
                "[...] }}"
            )
        pair = PairSpec(
            _parent(entry["a"], f"{where}: mixed pair {i + 1}"),
            _parent(entry["b"], f"{where}: mixed pair {i + 1}"),
        )
        if pair.batches != "mixed" or {pair.a.batch_size, pair.b.batch_size} - set(batch_sizes):
            raise LandscapeError(
                f"{where}: mixed pair {i + 1} needs two different batch sizes of [train] "
                "batch_sizes"
            )
        pairs.append(pair)
    names = [p.name for p in pairs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise LandscapeError(
            f"{where}: two pairs are both {duplicate!r}; each (init, A batch, B batch) once"
        )
    return pairs


def _finetune(section: Any, where: str) -> tuple[dict, list[FinetuneRun]]:
    settings = {
        k: list(v) if isinstance(v, tuple) else v for k, v in _set(section).items() if k != "runs"
    }
    if set(settings["init"]) - {"same", "diff"} or set(settings["models"]) - set(FUSED):
        raise LandscapeError(
            f"{where}: [finetune] init is a list of same/diff, models a list of vanilla/ot"
        )
    runs = []
    for i, raw in enumerate(section.runs):
        run = _set(from_table(RunSection, raw, where, f"finetune.runs {i + 1}"))
        if "lr" in run and "lr_factor" in run:
            raise LandscapeError(f"{where}: [finetune] run {i + 1} gives both lr and lr_factor")
        batches = run.get("batches")
        if batches is not None and len(batches) != 2:
            raise LandscapeError(f"{where}: [finetune] run {i + 1}: batches is [A batch, B batch]")
        models = tuple(run.get("models", settings["models"]))
        if set(models) - set(FUSED):
            raise LandscapeError(f"{where}: [finetune] run {i + 1}: models are vanilla and/or ot")
        runs.append(
            FinetuneRun(
                models,
                tuple(batches) if batches else None,
                {k: v for k, v in run.items() if k not in ("batches", "models")},
            )
        )
    return settings, runs


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
    finetune_section = from_table(FinetuneSection, raw.get("finetune", {}), where, "finetune")
    measure = from_table(MeasureSection, raw.get("measure", {}), where, "measure")
    pairs = from_table(PairsSection, raw.get("pairs", {}), where, "pairs")
    batch_sizes, lrs = list(train.batch_sizes), list(train.lrs)
    if len(lrs) != len(batch_sizes) or not batch_sizes:
        raise LandscapeError(f"{path}: [train] needs one learning rate per batch size")
    finetune, runs = _finetune(finetune_section, where)
    cfg = StudyConfig(
        name=study.name or path.stem,
        arch=study.arch,
        arch_kwargs=dict(study.arch_kwargs),
        data=data or study.data,
        batch_sizes=batch_sizes,
        lrs=lrs,
        train={k: v for k, v in _set(train).items() if k in LOOP_FIELDS},
        pairs=_pairs(pairs, batch_sizes, where),
        fusion=asdict(fusion),
        finetune=finetune,
        finetune_runs=runs,
        measure=asdict(measure),
        replicates=study.replicates,
        compare=study.compare,
    )
    _check(cfg, where)
    return cfg


def _check(cfg: StudyConfig, where: str) -> None:
    from .published import COMPARABLE

    if cfg.replicates < 1:
        raise LandscapeError(f"{where}: [study] replicates must be at least 1")
    if cfg.compare is not None and cfg.compare not in COMPARABLE:
        raise LandscapeError(f"{where}: [study] compare must be one of {', '.join(COMPARABLE)}")
    extra = [c for c in cfg.measure["curvatures"] if c not in CURVATURES[1:]]
    if extra:
        raise LandscapeError(
            f"{where}: [measure] curvatures are among {', '.join(CURVATURES[1:])}, got {extra[0]!r}"
        )
    for setting, allowed in (
        ("sharpness_kind", SHARPNESS_KINDS),
        ("sharpness_norm", SHARPNESS_NORMS),
    ):
        if cfg.measure[setting] not in allowed:
            raise LandscapeError(f"{where}: [measure] {setting} is one of {', '.join(allowed)}")
    if cfg.measure["contour_kind"] not in CONTOUR_KINDS:
        raise LandscapeError(
            f"{where}: [measure] contour_kind is one of {', '.join(CONTOUR_KINDS)}"
        )
    if (
        cfg.measure["contours"]
        and cfg.measure["contour_kind"] == "plane"
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
        variants = [(m, s["batch_size"]) for m in FUSED for s in cfg.finetunes(pair, m)]
        if len(set(variants)) != len(variants):
            raise LandscapeError(
                f"{where}: [finetune] two runs fine-tune the {pair.name} pair's model at the same "
                "batch size; give each run its own batch size"
            )
