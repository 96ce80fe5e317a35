"""What a planned batch-size study holds: its tasks, its models and its pairs, stage by stage.

A task is a checkpoint to write or a result group to store, with its key and its cost.

A task names the action that does it and carries the parameters the action needs; `plan.py` builds
the tasks from the settings alone, `execute.py` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import StudyConfig

EVAL_BATCH = 1024  # the batch size of `evaluate` (forward passes only)
Cost = tuple[tuple[str, int, int], ...]  # (unit, batch size, examples); unit train, forward or hvp


@dataclass(frozen=True)
class Task:
    """One job of a study: a checkpoint to write or a result group to store.

    `action` names what does it and `params` holds what that needs; `cost` is what it costs at
    most, as (unit, batch size, examples) with unit train (forward + backward + step), forward or
    hvp.

    Examples:
        >>> task = Task("ensemble diff-bs32", "0123abcd", "ensemble", {"pair": "diff-bs32"})
        >>> task.checkpoint is None, task.cost
        (True, ())
    """

    name: str
    key: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None  # checkpoint tasks write this file
    group: str | None = None  # result tasks return (arrays, attrs) for this store group
    cost: Cost = ()


@dataclass(frozen=True)
class Model:
    """A model of the study: its checkpoint, its key, and what the report needs to know of it.

    Examples:
        >>> Model(Path("ckpt/a-01.pt"), "01", {"role": "parent"}).checkpoint.name
        'a-01.pt'
    """

    checkpoint: Path
    key: str
    info: dict[str, Any]


@dataclass(frozen=True)
class Pair:
    """Two parents of one replicate and the models derived from them.

    Examples:
        >>> pair = Pair("diff-bs32-r1", "diff-bs32", "diff", "corresponding", 32, 32,
        ...             "bs32-i1042-d1042", "bs32-i1043-d1042", [1042, 1042], [1043, 1042], 1)
        >>> pair.cell, pair.finetuned
        ('diff-bs32', [])
    """

    name: str  # the cell's name, plus -r<replicate> for replicates after the first
    cell: str  # e.g. diff-bs32 or same-bs32-bs512: the same for every replicate
    init: str  # same | diff
    batches: str  # corresponding | mixed
    bs_a: int
    bs_b: int
    a: str
    b: str
    seeds_a: list[int]  # [init seed, data seed], shifted for the replicate
    seeds_b: list[int]
    replicate: int
    # {name, source, settings} of every fine-tuned model
    finetuned: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class StudyPlan:
    """Every task of a study in `workdir`, stage by stage, with its models and pairs.

    Examples:
        >>> from landscape.study.sections import TrainSection
        >>> train = TrainSection(batch_sizes=(32,), lrs=(0.1,))
        >>> cfg = StudyConfig("tiny", "mlp", {}, "digits", train)
        >>> plan = StudyPlan(cfg, Path("runs/tiny"), {}, {"train": 10, "val": 2, "test": 3})
        >>> plan.store.as_posix()
        'runs/tiny/study.h5'
    """

    cfg: StudyConfig
    workdir: Path
    arch_kwargs: dict[str, Any]
    sizes: dict[str, int]  # examples per split
    models: dict[str, Model] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)
    stages: list[tuple[str, list[Task]]] = field(default_factory=list)

    @property
    def store(self) -> Path:
        """The study's result store, `workdir/study.h5`."""
        return self.workdir / "study.h5"
