"""Running a planned batch-size study: every task not done yet, stage by stage.

A task is done when its checkpoint exists or the store holds its group with its key. Under torchrun
the independent tasks of each stage are spread over the ranks and rank 0 writes the store, which
ends with the study's description under `/study`. `landscape` never imports `fusion`: the caller
passes the fusion functions in (`Fuser`); the measurements are `measuring.py`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from functools import cached_property
from typing import Any, Protocol

import torch
import torch.distributed as tdist
from torch import nn

from .. import dist, progress
from ..data.datasets import Dataset, load_data
from ..data.split import subsample
from ..io.checkpoint import save_checkpoint
from ..io.store import content_key, group_keys, write_result, write_results
from ..training.bn import reset_bn
from ..training.loop import init_model, train, train_meta
from .measuring import Measurer
from .settings import SEED_SHIFT
from .tasks import StudyPlan, Task

Stages = list[tuple[str, list[Task], list[Task]]]


class Fuser(Protocol):
    """The fusion functions a study needs (the `fusion` package provides them).

    Examples:
        >>> from types import SimpleNamespace
        >>> average = SimpleNamespace(align=lambda model, anchor, **kw: model,
        ...                           fuse=lambda models, **kw: models[0])
        >>> average.fuse([torch.nn.Linear(2, 1)]).out_features
        1
    """

    def align(self, model: nn.Module, anchor: nn.Module, **kw: Any) -> nn.Module:
        """`model` with its units permuted to match `anchor`'s.

        Args:
            model: the model to align (A).
            anchor: the model it is aligned to (B).
            **kw: the alignment's settings (method, mode, activations, solver, ...).

        Returns:
            A aligned to B.
        """
        ...

    def fuse(self, models: list[nn.Module], **kw: Any) -> nn.Module:
        """One model fusing `models`.

        Args:
            models: the models, the last one the anchor.
            **kw: the fusion's settings (method, iterations, mode, activations, ...).

        Returns:
            The fused model.
        """
        ...


def todo(p: StudyPlan) -> Stages:
    """Every stage of plan `p` as (name, all its tasks, the tasks not done yet).

    Args:
        p: the plan.

    Returns:
        One entry per stage; a task is done when its checkpoint exists or the store holds its group
        with its key.

    Examples:
        >>> import tempfile
        >>> from landscape.data.datasets import data_shape
        >>> from landscape.study import presets
        >>> from landscape.study.config import load_config
        >>> from landscape.study.plan import plan_study
        >>> cfg = load_config(presets.path("quick"))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     stages = todo(plan_study(cfg, tmp, data_shape(cfg.data)))
        >>> [(stage, len(tasks), len(left)) for stage, tasks, left in stages][0]
        ('train parents', 36, 36)
    """
    done = group_keys(p.store)

    def finished(t: Task) -> bool:
        return t.checkpoint.exists() if t.checkpoint is not None else done.get(t.group) == t.key

    return [(stage, tasks, [t for t in tasks if not finished(t)]) for stage, tasks in p.stages]


class StudyRunner:
    """Runs the tasks of a plan with `fuser` on `device`; the data is read on first use.

    Examples:
        >>> from types import SimpleNamespace
        >>> from landscape.data.datasets import data_shape
        >>> from landscape.study import presets
        >>> from landscape.study.config import load_config
        >>> from landscape.study.plan import plan_study
        >>> cfg = load_config(presets.path("quick"))
        >>> fuser = SimpleNamespace(align=None, fuse=None)  # the fusion package in a real run
        >>> runner = StudyRunner(plan_study(cfg, "runs/quick", data_shape(cfg.data)), fuser)
        >>> runner.device, runner.plan.stages[0][1][0].action
        (device(type='cpu'), 'train')
    """

    def __init__(self, plan: StudyPlan, fuser: Fuser, device: torch.device | str = "cpu"):
        self.plan, self.fuser, self.device = plan, fuser, torch.device(device)
        self.cfg = plan.cfg
        self._measurer = Measurer(plan, self.device, lambda: self.data)
        self._actions: dict[str, Callable[[Task], Any]] = {
            "train": self._train,
            "fuse": self._fuse,
            "finetune": self._finetune,
            **self._measurer.actions(),
        }

    @cached_property
    def data(self) -> Dataset:
        """The study's data set, read on first use (planning needs only its shape)."""
        return load_data(self.cfg.data, device=self.device)

    def run(self) -> None:
        """Run every task not done yet, stage by stage; then describe the study in the store."""
        stages = todo(self.plan)
        for i, (stage, _, tasks) in enumerate(stages):
            bar = progress.bar(
                total=len(tasks), desc=f"study {i + 1}/{len(stages)} {stage}", stage=True
            )
            try:
                self._run_stage(tasks, bar)
            finally:
                bar.close()
        self._describe()

    def execute(self, task: Task) -> Any:
        """Do one task: write its checkpoint, or compute its result.

        Args:
            task: a task of the plan whose inputs (the checkpoints it reads) exist.

        Returns:
            (arrays, attrs) of its store group for a result task, None for a checkpoint task.
        """
        return self._actions[task.action](task)

    def _run_stage(self, tasks: list[Task], bar: Any) -> None:
        """Run `tasks` spread over the ranks, rank 0 writing every result to the store."""
        rank, size = dist.launched_rank(), dist.launched_world_size()
        for start in range(0, len(tasks), size):
            batch = tasks[start : start + size]
            mine = batch[rank] if rank < len(batch) else None
            with dist.local():
                out = self.execute(mine) if mine is not None else None
            results = [out]
            if size > 1:
                results = [None] * size
                tdist.all_gather_object(results, out)
            for task, result in zip(batch, results):
                if task.group is not None and rank == 0:
                    arrays, attrs = result
                    write_result(self.plan.store, task.group, arrays, {**attrs, "key": task.key})
                bar.update(1)

    # ---- checkpoints -----------------------------------------------------------------------------
    def _train(self, task: Task) -> None:
        """Train a parent from its init seed."""
        s, cfg = task.params, task.params["train"]
        model = init_model(self.cfg.arch, self.plan.arch_kwargs, s["init_seed"]).to(self.device)
        result = train(model, self.data, cfg, desc=s["model"])
        meta = train_meta(
            cfg, result, self.data, init_seed=s["init_seed"], role="parent", key=task.key
        )
        save_checkpoint(result.model, task.checkpoint, meta=meta)

    def _fuse(self, task: Task) -> None:
        """The vanilla average, A aligned to B, or the OT (or Re-Basin) fusion of a pair."""
        kind, f, (a_name, b_name) = (task.params[k] for k in ("kind", "fusion", "parents"))
        a, b = self._measurer.load(a_name), self._measurer.load(b_name)
        x = subsample(self.data.train, f.align_samples, f.seed, "[fusion] align_samples").x
        ot_kw = {"mode": f.mode, "x": x, "solver": f.solver, "reg": f.reg}
        if f.method == "rebasin":  # Git Re-Basin: assignment, seeded group order
            ot_kw = {"mode": f.mode, "x": x, "seed": f.seed}
        if kind == "vanilla":
            model = self.fuser.fuse([a, b], method="vanilla")
        elif kind == "aligned":
            model = self.fuser.align(a, b, method=f.method, **ot_kw)
        else:
            model = self.fuser.fuse([a, b], method=f.method, iterations=f.iterations, **ot_kw)
        if f.reset_bn_samples and kind != "aligned":
            reset_bn(
                model,
                subsample(self.data.train, f.reset_bn_samples, f.seed, "[fusion] reset_bn_samples"),
            )
        meta = {
            "role": kind,
            "pair": task.params["pair"],
            "key": task.key,
            "parents": [a_name, b_name],
        }
        save_checkpoint(model, task.checkpoint, meta={**meta, **asdict(f)})

    def _finetune(self, task: Task) -> None:
        """Fine-tune a fused model."""
        source, cfg = task.params["source"], task.params["train"]
        result = train(self._measurer.load(source), self.data, cfg, desc=task.params["model"])
        meta = train_meta(
            cfg, result, self.data, role="finetuned", finetuned_from=source, key=task.key
        )
        save_checkpoint(result.model, task.checkpoint, meta=meta)

    # ---- the description -------------------------------------------------------------------------
    def _describe(self) -> None:
        """Record the study in the store under /study, so that the report needs nothing else.

        The record (docs/conventions.md) holds its config, every model (role, replicate, seeds,
        fine-tuning settings) and every pair.
        """
        if dist.launched_rank() != 0:
            return
        groups = {
            f"/study/models/{name}": (
                {},
                {"checkpoint": str(model.checkpoint), "key": model.key, **model.info},
            )
            for name, model in self.plan.models.items()
        }
        for p in self.plan.pairs:
            attrs = {**asdict(p), "finetuned": json.dumps(p.finetuned, sort_keys=True)}
            groups[f"/study/pairs/{p.name}"] = ({}, {**attrs, "key": content_key(attrs)})
        config = self.cfg.record()
        sizes = {s: len(self.data.split(s)) for s in ("train", "val", "test")}
        groups["/study/config"] = (
            {},
            {
                "config": json.dumps(config, sort_keys=True),
                "name": self.cfg.name,
                "replicates": self.cfg.replicates,
                "seed_shift": SEED_SHIFT,
                "compare": self.cfg.compare,
                "data_sizes": json.dumps(sizes),
                "key": content_key(config),
            },
        )
        # a smaller study leaves no stale pairs behind
        write_results(self.plan.store, groups, clear="/study")
