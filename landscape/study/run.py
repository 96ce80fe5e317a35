"""The batch-size comparison study of the seed paper as a cached, resumable pipeline.

train parents -> align / fuse (vanilla, OT) -> fine-tune -> measure (accuracy, loss, top eigenvalue,
trace, ESD, barriers pre/post alignment, contours). Every job has a key hashed from everything it
depends on; a checkpoint's file name and a stored group's `key` attribute carry it, so a rerun skips
what is done, a killed run resumes, and a changed setting recomputes only what depends on it.
Replicate r of the study is the same study with every seed shifted by `SEED_SHIFT * r` (parents'
init and data seeds, fusion, fine-tuning and measurement seeds); replicate 0 is unshifted, so adding
replicates adds jobs and reuses the rest. Independent jobs of a stage are spread over the ranks of a
torchrun launch. `landscape` never imports `fusion`: the caller passes the fusion functions in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as tdist
from torch import nn

from .. import dist, progress
from ..curvature.eigen import top_eigenvalues
from ..curvature.results import SuiteResult
from ..curvature.stationarity import point_state
from ..curvature.suite import BLOCK, TRACE_RSE, curvature_suite
from ..curvature.trace import hessian_trace
from ..data.datasets import Dataset, data_shape, load_data
from ..data.split import subsample
from ..geometry.barrier import interpolation_curve
from ..geometry.sharpness import measure_sharpness
from ..geometry.surface import compute_surface, plane_surface, random_surface
from ..io.checkpoint import file_hash, load_checkpoint, save_checkpoint
from ..io.store import content_key, group_keys, result_arrays, write_result, write_results
from ..models.zoo import arch_kwargs_for
from ..training.bn import reset_bn
from ..training.loop import TrainConfig, init_model, train, train_meta
from ..training.metrics import evaluate, evaluate_ensemble
from .config import FUSED, PairSpec, StudyConfig
from .settings import SEED_SHIFT, shifted

EVAL_BATCH = 1024  # the batch size of `evaluate` (forward passes only)


class Fuser(Protocol):
    """The fusion functions a study needs (the `fusion` package provides them)."""

    def align(self, model: nn.Module, anchor: nn.Module, **kw: Any) -> nn.Module: ...

    def fuse(self, models: list[nn.Module], **kw: Any) -> nn.Module: ...


@dataclass
class Job:
    """One unit of work: a checkpoint to write or a result group to store, and what it costs at most
    (`cost`: (unit, batch size, examples) with unit train (forward+backward+step), forward or
    hvp).
    """

    name: str
    key: str
    run: Callable[[], Any]
    checkpoint: Path | None = None  # checkpoint jobs write this file themselves
    group: str | None = None  # result jobs return (arrays, attrs) for this store group
    cost: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass
class Pair:
    """Two parents of one replicate and the models derived from them."""

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
    finetuned: list[dict] = field(
        default_factory=list
    )  # {name, source, settings} of every fine-tuned model


class StudyRun:
    """Plans and runs a study in `workdir` (checkpoints) with results in `workdir/study.h5`."""

    def __init__(
        self,
        cfg: StudyConfig,
        workdir: str | Path,
        fuser: Fuser,
        device: torch.device | str = "cpu",
    ):
        self.cfg, self.fuser, self.device = cfg, fuser, torch.device(device)
        self.workdir = Path(workdir)
        self.store = self.workdir / "study.h5"
        shape = data_shape(cfg.data)  # planning reads no data; the jobs load it on first use
        self.sizes = shape.sizes
        self.kwargs = arch_kwargs_for(
            cfg.arch, shape.input_shape, shape.num_classes, **cfg.arch_kwargs
        )
        self.models: dict[str, tuple[Path, str]] = {}  # name -> (checkpoint, key)
        self.info: dict[str, dict] = {}  # name -> what the report needs to know of the model
        self.pairs = [self._pair(spec, r) for r in range(cfg.replicates) for spec in cfg.pairs]

    @cached_property
    def data(self) -> Dataset:
        """The study's data set, read on first use (planning needs only its shape)."""
        return load_data(self.cfg.data, device=self.device)

    # ---- planning
    # -------------------------------------------------------------------------------------------
    def _pair(self, spec: PairSpec, replicate: int) -> Pair:
        seeds = [
            [shifted(p.init_seed, replicate), shifted(p.data_seed, replicate)]
            for p in (spec.a, spec.b)
        ]
        a, b = (self._parent(p.batch_size, *s, replicate) for p, s in zip((spec.a, spec.b), seeds))
        name = spec.name + (f"-r{replicate}" if replicate else "")
        finetuned = [
            {
                "name": f"{name}.{kind}-ft{cfg['batch_size']}",
                "source": kind,
                "settings": asdict(
                    TrainConfig(**{**cfg, "data_seed": shifted(cfg["data_seed"], replicate)})
                ),
            }
            for kind in FUSED
            for cfg in self.cfg.finetunes(spec, kind)
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

    def _parent(self, bs: int, init_seed: int, data_seed: int, replicate: int) -> str:
        name = f"bs{bs}-i{init_seed}-d{data_seed}"
        cfg_train = self.cfg.train_config(bs, data_seed)
        key = content_key(
            "parent", self.cfg.arch, self.kwargs, self.cfg.data, asdict(cfg_train), init_seed
        )
        self.models.setdefault(name, (self._ckpt(name, key), key))
        self.info[name] = {
            "role": "parent",
            "replicate": replicate,
            "batch_size": bs,
            "init_seed": init_seed,
            "data_seed": data_seed,
            "lr": cfg_train.lr,
            "keep": cfg_train.keep,
        }
        return name

    def _ckpt(self, name: str, key: str) -> Path:
        return self.workdir / "checkpoints" / f"{name}-{key}.pt"

    def _derived(self, name: str, info: dict, *parts: Any) -> str:
        key = content_key(name, *parts)
        self.models[name] = (self._ckpt(name, key), key)
        self.info[name] = info
        return key

    @staticmethod
    def _seed(base: int, replicate: int) -> int:
        return shifted(base, replicate)

    def stages(self) -> list[tuple[str, list[Job]]]:
        """The jobs of every stage, in order (later stages read earlier stages' checkpoints)."""
        parents = [
            self._train_job(name) for name in sorted({n for p in self.pairs for n in (p.a, p.b)})
        ]
        fused, tuned = [], []
        for pair in self.pairs:
            fused += self._fusion_jobs(pair)
            tuned += self._finetune_jobs(pair)
        measures = [job for name in self.models for job in self._model_measures(name)]
        measures += [job for pair in self.pairs for job in self._pair_measures(pair)]
        return [
            ("train parents", parents),
            ("fuse", fused),
            ("fine-tune", tuned),
            ("measure", measures),
        ]

    def _epoch_cost(self, cfg: TrainConfig) -> list[tuple[str, int, int]]:
        return [
            ("train", cfg.batch_size, cfg.epochs * self.sizes["train"]),
            ("forward", EVAL_BATCH, cfg.epochs * self.sizes["val"]),
        ]

    def _train_job(self, name: str) -> Job:
        info = self.info[name]
        path, key = self.models[name]
        cfg = self.cfg.train_config(info["batch_size"], info["data_seed"])

        def run() -> None:
            model = init_model(self.cfg.arch, self.kwargs, info["init_seed"]).to(self.device)
            result = train(model, self.data, cfg, desc=name)
            save_checkpoint(
                result.model,
                path,
                meta=train_meta(
                    cfg, result, self.data, init_seed=info["init_seed"], role="parent", key=key
                ),
            )

        return Job(f"train {name}", key, run, checkpoint=path, cost=self._epoch_cost(cfg))

    def _fusion_jobs(self, pair: Pair) -> list[Job]:
        f = self.cfg.fusion
        settings = {
            k: f[k]
            for k in (
                "method",
                "mode",
                "align_samples",
                "solver",
                "reg",
                "iterations",
                "reset_bn_samples",
            )
        }
        settings["seed"] = self._seed(f["seed"], pair.replicate)
        parents = [self.models[pair.a][1], self.models[pair.b][1]]
        cost = [
            ("forward", EVAL_BATCH, 2 * settings["align_samples"] + settings["reset_bn_samples"])
        ]
        jobs = []
        for kind in ("vanilla", "aligned", "ot"):
            name = f"{pair.name}.{kind}"
            key = self._derived(
                name,
                {"role": kind, "pair": pair.name, "replicate": pair.replicate},
                kind,
                parents,
                settings if kind != "vanilla" else {},
            )
            jobs.append(
                Job(
                    f"{kind} {pair.name}",
                    key,
                    self._fusion_run(pair, kind, name, key, settings),
                    checkpoint=self.models[name][0],
                    cost=[] if kind == "vanilla" else cost,
                )
            )
        return jobs

    def _fusion_run(
        self, pair: Pair, kind: str, name: str, key: str, settings: dict
    ) -> Callable[[], None]:
        def run() -> None:
            a, b = (load_checkpoint(self.models[n][0], self.device)[0] for n in (pair.a, pair.b))
            x = subsample(
                self.data.train,
                settings["align_samples"],
                settings["seed"],
                "[fusion] align_samples",
            ).x
            ot_kw = {
                "mode": settings["mode"],
                "x": x,
                "solver": settings["solver"],
                "reg": settings["reg"],
            }
            if (
                settings["method"] == "rebasin"
            ):  # Git Re-Basin: permutations by assignment, seeded group order
                ot_kw = {"mode": settings["mode"], "x": x, "seed": settings["seed"]}
            if kind == "vanilla":
                model = self.fuser.fuse([a, b], method="vanilla")
            elif kind == "aligned":
                model = self.fuser.align(a, b, method=settings["method"], **ot_kw)
            else:
                model = self.fuser.fuse(
                    [a, b], method=settings["method"], iterations=settings["iterations"], **ot_kw
                )
            if settings["reset_bn_samples"] and kind != "aligned":
                reset_bn(
                    model,
                    subsample(
                        self.data.train,
                        settings["reset_bn_samples"],
                        settings["seed"],
                        "[fusion] reset_bn_samples",
                    ),
                )
            save_checkpoint(
                model,
                self.models[name][0],
                meta={
                    "role": kind,
                    "pair": pair.name,
                    "key": key,
                    "parents": [pair.a, pair.b],
                    **settings,
                },
            )

        return run

    def _finetune_jobs(self, pair: Pair) -> list[Job]:
        """One job per fine-tuning run of each fused model (the seed study's Table 6: per pair and
        model, possibly several fine-tuning batch sizes).
        """
        jobs = []
        for ft in pair.finetuned:
            cfg, source, name = (
                TrainConfig(**ft["settings"]),
                f"{pair.name}.{ft['source']}",
                ft["name"],
            )
            info = {
                "role": "finetuned",
                "pair": pair.name,
                "replicate": pair.replicate,
                "source": ft["source"],
                **ft["settings"],
            }
            key = self._derived(name, info, self.models[source][1], ft["settings"])
            jobs.append(
                Job(
                    f"fine-tune {name}",
                    key,
                    self._finetune_run(source, name, key, cfg),
                    checkpoint=self.models[name][0],
                    cost=self._epoch_cost(cfg),
                )
            )
        return jobs

    def _finetune_run(
        self, source: str, name: str, key: str, cfg: TrainConfig
    ) -> Callable[[], None]:
        def run() -> None:
            model = load_checkpoint(self.models[source][0], self.device)[0]
            result = train(model, self.data, cfg, desc=name)
            save_checkpoint(
                result.model,
                self.models[name][0],
                meta=train_meta(
                    cfg, result, self.data, role="finetuned", finetuned_from=source, key=key
                ),
            )

        return run

    def _model_measures(self, name: str) -> list[Job]:
        m, replicate = self.cfg.measure, self.info[name]["replicate"]
        seed, bs, samples = self._seed(m["seed"], replicate), m["batch_size"], m["samples"]
        model_key = self.models[name][1]
        split = self._curv_split(seed)
        n = min(samples or self.sizes["train"], self.sizes["train"])
        metrics_cost = [("forward", EVAL_BATCH, self.sizes["train"] + self.sizes["test"])]
        jobs = [self._measure(name, "metrics", model_key, {}, self._metrics, metrics_cost)]
        # One curvature suite per model gives all three groups (one budget, so each depends on every
        # setting): its block Lanczos run takes the products of the configured ESD (esd_steps x
        # esd_runs) and goes on until the top eigenvalues are certified (priced with the
        # eigenvalues); trace_hvps caps the trace's probes.
        suite = {
            "samples": samples,
            "batch_size": bs,
            "seed": seed,
            "k": m["eig_k"],
            "tol": m["eig_tol"],
            "min_steps": max(1, m["esd_steps"] * m["esd_runs"] // BLOCK),
            "block": BLOCK,
            "trace_hvps": m["trace_hvps"],
            "trace_rse": TRACE_RSE,
        }
        budget = suite["min_steps"] * BLOCK + 100 * m["eig_k"]
        part = self._suite(split, suite, budget + m["trace_hvps"])
        jobs.append(
            self._measure(
                name,
                "eigenvalues",
                model_key,
                suite,
                part("eigenvalues"),
                [("hvp", bs, budget * n)],
                at=split,
            )
        )
        jobs.append(
            self._measure(
                name,
                "trace",
                model_key,
                suite,
                part("trace"),
                [("hvp", bs, m["trace_hvps"] * n)],
                at=split,
            )
        )
        if m["esd"] and replicate == 0 and self.info[name]["role"] in FUSED:
            jobs.append(self._measure(name, "esd", model_key, suite, part("esd"), [], at=split))
        curv = {"samples": samples, "batch_size": bs, "seed": seed}
        for c in m[
            "curvatures"
        ]:  # Gauss-Newton-vector products cost about what Hessian-vector products do
            jobs.append(
                self._measure(
                    name,
                    f"{c}/eigenvalues",
                    model_key,
                    {**curv, "k": m["eig_k"], "tol": m["eig_tol"]},
                    lambda model, c=c: top_eigenvalues(
                        model,
                        split(),
                        k=m["eig_k"],
                        batch_size=bs,
                        tol=m["eig_tol"],
                        seed=seed,
                        curvature=c,
                    ),
                    [("hvp", bs, 100 * m["eig_k"] * n)],
                    at=split,
                )
            )
            jobs.append(
                self._measure(
                    name,
                    f"{c}/trace",
                    model_key,
                    {**curv, "hvps": m["trace_hvps"]},
                    lambda model, c=c: hessian_trace(
                        model,
                        split(),
                        batch_size=bs,
                        max_hvps=m["trace_hvps"],
                        seed=seed,
                        curvature=c,
                    ),
                    [("hvp", bs, m["trace_hvps"] * n)],
                    at=split,
                )
            )
        if m["sharpness"]:
            sharp = {
                k: m[f"sharpness_{k}"]
                for k in ("kind", "norm", "rho", "steps", "restarts", "draws")
            }
            ascent = sharp["restarts"] * sharp["steps"]
            jobs.append(
                self._measure(
                    name,
                    f"sharpness/{sharp['kind']}-{sharp['norm']}-{sharp['rho']:g}",
                    model_key,
                    {**curv, **sharp},
                    lambda model: measure_sharpness(
                        model,
                        split(),
                        sharp["kind"],
                        sharp["rho"],
                        sharp["norm"],
                        sharp["steps"],
                        sharp["restarts"],
                        sharp["draws"],
                        seed=seed,
                        batch_size=bs,
                    ),
                    [
                        ("train", bs, ascent * n),
                        ("forward", bs, (sharp["restarts"] + sharp["draws"] + 1) * n),
                    ],
                )
            )
        return jobs

    @staticmethod
    def _suite(
        split: Callable[[], Any], s: dict, max_hvps: int
    ) -> Callable[[str], Callable[[nn.Module], dict]]:
        """The compute functions of the suite's groups (`curvature_suite`), sharing one run of
        it.
        """
        done: dict[str, SuiteResult] = {}

        def part(what: str) -> Callable[[nn.Module], dict]:
            def compute(model: nn.Module) -> dict:
                if not done:
                    done["run"] = curvature_suite(
                        model,
                        split(),
                        k=s["k"],
                        tol=s["tol"],
                        steps=s["min_steps"],
                        block=s["block"],
                        trace_rse=s["trace_rse"],
                        max_hvps=max_hvps,
                        batch_size=s["batch_size"],
                        seed=s["seed"],
                    )
                return {**asdict(done["run"].parts()[what]), **done["run"].shared()}

            return compute

        return part

    def _curv_split(self, seed: int) -> Callable[[], Any]:
        return lambda: subsample(
            self.data.train, self.cfg.measure["samples"], seed, "[measure] samples"
        )

    def _metrics(self, model: nn.Module) -> dict:
        return {
            f"{s}_{k}": v
            for s in ("train", "test")
            for k, v in asdict(evaluate(model, self.data.split(s))).items()
        }

    def _measure(
        self,
        name: str,
        what: str,
        model_key: str,
        settings: dict,
        compute: Callable[[nn.Module], Any],
        cost: list[tuple[str, int, int]],
        at: Callable[[], Any] | None = None,
    ) -> Job:
        """A job measuring `what` of model `name`; with `at` (the examples measured) the result also
        records the loss, accuracy and gradient norm there (`point_*` attributes).
        """
        key = content_key(what, model_key, settings)
        path = self.models[name][0]

        def run() -> tuple[dict, dict]:
            model = load_checkpoint(path, self.device)[0]
            arrays, attrs = result_arrays(compute(model))
            point = point_state(model, at(), self.cfg.measure["batch_size"]).attrs() if at else {}
            return arrays, {
                **attrs,
                **point,
                **settings,
                "checkpoint": path.name,
                "sha256": file_hash(path),
            }

        return Job(f"{what} {name}", key, run, group=f"/models/{name}/{what}", cost=cost)

    def _barrier_splits(self, seed: int) -> dict[str, Any]:
        m = self.cfg.measure
        return {
            s: subsample(
                self.data.split(s),
                m["barrier_samples"],
                seed,
                "[measure] barrier_samples",
                f"of the {s} split",
            )
            for s in ("train", "test")
        }

    def _pair_measures(self, pair: Pair) -> list[Job]:
        m = self.cfg.measure
        seed = self._seed(m["seed"], pair.replicate)
        keys = [self.models[n][1] for n in (pair.a, pair.b, f"{pair.name}.aligned")]
        n_eval = self.sizes["train"] + self.sizes["test"]
        jobs = [
            Job(
                f"ensemble {pair.name}",
                content_key("ensemble", keys[:2]),
                lambda: self._ensemble(pair),
                group=f"/pairs/{pair.name}/ensemble",
                cost=[("forward", EVAL_BATCH, 2 * n_eval)],
            )
        ]
        n_line = sum(
            min(m["barrier_samples"] or self.sizes[s], self.sizes[s]) for s in ("train", "test")
        )
        for align, source in (("none", pair.a), ("ot", f"{pair.name}.aligned")):
            settings = {
                "points": m["barrier_points"],
                "samples": m["barrier_samples"],
                "seed": seed,
            }
            key = content_key("barrier", self.models[source][1], keys[1], settings)

            def run(source: str = source, settings: dict = settings) -> tuple[dict, dict]:
                a, b = (
                    load_checkpoint(self.models[n][0], self.device)[0] for n in (source, pair.b)
                )
                curve = interpolation_curve(
                    a,
                    b,
                    self._barrier_splits(seed),
                    points=m["barrier_points"],
                    batch_size=m["batch_size"],
                )
                arrays, attrs = result_arrays(curve)
                return arrays, {**attrs, **settings, "a": source, "b": pair.b}

            jobs.append(
                Job(
                    f"barrier {align} {pair.name}",
                    key,
                    run,
                    group=f"/barriers/{pair.a}~{pair.b}/{align}",
                    cost=[("forward", m["batch_size"], m["barrier_points"] * n_line)],
                )
            )
        if (
            m["contours"]
            and pair.init == "diff"
            and pair.batches == "corresponding"
            and pair.replicate == 0
            and (m["contour_kind"] != "plane" or self._contour_fused(pair) != f"{pair.name}.ot")
        ):
            jobs.append(
                self._contour_job(pair)
            )  # a plane needs a fine-tuned fusion: the fusion is A-B's midpoint
        return jobs

    def _contour_fused(self, pair: Pair) -> str:
        """The OT fusion the contours are drawn around: fine-tuned at B's batch size if it was, else
        the first fine-tuned one, else the fusion itself.
        """
        tuned = [f for f in pair.finetuned if f["source"] == "ot"]
        best = [f for f in tuned if f["settings"]["batch_size"] == pair.bs_b] or tuned
        return best[0]["name"] if best else f"{pair.name}.ot"

    def _contour_job(self, pair: Pair) -> Job:
        """Train-loss contours of the seed study's figure 6: on the plane through A aligned to B, B
        and the (fine-tuned) OT fusion, or along two random filter-normalised directions around the
        latter.
        """
        m = self.cfg.measure
        kind, steps, seed = m["contour_kind"], m["contour_steps"], m["seed"]
        fused = self._contour_fused(pair)
        names = [f"{pair.name}.aligned", pair.b, fused] if kind == "plane" else [fused]
        settings = {
            "steps": steps,
            "samples": m["barrier_samples"],
            "seed": seed,
            "split": "train",
            **(
                {"margin": m["contour_margin"]}
                if kind == "plane"
                else {"range": m["contour_range"]}
            ),
        }
        key = content_key(kind, [self.models[n][1] for n in names], settings)
        n_split = min(m["barrier_samples"] or self.sizes["train"], self.sizes["train"])

        def run() -> tuple[dict, dict]:
            split = subsample(
                self.data.train, m["barrier_samples"], seed, "[measure] barrier_samples"
            )
            models = [load_checkpoint(self.models[n][0], self.device)[0] for n in names]
            label = "OT fusion FT" if "-ft" in fused else "OT fusion"
            if kind == "plane":
                surface = plane_surface(
                    models, steps, m["contour_margin"], ["A aligned", "B", label]
                )
            else:
                r = m["contour_range"]
                surface = random_surface(models[0], 2, -r, r, steps, seed, False, label)
            return compute_surface(
                models[0], surface, split, m["batch_size"], {**settings, "kind": kind}
            )

        return Job(
            f"contour {pair.name}",
            key,
            run,
            group=f"/surfaces/{pair.name}/{kind}",
            cost=[("forward", m["batch_size"], steps * steps * n_split)],
        )

    def _ensemble(self, pair: Pair) -> tuple[dict, dict]:
        models = [load_checkpoint(self.models[n][0], self.device)[0] for n in (pair.a, pair.b)]
        return {}, {
            f"{s}_{k}": v
            for s in ("train", "test")
            for k, v in asdict(evaluate_ensemble(models, self.data.split(s))).items()
        }

    # ---- running
    # ----------------------------------------------------------------------------------------------
    def todo(self) -> list[tuple[str, list[Job], list[Job]]]:
        """Every stage as (name, all its jobs, the jobs not done yet)."""
        done = group_keys(self.store)
        return [
            (stage, jobs, [j for j in jobs if not self._is_done(j, done)])
            for stage, jobs in self.stages()
        ]

    def run(self) -> None:
        """Run every stage, skipping what is done; the store ends with a description of the
        study.
        """
        stages = self.todo()
        for i, (stage, _, jobs) in enumerate(stages):
            bar = progress.bar(
                total=len(jobs), desc=f"study {i + 1}/{len(stages)} {stage}", stage=True
            )
            try:
                self._run_stage(jobs, bar)
            finally:
                bar.close()
        self._describe()

    @staticmethod
    def _is_done(job: Job, done: dict[str, str]) -> bool:
        if job.checkpoint is not None:
            return job.checkpoint.exists()
        return done.get(job.group) == job.key

    def _run_stage(self, jobs: list[Job], bar) -> None:
        rank, size = dist.launched_rank(), dist.launched_world_size()
        for start in range(0, len(jobs), size):
            batch = jobs[start : start + size]
            mine = batch[rank] if rank < len(batch) else None
            with dist.local():
                out = mine.run() if mine is not None else None
            results = [out]
            if size > 1:
                results = [None] * size
                tdist.all_gather_object(results, out)
            for job, result in zip(batch, results):
                if job.group is not None and dist.launched_rank() == 0:
                    arrays, attrs = result
                    write_result(self.store, job.group, arrays, {**attrs, "key": job.key})
                bar.update(1)

    def _describe(self) -> None:
        """Record the study in the store under /study (docs/conventions.md), so that the report
        needs nothing else: its config, every model (role, replicate, seeds, fine-tuning settings)
        and every pair.
        """
        if dist.launched_rank() != 0:
            return
        groups = {
            f"/study/models/{name}": ({}, {"checkpoint": str(path), "key": key, **self.info[name]})
            for name, (path, key) in self.models.items()
        }
        for p in self.pairs:
            attrs = {**asdict(p), "finetuned": json.dumps(p.finetuned, sort_keys=True)}
            groups[f"/study/pairs/{p.name}"] = ({}, {**attrs, "key": content_key(attrs)})
        config = asdict(self.cfg)
        groups["/study/config"] = (
            {},
            {
                "config": json.dumps(config, sort_keys=True),
                "name": self.cfg.name,
                "replicates": self.cfg.replicates,
                "seed_shift": SEED_SHIFT,
                "compare": self.cfg.compare,
                "data_sizes": json.dumps(self._sizes()),
                "key": content_key(config),
            },
        )
        write_results(
            self.store, groups, clear="/study"
        )  # a smaller study leaves no stale pairs behind

    def _sizes(self) -> dict[str, int]:
        return {s: len(self.data.split(s)) for s in ("train", "val", "test")}
