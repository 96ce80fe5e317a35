"""Running a planned OT-fusion study, stage by stage, in one process.

Every task not done yet runs (a checkpoint that exists with its snapshots, or a stored group whose
`key` matches, is done); the store ends with the study's description under `/study`. `landscape`
never imports `fusion`: the caller passes the fusion functions in (`Fuser`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from functools import cache
from typing import Any, Protocol

import torch
from torch import nn

from ... import progress
from ...data.datasets import Dataset, load_data
from ...data.selection import DataSpec, Selection
from ...data.split import Split, subsample
from ...geometry.barrier import signed_barrier
from ...io.checkpoint import load_checkpoint, save_checkpoint
from ...io.store import content_key, group_keys, write_result, write_results
from ...training.loop import TrainConfig, data_meta, init_model, train, train_meta
from ...training.metrics import evaluate, evaluate_ensemble
from ..settings import SEED_SHIFT
from .plan import WHOLE, Plan, Task, snapshot_key


class Fuser(Protocol):
    """The fusion functions an OT-fusion study needs (the `fusion` package provides them).

    Examples:
        >>> from types import SimpleNamespace
        >>> keep = SimpleNamespace(
        ...     align=lambda model, anchor, **kw: model,
        ...     fuse=lambda models, **kw: models[-1],
        ...     prune_units=lambda model, layer, fraction: model,
        ... )
        >>> keep.fuse([1, 2], method="vanilla")  # any object with these three functions
        2
    """

    def align(self, model: nn.Module, anchor: nn.Module, **kw: Any) -> nn.Module:
        """Move `model`'s units onto `anchor`'s (`fusion.align`).

        Args:
            model: the model to align.
            anchor: the model it is aligned to.
            **kw: the alignment's settings (method, mode, x, solver, reg, seed).

        Returns:
            The aligned model.
        """
        ...

    def fuse(self, models: list[nn.Module], **kw: Any) -> nn.Module:
        """Fuse `models` into one (`fusion.fuse`).

        Args:
            models: the models; the last is the anchor.
            **kw: the fusion's settings (method, weights, mode, x, solver, reg, seed).

        Returns:
            The fused model.
        """
        ...

    def prune_units(self, model: nn.Module, layer: str, fraction: float) -> nn.Module:
        """Remove a fraction of one layer's units (`fusion.prune_units`).

        Args:
            model: the dense model.
            layer: the linear or convolution layer's module name.
            fraction: the share of its units removed, those of smallest L1 norm.

        Returns:
            The pruned model.
        """
        ...


def todo(p: Plan) -> list[tuple[str, list[Task], list[Task]]]:
    """The tasks of a plan by stage, with those not done yet.

    Args:
        p: the plan.

    Returns:
        Every stage as (name, all its tasks, the tasks not done yet).

    Examples:
        >>> import tempfile
        >>> from landscape.study.otfusion.config import Ablation, OTStudyConfig, StudySettings
        >>> from landscape.study.otfusion.plan import plan
        >>> study = StudySettings("demo", "mlp", experiments=("ablation",))
        >>> cfg = OTStudyConfig(study, TrainConfig(epochs=1), ablation=Ablation(methods=()))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     [(stage, len(tasks), len(left)) for stage, tasks, left in todo(plan(cfg, tmp))]
        [('train', 2, 2), ('measure', 1, 1)]
    """
    done = group_keys(p.store) if p.store.exists() else {}

    def finished(t: Task) -> bool:
        if t.checkpoint is not None:
            return t.checkpoint.exists() and all(path.exists() for _, path in t.snapshots)
        return done.get(t.group) == t.key

    return [(stage, tasks, [t for t in tasks if not finished(t)]) for stage, tasks in p.stages()]


class Runner:
    """Runs the tasks of a plan with `fuser` on `device`; data is read on first use.

    Args:
        p: the plan.
        fuser: the fusion functions (the `fusion` package).
        device: where models are trained and evaluated.

    Examples:
        >>> from landscape.study.otfusion.config import Ablation, OTStudyConfig, StudySettings
        >>> from landscape.study.otfusion.plan import plan
        >>> study = StudySettings("demo", "mlp", ("ablation",))
        >>> cfg = OTStudyConfig(study, TrainConfig(epochs=2), ablation=Ablation(epochs=(1, 2)))
        >>> p = plan(cfg, "runs/demo")
        >>> runner = Runner(p, fuser=None)  # reads no data until a task needs it
        >>> sorted({t.action for t in p.tasks} - set(runner.actions))  # every task has its action
        []
    """

    def __init__(self, p: Plan, fuser: Fuser, device: torch.device | str = "cpu"):
        self.plan, self.fuser, self.device = p, fuser, torch.device(device)
        self.actions: dict[str, Callable[[Task], Any]] = {
            "train": self._train,
            "fuse": self._fuse,
            "finetune": self._finetune,
            "skill": self._skill,
            "widths": self._widths,
            "ensemble": self._ensemble,
            "ablation": self._ablation,
            "ablation_epochs": self._ablation_epochs,
            "ablation_methods": self._ablation_methods,
        }
        self.data = cache(self._data)

    def run(self) -> None:
        """Run every task not done yet; then describe the study in the store.

        A task's `LandscapeError` (bad data, a diverged training run, an impossible fusion) stops
        the run; what finished before it stays done.
        """
        stages = todo(self.plan)
        for i, (stage, _, tasks) in enumerate(stages):
            bar = progress.bar(
                total=len(tasks), desc=f"study {i + 1}/{len(stages)} {stage}", stage=True
            )
            try:
                for task in tasks:
                    out = self.actions[task.action](task)
                    if task.group is not None:
                        arrays, attrs = out
                        write_result(
                            self.plan.store, task.group, arrays, {**attrs, "key": task.key}
                        )
                    bar.update(1)
            finally:
                bar.close()
        self._describe()

    # ---- helpers ---------------------------------------------------------------------------------
    def _data(self, selection: Selection = WHOLE) -> Dataset:
        return load_data(DataSpec(self.plan.cfg.study.data, selection), device=self.device)

    def _load(self, key: str) -> nn.Module:
        return load_checkpoint(self.plan.models[key]["checkpoint"], self.device)[0]

    def _acc(self, model: nn.Module, split: Split | None = None) -> float:
        return evaluate(model, split if split is not None else self.data().test).acc

    def _x(self, settings: dict, selection: Selection = WHOLE) -> torch.Tensor:
        train_split = self.data(selection).train
        return subsample(
            train_split, settings["align_samples"], settings["seed"], "align_samples"
        ).x

    @staticmethod
    def _ot(settings: dict, x: torch.Tensor | None) -> dict:
        return {
            "mode": settings["mode"],
            "solver": settings["solver"],
            "reg": settings["reg"],
            "x": x if settings["mode"] == "acts" else None,
        }

    # ---- actions ---------------------------------------------------------------------------------
    def _train(self, task: Task) -> None:
        cfg, data = TrainConfig(**task.params["train"]), self.data(task.params["selection"])
        model = init_model(
            self.plan.cfg.study.arch, self.plan.arch_kwargs, task.params["init_seed"]
        ).to(self.device)
        snapshots = dict(task.snapshots)

        def snapshot(epoch: int, model: nn.Module) -> None:
            if epoch in snapshots:
                meta = {**data_meta(data), **asdict(cfg), "init_seed": task.params["init_seed"]}
                meta.update(epoch=epoch, snapshot_of=task.key, key=snapshot_key(task.key, epoch))
                save_checkpoint(model, snapshots[epoch], meta=meta)

        result = train(model, data, cfg, desc=task.name, on_epoch=snapshot)
        save_checkpoint(
            result.model,
            task.checkpoint,
            meta=train_meta(cfg, result, data, init_seed=task.params["init_seed"], key=task.key),
        )

    def _fuse(self, task: Task) -> None:
        s = task.params
        models = [self._load(k) for k in s["models"]]
        if s["method"] == "vanilla":
            fused = self.fuser.fuse(models, method="vanilla")
        else:
            fused = self.fuser.fuse(models, method="ot", **self._ot(s, self._x(s)))
        save_checkpoint(fused, task.checkpoint, meta={"key": task.key, "parents": s["models"], **s})

    def _finetune(self, task: Task) -> None:
        cfg, data = TrainConfig(**task.params["train"]), self.data()
        result = train(self._load(task.params["source"]), data, cfg, desc=task.name)
        save_checkpoint(
            result.model,
            task.checkpoint,
            meta=train_meta(cfg, result, data, finetuned_from=task.params["source"], key=task.key),
        )

    def _skill(self, task: Task) -> tuple[dict, dict]:
        """Return skill transfer's result: accuracies of A, B and their averages at every w_B.

        Global and special-label test accuracy of A, B, and their vanilla, OT and prediction
        averages at every proportion w_B; activations from A's own training examples (the paper's
        footnote 3).
        """
        s = task.params
        a, b = self._load(s["a"]), self._load(s["b"])
        test = self.data().test
        special = Split(test.x[test.y == s["special"]], test.y[test.y == s["special"]])
        x = self._x(s, s["selection"])
        curves: dict[str, list[float]] = {
            f"{m}_{w}": [] for m in ("vanilla", "ot", "ensemble") for w in ("acc", "special")
        }
        for w_b in s["proportions"]:
            weights = [1 - w_b, w_b]
            fused = {
                "vanilla": self.fuser.fuse([a, b], method="vanilla", weights=weights),
                "ot": self.fuser.fuse([a, b], method="ot", weights=weights, **self._ot(s, x)),
            }
            for method, model in fused.items():
                curves[f"{method}_acc"].append(self._acc(model, test))
                curves[f"{method}_special"].append(self._acc(model, special))
            curves["ensemble_acc"].append(evaluate_ensemble([a, b], test, weights=weights).acc)
            curves["ensemble_special"].append(
                evaluate_ensemble([a, b], special, weights=weights).acc
            )
        arrays = {"proportions": s["proportions"], **curves}
        attrs = {
            "a_acc": self._acc(a, test),
            "b_acc": self._acc(b, test),
            "a_special": self._acc(a, special),
            "b_special": self._acc(b, special),
            "special": s["special"],
            "test_n": len(test),
        }
        return arrays, attrs

    def _widths(self, task: Task) -> tuple[dict, dict]:
        """Return the widths result: accuracy after pruning `layer`, without and with fusion.

        Test accuracy of the model with `layer` pruned by every fraction, before and after
        OT-fusing the dense model into it (the pruned model is the anchor, so the fusion has its
        widths).
        """
        s = task.params
        dense = self._load(s["model"])
        x = self._x(s) if s["mode"] == "acts" else None
        total = sum(p.numel() for p in dense.parameters())
        pruned_acc, fused_acc, sparsity = [], [], []
        for fraction in s["fractions"]:
            pruned = self.fuser.prune_units(dense, s["layer"], fraction)
            fused = self.fuser.fuse(
                [dense, pruned],
                method="ot",
                weights=[1 - s["weight"], s["weight"]],
                **self._ot(s, x),
            )
            pruned_acc.append(self._acc(pruned))
            fused_acc.append(self._acc(fused))
            sparsity.append(1 - sum(p.numel() for p in pruned.parameters()) / total)
        return (
            {
                "fractions": s["fractions"],
                "pruned_acc": pruned_acc,
                "fused_acc": fused_acc,
                "sparsity": sparsity,
            },
            {"dense_acc": self._acc(dense), "layer": s["layer"]},
        )

    def _ensemble(self, task: Task) -> tuple[dict, dict]:
        s = task.params
        models = [self._load(k) for k in s["models"]]
        test = self.data().test
        attrs = {
            f"{name}_acc": self._acc(self._load(key), test) for name, key in s["fused"].items()
        }
        attrs.update(
            {
                "ensemble_acc": evaluate_ensemble(models, test).acc,
                "k": len(models),
                "test_n": len(test),
            }
        )
        return {"individual_acc": [self._acc(m, test) for m in models]}, attrs

    def _ablation(self, task: Task) -> tuple[dict, dict]:
        """Return the OT average and A aligned to B for every (mode, solver, reg, m) row."""
        s = task.params
        a, b = (self._load(k) for k in s["models"])
        test = self.data().test
        rows = []
        for row in s["rows"]:
            x = (
                subsample(self.data().train, row["samples"], s["seed"], "ablation samples").x
                if row["samples"]
                else None
            )
            ot = {"mode": row["mode"], "solver": row["solver"], "reg": row["reg"] or 0.01, "x": x}
            rows.append(
                {
                    **row,
                    "ot_acc": self._acc(self.fuser.fuse([a, b], method="ot", **ot), test),
                    "aligned_acc": self._acc(self.fuser.align(a, b, **ot), test),
                }
            )
        attrs = {
            "a_acc": self._acc(a, test),
            "b_acc": self._acc(b, test),
            "ensemble_acc": evaluate_ensemble([a, b], test).acc,
            "vanilla_acc": self._acc(self.fuser.fuse([a, b], method="vanilla"), test),
            "rows": json.dumps(rows, sort_keys=True),
            "test_n": len(test),
        }
        return {}, attrs

    def _ablation_epochs(self, task: Task) -> tuple[dict, dict]:
        """Return Table S1: A, B, their prediction ensemble, vanilla and OT average by epoch.

        OT fusion aligns activations on `samples` training examples, by exact OT.
        """
        s = task.params
        test = self.data().test
        x = subsample(self.data().train, s["samples"], s["seed"], "epoch_samples").x
        curves: dict[str, list[float]] = {
            k: [] for k in ("a_acc", "b_acc", "ensemble_acc", "vanilla_acc", "ot_acc")
        }
        for _, key_a, key_b in s["snapshots"]:
            a, b = self._load(key_a), self._load(key_b)
            fused = {
                "vanilla_acc": self.fuser.fuse([a, b], method="vanilla"),
                "ot_acc": self.fuser.fuse([a, b], method="ot", mode="acts", x=x),
            }
            curves["a_acc"].append(self._acc(a, test))
            curves["b_acc"].append(self._acc(b, test))
            curves["ensemble_acc"].append(evaluate_ensemble([a, b], test).acc)
            for name, model in fused.items():
                curves[name].append(self._acc(model, test))
        return {"epochs": [e for e, _, _ in s["snapshots"]], **curves}, {"test_n": len(test)}

    def _ablation_methods(self, task: Task) -> tuple[dict, dict]:
        """Return vanilla averaging and each alignment method in each mode, a row each.

        Each row: accuracy of the fused model (the midpoint of A aligned and B) and of A aligned,
        and the signed test loss and error barriers of the line from A aligned to B at its midpoint
        (`landscape.geometry.barrier.signed_barrier` over a = 0, 1/2, 1).
        """
        s = task.params
        a, b = (self._load(k) for k in s["models"])
        test = self.data().test
        x = subsample(self.data().train, s["samples"], s["seed"], "ablation samples").x
        b_eval = evaluate(b, test)
        rows = []
        for row in s["rows"]:
            if row["method"] == "vanilla":
                aligned, fused = a, self.fuser.fuse([a, b], method="vanilla")
            else:
                options = {
                    "method": row["method"],
                    "mode": row["mode"],
                    "x": x if row["mode"] == "acts" else None,
                    "seed": s["seed"],
                }
                aligned = self.fuser.align(a, b, **options)
                fused = self.fuser.fuse([a, b], **options)
            line = [evaluate(aligned, test), evaluate(fused, test), b_eval]
            alphas = [0.0, 0.5, 1.0]
            loss, _ = signed_barrier(alphas, [e.loss for e in line])
            error, _ = signed_barrier(alphas, [1 - e.acc for e in line])
            rows.append(
                {
                    **row,
                    "fused_acc": line[1].acc,
                    "aligned_acc": line[0].acc,
                    "loss_barrier": loss,
                    "error_barrier": error,
                }
            )
        attrs = {
            "a_acc": self._acc(a, test),
            "b_acc": b_eval.acc,
            "rows": json.dumps(rows, sort_keys=True),
            **({"samples": s["samples"]} if s["samples"] else {}),
            "test_n": len(test),
        }
        return {}, attrs

    def _describe(self) -> None:
        """Record the study under /study, so that the report needs nothing else."""
        cfg = self.plan.cfg
        config = json.loads(json.dumps(asdict(cfg), default=list))
        groups = {
            f"/study/models/{key}": (
                {},
                {
                    **{k: v if not isinstance(v, dict) else json.dumps(v) for k, v in info.items()},
                    "key": key,
                },
            )
            for key, info in self.plan.models.items()
        }
        groups["/study/config"] = (
            {},
            {
                "config": json.dumps(config, sort_keys=True),
                "name": cfg.name,
                "experiments": json.dumps(list(cfg.study.experiments)),
                "replicates": cfg.study.replicates,
                "seed_shift": SEED_SHIFT,
                "data_sizes": json.dumps(self._sizes()),
                "key": content_key(config),
            },
        )
        write_results(self.plan.store, groups, clear="/study")

    def _sizes(self) -> dict[str, int]:
        data = self.data()
        return {s: len(data.split(s)) for s in ("train", "val", "test")}
