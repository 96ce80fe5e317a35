"""The jobs of an OT-fusion study, planned from its settings alone (no data is read).

Every model to train and every result to store, with the key hashed from everything it depends on
and the work it costs at most.

Models are numbered: model k of replicate r starts from init seed k and draws its data order with
data seed k, both shifted by 1000·r. A checkpoint is named by its key only, so a model two
experiments share (the first models of the ensemble are the ablation's pair and the dense model of
the widths experiment) is trained once. Skill transfer: A is model 1 (its "same init" B starts from
A's init seed), B model 2; the split is drawn with seed 0 shifted by 1000·r. A training task can
also save its model after some epochs (`Task.snapshots`, the ablation's Table S1), each under its
own key (`snapshot_key`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ...data.datasets import data_shape
from ...data.selection import Selection, skill_transfer
from ...errors import LandscapeError
from ...io.store import content_key
from ...models.zoo import arch_kwargs_for, build_model
from ...training.loop import TrainConfig
from ..settings import shifted
from .config import OTStudyConfig

WHOLE = Selection()  # every example
EVAL_BATCH = 1024  # the batch size of evaluations (forward passes only)


@dataclass(frozen=True)
class Task:
    """One job: a checkpoint to write or a result group to store.

    `action` names what does it, `params` holds everything it needs; `cost` lists (unit, batch
    size, examples) with unit train, forward or hvp; `snapshots` lists (epoch, checkpoint) where a
    training task also saves its model after that epoch.

    Examples:
        >>> task = Task("measure", "ablation r0", "k1", "ablation", group="/ablation/r0")
        >>> task.checkpoint is None, task.snapshots
        (True, ())
    """

    stage: str
    name: str
    key: str
    action: str
    params: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    group: str | None = None
    cost: tuple[tuple[str, int, int], ...] = ()
    snapshots: tuple[tuple[int, Path], ...] = ()


@dataclass
class Plan:
    """Every task of the study in stage order, and the models (key -> checkpoint and seeds).

    Examples:
        >>> from landscape.study.otfusion.config import Ablation, OTStudyConfig, StudySettings
        >>> study = StudySettings("demo", "mlp", experiments=("ablation",))
        >>> cfg = OTStudyConfig(study, TrainConfig(epochs=1), ablation=Ablation(methods=()))
        >>> p = plan(cfg, "runs/demo")
        >>> [stage for stage, _ in p.stages()], p.store.as_posix()
        (['train', 'measure'], 'runs/demo/study.h5')
    """

    cfg: OTStudyConfig
    workdir: Path
    arch_kwargs: dict
    sizes: dict[str, int]
    tasks: list[Task] = field(default_factory=list)
    models: dict[str, dict] = field(default_factory=dict)

    @property
    def store(self) -> Path:
        """The study's result store, `study.h5` in the work folder."""
        return self.workdir / "study.h5"

    def stages(self) -> list[tuple[str, list[Task]]]:
        """The tasks grouped by stage.

        Returns:
            (stage, its tasks) in the order they run.
        """
        order = list(dict.fromkeys(t.stage for t in self.tasks))
        return [(s, [t for t in self.tasks if t.stage == s]) for s in order]


def _kept(n: int, classes: int, s: Selection) -> int:
    """Return the examples a selection is expected to keep of `n` (classes taken as balanced)."""
    pool = (len(s.labels) if s.labels is not None else classes) - len(set(s.exclude_labels))
    return max(1, round(n * (pool * s.fraction + len(s.plus_labels)) / classes))


def plan(cfg: OTStudyConfig, workdir: str | Path) -> Plan:
    """Every task of the study `cfg` in `workdir` (pure: nothing is read or written).

    A `[widths]` layer that the model does not have is a `LandscapeError`, checked on the model
    built (not trained).

    Args:
        cfg: the study's settings.
        workdir: where checkpoints and `study.h5` go.

    Returns:
        The plan.

    Examples:
        >>> from landscape.study.otfusion.config import Ablation, OTStudyConfig, StudySettings
        >>> study = StudySettings("demo", "mlp", experiments=("ablation",))
        >>> cfg = OTStudyConfig(study, TrainConfig(epochs=2), ablation=Ablation(epochs=(1, 2)))
        >>> p = plan(cfg, "runs/demo")
        >>> [t.action for t in p.tasks]
        ['train', 'train', 'ablation', 'ablation_epochs', 'ablation_methods']
        >>> [e for e, _ in p.tasks[0].snapshots]
        [1, 2]
    """
    shape = data_shape(cfg.study.data)
    kwargs = arch_kwargs_for(
        cfg.study.arch, shape.input_shape, shape.num_classes, **cfg.study.arch_kwargs
    )
    if cfg.widths is not None:
        _check_layers(cfg.study.arch, kwargs, cfg.widths.layers)
    p = Plan(cfg, Path(workdir), kwargs, {**shape.sizes, "classes": shape.num_classes})
    builders = {
        "skill-transfer": _skill,
        "widths": _widths,
        "ensemble": _ensemble,
        "ablation": _ablation,
    }
    for r in range(cfg.study.replicates):
        for kind in cfg.study.experiments:
            builders[kind](p, r)
    # training first (every experiment's), then fusion, fine-tuning and measurement
    rank = {"train": 0, "fuse": 1, "fine-tune": 2, "measure": 3}
    p.tasks.sort(key=lambda t: rank[t.stage])
    return p


def _check_layers(arch: str, kwargs: dict, layers: tuple[str, ...]) -> None:
    """Check that every layer to prune is a linear or convolution layer of the (untrained) model.

    Raises:
        LandscapeError: naming the first layer the model does not have.
    """
    from torch import nn

    found = {
        n
        for n, m in build_model(arch, kwargs).named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
    }
    missing = [layer for layer in layers if layer not in found]
    if missing:
        raise LandscapeError(
            f"[widths] layers: the model has no linear or convolution layer {missing[0]!r}; it has "
            f"{', '.join(sorted(found))}"
        )


def _model(
    p: Plan,
    k: int,
    r: int,
    selection: Selection | None = None,
    init: int | None = None,
    epochs: int | None = None,
) -> str:
    """Return the checkpoint key of model k of replicate r, planning its training once.

    The init seed is `init` instead of k, and the length `epochs` instead of [train] epochs, when
    given.
    """
    cfg, selection = p.cfg, selection or WHOLE
    train = TrainConfig(
        **{**asdict(cfg.train), "data_seed": shifted(k, r), "epochs": epochs or cfg.train.epochs}
    )
    init_seed = shifted(k if init is None else init, r)
    key = content_key(
        "model",
        cfg.study.arch,
        p.arch_kwargs,
        cfg.study.data,
        asdict(train),
        init_seed,
        selection.record(),
    )
    if key not in p.models:
        path = p.workdir / "checkpoints" / f"{key}.pt"
        n = _kept(p.sizes["train"], p.sizes["classes"], selection)
        p.models[key] = {
            "checkpoint": str(path),
            "init_seed": init_seed,
            "data_seed": train.data_seed,
            "selection": selection.record(),
            "replicate": r,
        }
        p.tasks.append(
            Task(
                "train",
                f"train model {k}{_tag(selection)} r{r}"
                + (f" (model {init}'s init)" if init is not None and init != k else "")
                + (f" ({train.epochs} epochs)" if train.epochs != cfg.train.epochs else ""),
                key,
                "train",
                {"init_seed": init_seed, "train": asdict(train), "selection": selection},
                checkpoint=path,
                cost=(
                    ("train", train.batch_size, train.epochs * n),
                    ("forward", EVAL_BATCH, train.epochs * max(1, n // 9)),
                ),
            )
        )
    return key


def snapshot_key(key: str, epoch: int) -> str:
    """The name of model `key`'s checkpoint after epoch `epoch` of its training.

    Args:
        key: the trained model's key.
        epoch: the epoch (from 1).

    Returns:
        The snapshot's key (also its checkpoint's file name).

    Examples:
        >>> snapshot_key("model-3f2a", 5)
        'model-3f2a-epoch5'
    """
    return f"{key}-epoch{epoch}"


def _snapshots(p: Plan, key: str, epochs: tuple[int, ...]) -> dict[int, str]:
    """Return the snapshots' keys by epoch, having model `key`'s training save them."""
    i = next(i for i, t in enumerate(p.tasks) if t.key == key)
    saved = dict(p.tasks[i].snapshots)
    for e in epochs:
        saved[e] = p.workdir / "checkpoints" / f"{snapshot_key(key, e)}.pt"
        p.models[snapshot_key(key, e)] = {
            "checkpoint": str(saved[e]),
            "epoch": e,
            "snapshot_of": key,
            "replicate": p.models[key]["replicate"],
        }
    snapshots = tuple(sorted(saved.items()))
    name = p.tasks[i].name.split(", saved after epochs")[0]
    name += ", saved after epochs " + ", ".join(str(e) for e, _ in snapshots)
    p.tasks[i] = replace(p.tasks[i], snapshots=snapshots, name=name)
    return {e: snapshot_key(key, e) for e in epochs}


def _tag(s: Selection) -> str:
    """Return the model's part of the skill-transfer split, for its task's name."""
    if s.whole:
        return ""
    return " (skill-transfer A)" if s.plus_labels else " (skill-transfer B)"


def _result(
    p: Plan,
    stage: str,
    name: str,
    action: str,
    group: str,
    params: dict[str, Any],
    forwards: int,
    *depends: Any,
) -> None:
    """Add the task that stores result group `group`, keyed by `depends` and `params`."""
    key = content_key(action, group, depends, {k: v for k, v in params.items() if k != "selection"})
    p.tasks.append(
        Task(
            stage, name, key, action, params, group=group, cost=(("forward", EVAL_BATCH, forwards),)
        )
    )


def _fusion(settings: Any, seed: int) -> dict[str, Any]:
    """Return the fusion settings of an experiment's section, with `seed`."""
    return {
        "mode": settings.mode,
        "align_samples": settings.align_samples,
        "solver": settings.solver,
        "reg": settings.reg,
        "seed": seed,
    }


def _skill(p: Plan, r: int) -> None:
    """Skill transfer: A and B of replicate r, and a result per initialisation."""
    s = p.cfg.skill_transfer
    split_seed = shifted(0, r)
    sel_a, sel_b = (
        skill_transfer(part, s.special_label, s.share, split_seed) for part in ("A", "B")
    )
    for init in s.inits:
        a = _model(p, 1, r, sel_a)
        b = _model(p, 2, r, sel_b, init=1 if init == "same" else None)
        params = {
            "a": a,
            "b": b,
            "proportions": list(s.proportions),
            "special": s.special_label,
            "selection": sel_a,
            **_fusion(s, shifted(0, r)),
        }
        evals = (2 + 3 * len(s.proportions)) * p.sizes["test"] + 2 * len(
            s.proportions
        ) * s.align_samples
        _result(
            p,
            "measure",
            f"skill transfer {init} init r{r}",
            "skill",
            f"/skill-transfer/{init}-r{r}",
            params,
            evals,
            p.models[a],
            p.models[b],
            {"a": a, "b": b},
            r,
        )


def _widths(p: Plan, r: int) -> None:
    """Different widths: the dense model of replicate r, and a result per layer pruned."""
    w = p.cfg.widths
    dense = _model(p, 1, r)
    for layer in w.layers:
        params = {
            "model": dense,
            "layer": layer,
            "fractions": list(w.fractions),
            "weight": w.weight,
            **_fusion(w, shifted(0, r)),
        }
        _result(
            p,
            "measure",
            f"prune and fuse {layer} r{r}",
            "widths",
            f"/widths/{layer}-r{r}",
            params,
            (1 + 2 * len(w.fractions)) * p.sizes["test"],
            dense,
            r,
        )


def _ensemble(p: Plan, r: int) -> None:
    """Ensemble replacement: max(K) models, their fusions and fine-tunings, a result per K."""
    e = p.cfg.ensemble
    keys = [_model(p, k, r) for k in range(1, max(e.models) + 1)]
    for k in e.models:
        fused = {}
        for method in ("vanilla", "ot"):
            params = {"models": keys[:k], "method": method, **_fusion(e, shifted(0, r))}
            key = content_key("fused", keys[:k], params)
            path = p.workdir / "checkpoints" / f"{key}.pt"
            p.tasks.append(
                Task(
                    "fuse",
                    f"{method} average of {k} models r{r}",
                    key,
                    "fuse",
                    params,
                    checkpoint=path,
                    cost=(("forward", EVAL_BATCH, k * e.align_samples),) if method == "ot" else (),
                )
            )
            fused[method] = key
            p.models[key] = {"checkpoint": str(path), "role": method, "k": k, "replicate": r}
            if e.finetune_epochs:
                train = TrainConfig(
                    **{
                        **asdict(p.cfg.train),
                        "epochs": e.finetune_epochs,
                        "lr": e.finetune_lr or p.cfg.train.lr,
                        "data_seed": shifted(0, r),
                    }
                )
                ft_key = content_key("finetuned", key, asdict(train))
                ft_path = p.workdir / "checkpoints" / f"{ft_key}.pt"
                p.tasks.append(
                    Task(
                        "fine-tune",
                        f"fine-tune {method} average of {k} models r{r}",
                        ft_key,
                        "finetune",
                        {"source": key, "train": asdict(train)},
                        checkpoint=ft_path,
                        cost=(("train", train.batch_size, train.epochs * p.sizes["train"]),),
                    )
                )
                fused[f"{method}_ft"] = ft_key
                p.models[ft_key] = {
                    "checkpoint": str(ft_path),
                    "role": f"{method}_ft",
                    "k": k,
                    "replicate": r,
                }
        params = {"models": keys[:k], "fused": fused}
        _result(
            p,
            "measure",
            f"evaluate {k} models r{r}",
            "ensemble",
            f"/ensemble/k{k}-r{r}",
            params,
            (2 * k + len(fused)) * p.sizes["test"],
            keys[:k],
            fused,
            r,
        )


def _ablation(p: Plan, r: int) -> None:
    """Ablations: models 1 and 2 of replicate r, and the results of each table."""
    a = p.cfg.ablation
    keys = [_model(p, k, r) for k in (1, 2)]
    rows = []
    for mode in a.modes:
        for solver in a.solvers:
            for reg in a.regs if solver == "sinkhorn" else (None,):
                rows += [
                    {"mode": mode, "solver": solver, "reg": reg, "samples": m}
                    for m in (a.samples if mode == "acts" else (None,))
                ]
    params = {"models": keys, "rows": rows, "seed": shifted(0, r)}
    _result(
        p,
        "measure",
        f"ablation r{r}",
        "ablation",
        f"/ablation/r{r}",
        params,
        (4 + 2 * len(rows)) * p.sizes["test"],
        keys,
        r,
    )
    if a.epochs:
        _epochs(p, r)
    if a.methods:
        _methods(p, r, keys)


def _epochs(p: Plan, r: int) -> None:
    """Table S1: models 1 and 2 saved after each listed epoch of one training run, fused at each.

    The run lasts [train] epochs when the list ends earlier, so that it is the ablation's own pair.
    """
    a = p.cfg.ablation
    length = max(a.epochs[-1], p.cfg.train.epochs)
    trained = [_model(p, k, r, epochs=length) for k in (1, 2)]
    saved = [_snapshots(p, key, a.epochs) for key in trained]
    snapshots = [[e, saved[0][e], saved[1][e]] for e in a.epochs]
    params = {
        "snapshots": snapshots,
        "samples": a.epoch_samples,
        "seed": shifted(0, r),
    }
    _result(
        p,
        "measure",
        f"fusion after each epoch r{r}",
        "ablation_epochs",
        f"/ablation/epochs-r{r}",
        params,
        len(a.epochs) * (5 * p.sizes["test"] + 2 * a.epoch_samples),
        trained,
        r,
    )


def _methods(p: Plan, r: int, keys: list[str]) -> None:
    """Vanilla averaging and each alignment method in each mode, as one result."""
    a = p.cfg.ablation
    rows = [{"method": "vanilla", "mode": None}] + [
        {"method": method, "mode": mode} for method in a.methods for mode in a.modes
    ]
    params = {
        "models": keys,
        "rows": rows,
        "samples": max(a.samples, default=None),
        "seed": shifted(0, r),
    }
    _result(
        p,
        "measure",
        f"alignment methods r{r}",
        "ablation_methods",
        f"/ablation/methods-r{r}",
        params,
        (2 + 2 * len(rows)) * p.sizes["test"],
        keys,
        r,
    )
