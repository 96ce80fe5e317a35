"""The jobs of a batch-size study, planned from its settings alone (no data or model is read).

train parents -> align / fuse (vanilla, OT) -> fine-tune -> measure (`measures.py`). Every task has
a key hashed from everything it depends on; a checkpoint's file name and a stored group's `key`
attribute carry it, so a rerun skips what is done, a killed run resumes, and a changed setting
recomputes only what depends on it. Replicate r of the study is the same study with every seed
shifted by `SEED_SHIFT * r` (parents' init and data seeds, fusion, fine-tuning and measurement
seeds); replicate 0 is unshifted, so adding replicates adds tasks and reuses the rest.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..data.datasets import DataShape
from ..io.store import content_key
from ..models.zoo import arch_kwargs_for
from ..training.loop import TrainConfig
from .config import StudyConfig
from .measures import model_measures, pair_measures
from .pairs import PairSpec
from .sections import FUSED
from .settings import shifted
from .tasks import EVAL_BATCH, Cost, Model, Pair, StudyPlan, Task


def plan_study(cfg: StudyConfig, workdir: str | Path, shape: DataShape) -> StudyPlan:
    """Every task of the study `cfg` in `workdir`, in stage order (pure: nothing is read).

    Args:
        cfg: the study's settings.
        workdir: where checkpoints and `study.h5` go.
        shape: the data's input shape, classes and split sizes (`data.datasets.data_shape`).

    Returns:
        The plan: stages "train parents", "fuse", "fine-tune" and "measure", each with its tasks.

    Examples:
        >>> from landscape.data.datasets import data_shape
        >>> from landscape.study import presets
        >>> from landscape.study.config import load_config
        >>> cfg = load_config(presets.path("quick"))
        >>> plan = plan_study(cfg, "runs/quick", data_shape(cfg.data))
        >>> [(stage, len(tasks)) for stage, tasks in plan.stages]
        [('train parents', 36), ('fuse', 120), ('fine-tune', 48), ('measure', 755)]
    """
    kwargs = arch_kwargs_for(cfg.arch, shape.input_shape, shape.num_classes, **cfg.arch_kwargs)
    p = StudyPlan(cfg, Path(workdir), kwargs, dict(shape.sizes))
    p.pairs.extend(_pair(p, spec, r) for r in range(cfg.replicates) for spec in cfg.pairs)
    parents = [_train_task(p, name) for name in sorted({n for q in p.pairs for n in (q.a, q.b)})]
    fused, tuned = [], []
    for pair in p.pairs:
        fused += _fusion_tasks(p, pair)
        tuned += _finetune_tasks(p, pair)
    measures = [t for name in p.models for t in model_measures(p, name)]
    measures += [t for pair in p.pairs for t in pair_measures(p, pair)]
    p.stages.extend(
        [("train parents", parents), ("fuse", fused), ("fine-tune", tuned), ("measure", measures)]
    )
    return p


def _checkpoint(p: StudyPlan, name: str, key: str) -> Path:
    """Where model `name` with key `key` is saved.

    Returns:
        `workdir/checkpoints/<name>-<key>.pt`.
    """
    return p.workdir / "checkpoints" / f"{name}-{key}.pt"


def _pair(p: StudyPlan, spec: PairSpec, replicate: int) -> Pair:
    """Pair `spec` in replicate `replicate`, its parents planned.

    Returns:
        The pair, its seeds shifted, with the settings of its fine-tuning runs.
    """
    seeds = [
        [shifted(q.init_seed, replicate), shifted(q.data_seed, replicate)] for q in (spec.a, spec.b)
    ]
    a, b = (_parent(p, q.batch_size, *s, replicate) for q, s in zip((spec.a, spec.b), seeds))
    name = spec.name + (f"-r{replicate}" if replicate else "")
    finetuned = [
        {"name": f"{name}.{kind}-ft{train.batch_size}", "source": kind, "settings": asdict(train)}
        for kind in FUSED
        for train in p.cfg.finetunes(spec, kind, replicate)
    ]
    return Pair(
        name,
        spec.name,
        spec.init,
        spec.batches,
        spec.a.batch_size,
        spec.b.batch_size,
        a,
        b,
        seeds[0],
        seeds[1],
        replicate,
        finetuned,
    )


def _parent(p: StudyPlan, bs: int, init_seed: int, data_seed: int, replicate: int) -> str:
    """Plan the parent trained with batch size `bs` from these (shifted) seeds.

    Returns:
        The parent's name.
    """
    cfg = p.cfg
    name = f"bs{bs}-i{init_seed}-d{data_seed}"
    train = cfg.train_config(bs, data_seed)
    key = content_key("parent", cfg.arch, p.arch_kwargs, cfg.data, asdict(train), init_seed)
    info = {
        "role": "parent",
        "replicate": replicate,
        "batch_size": bs,
        "init_seed": init_seed,
        "data_seed": data_seed,
        "lr": train.lr,
        "keep": train.keep,
    }
    p.models.setdefault(name, Model(_checkpoint(p, name, key), key, info))
    return name


def _derived(p: StudyPlan, name: str, info: dict[str, Any], *parts: Any) -> Model:
    """Plan model `name`, derived from other models.

    Returns:
        The model; its key hashes `name` and `parts`.
    """
    key = content_key(name, *parts)
    p.models[name] = Model(_checkpoint(p, name, key), key, info)
    return p.models[name]


def _epoch_cost(p: StudyPlan, train: TrainConfig) -> Cost:
    """The most that training with `train` costs.

    Returns:
        Every epoch's training examples and validation forward passes.
    """
    return (
        ("train", train.batch_size, train.epochs * p.sizes["train"]),
        ("forward", EVAL_BATCH, train.epochs * p.sizes["val"]),
    )


def _train_task(p: StudyPlan, name: str) -> Task:
    """Train parent `name`.

    Returns:
        The task.
    """
    model = p.models[name]
    train = p.cfg.train_config(model.info["batch_size"], model.info["data_seed"])
    return Task(
        f"train {name}",
        model.key,
        "train",
        {"model": name, "init_seed": model.info["init_seed"], "train": train},
        checkpoint=model.checkpoint,
        cost=_epoch_cost(p, train),
    )


def _fusion_tasks(p: StudyPlan, pair: Pair) -> list[Task]:
    """Fuse `pair`.

    Returns:
        The tasks of its vanilla average, A aligned to B, and its OT fusion.
    """
    fusion = replace(p.cfg.fusion, seed=shifted(p.cfg.fusion.seed, pair.replicate))
    settings = asdict(fusion)
    parents = [p.models[pair.a].key, p.models[pair.b].key]
    forwards = 2 * fusion.align_samples + fusion.reset_bn_samples
    tasks = []
    for kind in ("vanilla", "aligned", "ot"):
        name = f"{pair.name}.{kind}"
        info = {"role": kind, "pair": pair.name, "replicate": pair.replicate}
        model = _derived(p, name, info, kind, parents, settings if kind != "vanilla" else {})
        tasks.append(
            Task(
                f"{kind} {pair.name}",
                model.key,
                "fuse",
                {
                    "model": name,
                    "kind": kind,
                    "pair": pair.name,
                    "parents": [pair.a, pair.b],
                    "fusion": fusion,
                },
                checkpoint=model.checkpoint,
                cost=() if kind == "vanilla" else (("forward", EVAL_BATCH, forwards),),
            )
        )
    return tasks


def _finetune_tasks(p: StudyPlan, pair: Pair) -> list[Task]:
    """Fine-tune the fused models of `pair`.

    The seed study's Table 6 fine-tunes per pair and model, possibly at several batch sizes.

    Returns:
        One task per fine-tuning run of each fused model.
    """
    tasks = []
    for ft in pair.finetuned:
        source, name = f"{pair.name}.{ft['source']}", ft["name"]
        train = TrainConfig(**ft["settings"])
        info = {
            "role": "finetuned",
            "pair": pair.name,
            "replicate": pair.replicate,
            "source": ft["source"],
            **ft["settings"],
        }
        model = _derived(p, name, info, p.models[source].key, ft["settings"])
        tasks.append(
            Task(
                f"fine-tune {name}",
                model.key,
                "finetune",
                {"model": name, "source": source, "train": train},
                checkpoint=model.checkpoint,
                cost=_epoch_cost(p, train),
            )
        )
    return tasks
