"""Study configuration: a TOML file (or a bundled preset) describing the batch-size comparison study."""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import LandscapeError
from ..training.loop import TrainConfig

SECTIONS = ("study", "train", "pairs", "fusion", "finetune", "measure")


@dataclass
class StudyConfig:
    """Every setting of a study; each section of the TOML file maps to one dict here."""

    name: str
    arch: str
    arch_kwargs: dict
    data: str
    batch_sizes: list[int]
    lrs: list[float]
    train: dict = field(default_factory=dict)        # other TrainConfig fields (epochs, schedule, ...)
    same_init: list[list[int]] | None = None         # [[init_a, data_a], [init_b, data_b]]
    diff_init: list[list[int]] | None = None
    mixed: list[list[int]] = field(default_factory=list)   # [[bs_a, bs_b], ...], seeds of diff_init
    fusion: dict = field(default_factory=dict)
    finetune: dict = field(default_factory=dict)
    measure: dict = field(default_factory=dict)

    def lr_for(self, batch_size: int) -> float:
        """The training learning rate paired with `batch_size`."""
        return self.lrs[self.batch_sizes.index(batch_size)]

    def train_config(self, batch_size: int, data_seed: int) -> TrainConfig:
        """The TrainConfig of a parent trained with `batch_size` and `data_seed`."""
        return TrainConfig(batch_size=batch_size, lr=self.lr_for(batch_size), data_seed=data_seed, **self.train)


MEASURE_DEFAULTS: dict[str, Any] = {"samples": 1024, "batch_size": 256, "eig_k": 1, "eig_tol": 1e-3,
                                    "trace_hvps": 100, "esd": True, "esd_steps": 80, "esd_runs": 1,
                                    "barrier_points": 21, "barrier_samples": None, "contours": False,
                                    "contour_steps": 15, "seed": 0}
FUSION_DEFAULTS: dict[str, Any] = {"mode": "acts", "align_samples": 200, "solver": "emd", "reg": 0.01,
                                   "iterations": 1, "reset_bn_samples": 0, "seed": 0}
FINETUNE_DEFAULTS: dict[str, Any] = {"epochs": 10, "lr_factor": 1.0, "schedule": "cosine"}


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
    """The kind of each setting from its default (None: an integer, the only optional settings being counts)."""
    return {k: INTEGER if v is None else _KINDS[type(v)] for k, v in defaults.items()}


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
            each = {"integers": INTEGER, "numbers": NUMBER}[kind.split()[-1]]
            ok = isinstance(value, list) and all(_is(v, each) for v in value)
        else:
            ok = _is(value, kind)
        if not ok:
            raise LandscapeError(f"{path}: [{section}] {name} must be {kind}, got {value!r}")


TRAIN_KINDS = {**_kinds(asdict(TrainConfig())), "batch_sizes": "a list of integers", "lrs": "a list of numbers"}
STUDY_KINDS = {"name": TEXT, "arch": TEXT, "arch_kwargs": TABLE, "data": TEXT}


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
    study = _known("study", dict(raw.get("study", {})), {"name", "arch", "arch_kwargs", "data"})
    train = dict(raw.get("train", {}))
    pairs = _known("pairs", dict(raw.get("pairs", {})), {"same_init", "diff_init", "mixed"})
    loop_fields = {f.name for f in fields(TrainConfig)} - {"batch_size", "lr", "data_seed"}
    _known("train", train, loop_fields | {"batch_sizes", "lrs"})
    for section, values, kinds in (("study", study, STUDY_KINDS), ("train", train, TRAIN_KINDS),
                                   ("fusion", raw.get("fusion", {}), _kinds(FUSION_DEFAULTS)),
                                   ("finetune", raw.get("finetune", {}), {**TRAIN_KINDS, **_kinds(FINETUNE_DEFAULTS)}),
                                   ("measure", raw.get("measure", {}), _kinds(MEASURE_DEFAULTS)),
                                   ("pairs", pairs, dict.fromkeys(pairs, PAIRS))):
        _check_kinds(path, section, values, kinds)
    try:
        cfg = StudyConfig(
            name=str(study.get("name", path.stem)), arch=str(study["arch"]),
            arch_kwargs=dict(study.get("arch_kwargs", {})),
            data=data or str(study.get("data", "digits")), batch_sizes=[int(b) for b in train.pop("batch_sizes")],
            lrs=[float(v) for v in train.pop("lrs")], train=train, same_init=pairs.get("same_init"),
            diff_init=pairs.get("diff_init"), mixed=[list(map(int, m)) for m in pairs.get("mixed", [])],
            fusion={**FUSION_DEFAULTS, **_known("fusion", dict(raw.get("fusion", {})), set(FUSION_DEFAULTS))},
            finetune={**FINETUNE_DEFAULTS, **_known("finetune", dict(raw.get("finetune", {})),
                                                     set(FINETUNE_DEFAULTS) | loop_fields | {"batch_size"})},
            measure={**MEASURE_DEFAULTS, **_known("measure", dict(raw.get("measure", {})), set(MEASURE_DEFAULTS))})
    except KeyError as exc:
        raise LandscapeError(f"{path}: missing setting {exc.args[0]!r}") from None
    if len(cfg.lrs) != len(cfg.batch_sizes) or not cfg.batch_sizes:
        raise LandscapeError(f"{path}: [train] needs one learning rate per batch size")
    for pair in (cfg.same_init, cfg.diff_init):
        if pair is not None and (len(pair) != 2 or any(len(p) != 2 for p in pair)):
            raise LandscapeError(f"{path}: [pairs] entries are [[init_a, data_a], [init_b, data_b]]")
    for a, b in cfg.mixed:
        if a not in cfg.batch_sizes or b not in cfg.batch_sizes:
            raise LandscapeError(f"{path}: mixed pair {[a, b]} uses a batch size not in [train] batch_sizes")
    if cfg.mixed and cfg.diff_init is None:
        raise LandscapeError(f"{path}: mixed pairs take their seeds from [pairs] diff_init")
    return cfg
