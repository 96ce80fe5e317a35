"""Study configuration: a TOML file (or a bundled preset) describing the batch-size comparison study.

Sections: `[study]` (architecture, data, replicates, the seed-study tables to compare with), `[train]` (batch
sizes, their learning rates, any training setting), `[pairs]` (seeds of A and B: same-init and different-init
pairs for every batch size, and mixed batch-size pairs), `[fusion]`, `[finetune]` (defaults and per-pair
runs, as the seed study's Table 6), `[measure]`.
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from ..training.loop import TrainConfig

SECTIONS = ("study", "train", "pairs", "fusion", "finetune", "measure")
FUSED = ("vanilla", "ot")   # the fused models that can be fine-tuned
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
    """A pair of parents, A aligned to B; `init` is "same" when A and B share the initial weights."""

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
        sizes = (f"bs{self.a.batch_size}" if self.batches == "corresponding"
                 else f"bs{self.a.batch_size}-bs{self.b.batch_size}")
        return f"{self.init}-{sizes}"


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning of one fused model of matching pairs: `batches` (A, B) or None for every pair."""

    models: tuple[str, ...]
    batches: tuple[int, int] | None
    settings: dict   # TrainConfig fields, plus lr or lr_factor; batch_size may be absent (then B's)

    def matches(self, pair: PairSpec, model: str) -> bool:
        return model in self.models and self.batches in (None, (pair.a.batch_size, pair.b.batch_size))


@dataclass
class StudyConfig:
    """Every setting of a study; each section of the TOML file maps to fields here."""

    name: str
    arch: str
    arch_kwargs: dict
    data: str
    batch_sizes: list[int]
    lrs: list[float]
    train: dict = field(default_factory=dict)        # other TrainConfig fields (epochs, schedule, ...)
    pairs: list[PairSpec] = field(default_factory=list)
    fusion: dict = field(default_factory=dict)
    finetune: dict = field(default_factory=dict)     # defaults: init, models, lr_factor, data_seed, loop fields
    finetune_runs: list[FinetuneRun] = field(default_factory=list)
    measure: dict = field(default_factory=dict)
    replicates: int = 1
    compare: str | None = None                       # "resnet18/cifar10": show the seed study's values beside ours

    def lr_for(self, batch_size: int) -> float:
        """The training learning rate paired with `batch_size`."""
        return self.lrs[self.batch_sizes.index(batch_size)]

    def train_config(self, batch_size: int, data_seed: int) -> TrainConfig:
        """The TrainConfig of a parent trained with `batch_size` and `data_seed`."""
        return TrainConfig(batch_size=batch_size, lr=self.lr_for(batch_size), data_seed=data_seed, **self.train)

    def finetunes(self, pair: PairSpec, model: str) -> list[dict]:
        """The fine-tuning runs of fused `model` of `pair`, each as its TrainConfig fields (seed not shifted):
        the matching `[[finetune.runs]]`, or one run with the defaults when no runs are listed."""
        if pair.init not in self.finetune["init"]:
            return []
        if self.finetune_runs:
            runs = [r.settings for r in self.finetune_runs if r.matches(pair, model)]
        else:
            runs = [{}] if model in self.finetune["models"] else []
        defaults = {k: v for k, v in self.finetune.items() if k in LOOP_FIELDS}
        out = []
        for run in runs:
            settings = {**self.train, **defaults, **{k: v for k, v in run.items() if k in LOOP_FIELDS}}
            factor = run.get("lr_factor", self.finetune["lr_factor"])
            out.append({**settings, "batch_size": int(run.get("batch_size", pair.b.batch_size)),
                        "lr": float(run.get("lr", factor * self.lr_for(pair.b.batch_size))),
                        "data_seed": int(self.finetune["data_seed"])})
        return out


MEASURE_DEFAULTS: dict[str, Any] = {"samples": 1024, "batch_size": 256, "eig_k": 1, "eig_tol": 1e-3,
                                    "trace_hvps": 100, "esd": True, "esd_steps": 80, "esd_runs": 1,
                                    "barrier_points": 21, "barrier_samples": None, "contours": False,
                                    "contour_kind": "plane", "contour_steps": 15, "contour_range": 1.0,
                                    "contour_margin": 0.25, "seed": 0}
FUSION_DEFAULTS: dict[str, Any] = {"mode": "acts", "align_samples": 200, "solver": "emd", "reg": 0.01,
                                   "iterations": 1, "reset_bn_samples": 0, "seed": 0}
# Fine-tuning mirrors [train] (the seed study's A.3) except what [finetune] and its runs set.
FINETUNE_DEFAULTS: dict[str, Any] = {"lr_factor": 1.0, "init": ["diff"], "models": list(FUSED), "data_seed": 0}
RUN_KEYS = LOOP_FIELDS | {"batches", "models", "batch_size", "lr", "lr_factor"}


def _known(section: str, values: dict, allowed: set[str]) -> dict:
    unknown = set(values) - allowed
    if unknown:
        raise LandscapeError(f"config [{section}]: unknown setting {min(unknown)!r}")
    return values


INTEGER, NUMBER, TEXT, FLAG, TABLE = "an integer", "a number", "a string", "true or false", "a table"
PAIRS = "a list of [a, b] integer pairs"
_KINDS = {int: INTEGER, float: NUMBER, str: TEXT, bool: FLAG, dict: TABLE}


def _is(value: Any, kind: str) -> bool:
    """Whether a TOML value is of `kind` (an integer is also a number; true/false is neither)."""
    if isinstance(value, bool):
        return kind == FLAG
    return {INTEGER: isinstance(value, int), NUMBER: isinstance(value, (int, float)), TEXT: isinstance(value, str),
            FLAG: False, TABLE: isinstance(value, dict)}[kind]


def _kinds(defaults: dict[str, Any]) -> dict[str, str]:
    """The kind of each setting from its default (None: an integer, the only optional settings being counts; a
    list: of strings, the only list defaults being names)."""
    return {k: INTEGER if v is None else "a list of strings" if isinstance(v, list) else _KINDS[type(v)]
            for k, v in defaults.items()}


def _check_kinds(path: Path, section: str, values: dict, kinds: dict[str, str]) -> None:
    """Raise `<file>: [section] name must be <kind>, got <value>` for the first wrongly typed setting; a kind
    "a list of integers" (or numbers) asks for a list of them."""
    for name, value in values.items():
        kind = kinds.get(name)
        if kind is None:
            continue
        if kind == PAIRS:
            ok = isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 and all(_is(v, INTEGER) for v in p)
                                                 for p in value)
        elif kind.startswith("a list of "):
            each = {"integers": INTEGER, "numbers": NUMBER, "strings": TEXT, "tables": TABLE}[kind.split()[-1]]
            ok = isinstance(value, list) and all(_is(v, each) for v in value)
        else:
            ok = _is(value, kind)
        if not ok:
            raise LandscapeError(f"{path}: [{section}] {name} must be {kind}, got {value!r}")


TRAIN_KINDS = {**_kinds(asdict(TrainConfig())), "batch_sizes": "a list of integers", "lrs": "a list of numbers"}
STUDY_KINDS = {"name": TEXT, "arch": TEXT, "arch_kwargs": TABLE, "data": TEXT, "replicates": INTEGER, "compare": TEXT}
PAIR_KINDS = {"same_init": PAIRS, "diff_init": PAIRS, "mixed": "a list of tables"}
FINETUNE_KINDS = {**TRAIN_KINDS, **_kinds(FINETUNE_DEFAULTS), "runs": "a list of tables"}
RUN_KINDS = {**TRAIN_KINDS, "batches": "a list of integers", "models": "a list of strings", "lr_factor": NUMBER}


def _parent(value: Any, where: str) -> Parent:
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value)):
        raise LandscapeError(f"{where}: a parent is [batch size, init seed, data seed], got {value!r}")
    return Parent(*value)


def _pairs(raw: dict, batch_sizes: list[int], where: str) -> list[PairSpec]:
    """Same- and different-init pairs for every batch size, then the mixed pairs as listed."""
    pairs = []
    for key in ("same_init", "diff_init"):
        seeds = raw.get(key)
        if seeds is None:
            continue
        if len(seeds) != 2 or any(len(s) != 2 for s in seeds):
            raise LandscapeError(f"{where}: [pairs] {key} is [[init_a, data_a], [init_b, data_b]]")
        (ia, da), (ib, db) = seeds
        if (ia == ib) != (key == "same_init"):
            raise LandscapeError(f"{where}: [pairs] {key} needs {'equal' if key == 'same_init' else 'different'} "
                                 "init seeds for A and B")
        pairs += [PairSpec(Parent(bs, ia, da), Parent(bs, ib, db)) for bs in batch_sizes]
    for i, entry in enumerate(raw.get("mixed", [])):
        if not isinstance(entry, dict) or set(entry) != {"a", "b"}:
            raise LandscapeError(f"{where}: [pairs] mixed entries are {{ a = [batch, init seed, data seed], b = "
                                 "[...] }}")
        pair = PairSpec(_parent(entry["a"], f"{where}: mixed pair {i + 1}"),
                        _parent(entry["b"], f"{where}: mixed pair {i + 1}"))
        if pair.batches != "mixed" or {pair.a.batch_size, pair.b.batch_size} - set(batch_sizes):
            raise LandscapeError(f"{where}: mixed pair {i + 1} needs two different batch sizes of [train] batch_sizes")
        pairs.append(pair)
    names = [p.name for p in pairs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise LandscapeError(f"{where}: two pairs are both {duplicate!r}; each (init, A batch, B batch) once")
    return pairs


def _finetune(raw: dict, where: str) -> tuple[dict, list[FinetuneRun]]:
    runs_raw = raw.pop("runs", [])
    settings = {**FINETUNE_DEFAULTS, **_known("finetune", raw, set(FINETUNE_DEFAULTS) | LOOP_FIELDS | {"runs"})}
    if set(settings["init"]) - {"same", "diff"} or set(settings["models"]) - set(FUSED):
        raise LandscapeError(f"{where}: [finetune] init is a list of same/diff, models a list of vanilla/ot")
    runs = []
    for i, run in enumerate(runs_raw):
        _known(f"finetune.runs {i + 1}", run, RUN_KEYS)
        if "lr" in run and "lr_factor" in run:
            raise LandscapeError(f"{where}: [finetune] run {i + 1} gives both lr and lr_factor")
        batches = run.get("batches")
        if batches is not None and (len(batches) != 2 or not all(isinstance(b, int) for b in batches)):
            raise LandscapeError(f"{where}: [finetune] run {i + 1}: batches is [A batch, B batch]")
        models = tuple(run.get("models", settings["models"]))
        if set(models) - set(FUSED):
            raise LandscapeError(f"{where}: [finetune] run {i + 1}: models are vanilla and/or ot")
        runs.append(FinetuneRun(models, tuple(batches) if batches else None,
                                {k: v for k, v in run.items() if k not in ("batches", "models")}))
    return settings, runs


def load_config(path: str | Path, data: str | None = None) -> StudyConfig:
    """Read and validate a study TOML file; `data` overrides its dataset."""
    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise LandscapeError(f"{path}: invalid TOML: {exc}") from None
    _known("top level", raw, set(SECTIONS))
    for section in SECTIONS:
        if not isinstance(raw.get(section, {}), dict):
            raise LandscapeError(f"{path}: [{section}] must be a table of settings, got {raw[section]!r}")
    study = _known("study", dict(raw.get("study", {})),
                   {"name", "arch", "arch_kwargs", "data", "replicates", "compare", "experiments"})
    if study.pop("experiments", ["batch-size"]) != ["batch-size"]:
        raise LandscapeError(f"{path}: [study] experiments: this is a batch-size study config")
    train = dict(raw.get("train", {}))
    _known("train", train, LOOP_FIELDS | {"batch_sizes", "lrs"})
    pairs_raw = _known("pairs", dict(raw.get("pairs", {})), {"same_init", "diff_init", "mixed"})
    measure = {**MEASURE_DEFAULTS, **_known("measure", dict(raw.get("measure", {})), set(MEASURE_DEFAULTS))}
    finetune_raw = dict(raw.get("finetune", {}))
    for section, values, kinds in (("study", study, STUDY_KINDS), ("train", train, TRAIN_KINDS),
                                   ("fusion", raw.get("fusion", {}), _kinds(FUSION_DEFAULTS)),
                                   ("finetune", finetune_raw, FINETUNE_KINDS),
                                   *((f"finetune.runs {i + 1}", run, RUN_KINDS)
                                     for i, run in enumerate(finetune_raw.get("runs", []))),
                                   ("measure", raw.get("measure", {}), _kinds(MEASURE_DEFAULTS)),
                                   ("pairs", pairs_raw, PAIR_KINDS)):
        _check_kinds(path, section, values, kinds)
    try:
        batch_sizes = [int(b) for b in train.pop("batch_sizes")]
        lrs = [float(v) for v in train.pop("lrs")]
        arch = str(study["arch"])
    except KeyError as exc:
        raise LandscapeError(f"{path}: missing setting {exc.args[0]!r}") from None
    if len(lrs) != len(batch_sizes) or not batch_sizes:
        raise LandscapeError(f"{path}: [train] needs one learning rate per batch size")
    finetune, runs = _finetune(finetune_raw, str(path))
    cfg = StudyConfig(
        name=str(study.get("name", path.stem)), arch=arch, arch_kwargs=dict(study.get("arch_kwargs", {})),
        data=data or str(study.get("data", "digits")), batch_sizes=batch_sizes, lrs=lrs, train=train,
        pairs=_pairs(pairs_raw, batch_sizes, str(path)),
        fusion={**FUSION_DEFAULTS, **_known("fusion", dict(raw.get("fusion", {})), set(FUSION_DEFAULTS))},
        finetune=finetune, finetune_runs=runs, measure=measure, replicates=int(study.get("replicates", 1)),
        compare=study.get("compare"))
    _check(cfg, str(path))
    return cfg


def _check(cfg: StudyConfig, where: str) -> None:
    from .published import COMPARABLE

    if cfg.replicates < 1:
        raise LandscapeError(f"{where}: [study] replicates must be at least 1")
    if cfg.compare is not None and cfg.compare not in COMPARABLE:
        raise LandscapeError(f"{where}: [study] compare must be one of {', '.join(COMPARABLE)}")
    if cfg.measure["contour_kind"] not in CONTOUR_KINDS:
        raise LandscapeError(f"{where}: [measure] contour_kind is one of {', '.join(CONTOUR_KINDS)}")
    if cfg.measure["contours"] and cfg.measure["contour_kind"] == "plane" and not any(
            cfg.finetunes(p, "ot") for p in cfg.pairs if p.init == "diff" and p.batches == "corresponding"):
        raise LandscapeError(f"{where}: [measure] contour_kind = plane needs a fine-tuned OT fusion of a "
                             "different-init pair (an OT fusion of two models is the midpoint of A aligned and B, "
                             "so the three lie on one line): fine-tune one, or use contour_kind = \"2d\"")
    for pair in cfg.pairs:
        variants = [(m, s["batch_size"]) for m in FUSED for s in cfg.finetunes(pair, m)]
        if len(set(variants)) != len(variants):
            raise LandscapeError(f"{where}: [finetune] two runs fine-tune the {pair.name} pair's model at the same "
                                 "batch size; give each run its own batch size")
