"""The batch-size comparison study of the seed paper as a cached, resumable pipeline.

train parents -> align / fuse (vanilla, OT) -> fine-tune -> measure (accuracy, loss, top eigenvalue, trace,
ESD, barriers pre/post alignment). Every job has a key hashed from everything it depends on; a checkpoint's
file name and a stored group's `key` attribute carry it, so a rerun skips what is done, a killed run resumes,
and a changed setting recomputes only what depends on it. Independent jobs of a stage are spread over the
ranks of a torchrun launch. `landscape` never imports `fusion`: the caller passes the fusion functions in.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as tdist
from torch import nn

from .. import dist, progress
from ..curvature.density import spectral_density
from ..curvature.eigen import top_eigenvalues
from ..curvature.trace import hessian_trace
from ..data.datasets import Dataset, load_data
from ..data.split import subsample
from ..geometry.barrier import interpolation_curve
from ..geometry.surface import compute_surface, plane_surface
from ..io.checkpoint import file_hash, load_checkpoint, save_checkpoint
from ..io.store import content_key, group_keys, result_arrays, write_result, write_results
from ..models.zoo import arch_kwargs_for
from ..training.bn import reset_bn
from ..training.loop import TrainConfig, init_model, train, train_meta
from ..training.metrics import evaluate, evaluate_ensemble
from .config import StudyConfig


class Fuser(Protocol):
    """The fusion functions a study needs (the `fusion` package provides them)."""

    def align(self, model: nn.Module, anchor: nn.Module, **kw: Any) -> nn.Module: ...

    def fuse(self, models: list[nn.Module], **kw: Any) -> nn.Module: ...


@dataclass
class Job:
    """One unit of work: a checkpoint to write or a result group to store."""

    name: str
    key: str
    run: Callable[[], Any]
    checkpoint: Path | None = None   # checkpoint jobs write this file themselves
    group: str | None = None         # result jobs return (arrays, attrs) for this store group


@dataclass
class Pair:
    """Two parents and the models derived from them."""

    name: str
    scenario: str        # same, diff or mixed
    bs_a: int
    bs_b: int
    a: str
    b: str
    finetune: bool


class StudyRun:
    """Plans and runs a study in `workdir` (checkpoints) with results in `workdir/study.h5`."""

    def __init__(self, cfg: StudyConfig, workdir: str | Path, fuser: Fuser, device: torch.device | str = "cpu"):
        self.cfg, self.fuser, self.device = cfg, fuser, torch.device(device)
        self.workdir = Path(workdir)
        self.store = self.workdir / "study.h5"
        self.data: Dataset = load_data(cfg.data, device=self.device)
        self.kwargs = arch_kwargs_for(cfg.arch, self.data.input_shape, self.data.num_classes, **cfg.arch_kwargs)
        self.models: dict[str, tuple[Path, str]] = {}   # name -> (checkpoint, key)
        self.parent_seeds: dict[str, tuple[int, int, int]] = {}   # name -> (batch size, init seed, data seed)
        self.pairs = self._pairs()

    # ---- planning -------------------------------------------------------------------------------------------
    def _pairs(self) -> list[Pair]:
        cfg, pairs = self.cfg, []
        for scenario, seeds in (("same", cfg.same_init), ("diff", cfg.diff_init)):
            if seeds is None:
                continue
            for bs in cfg.batch_sizes:
                pairs.append(Pair(f"{scenario}-bs{bs}", scenario, bs, bs, self._parent(bs, *seeds[0]),
                                  self._parent(bs, *seeds[1]), scenario == "diff"))
        for bs_a, bs_b in cfg.mixed:
            seeds = cfg.diff_init
            pairs.append(Pair(f"mixed-bs{bs_a}-bs{bs_b}", "mixed", bs_a, bs_b, self._parent(bs_a, *seeds[0]),
                              self._parent(bs_b, *seeds[1]), True))
        return pairs

    def _parent(self, bs: int, init_seed: int, data_seed: int) -> str:
        name = f"bs{bs}-i{init_seed}-d{data_seed}"
        cfg_train = self.cfg.train_config(bs, data_seed)
        key = content_key("parent", self.cfg.arch, self.kwargs, self.cfg.data, asdict(cfg_train), init_seed)
        self.models.setdefault(name, (self._ckpt(name, key), key))
        self.parent_seeds[name] = (bs, init_seed, data_seed)
        return name

    def _ckpt(self, name: str, key: str) -> Path:
        return self.workdir / "checkpoints" / f"{name}-{key}.pt"

    def _derived(self, name: str, *parts: Any) -> str:
        key = content_key(name, *parts)
        self.models[name] = (self._ckpt(name, key), key)
        return key

    def stages(self) -> list[tuple[str, list[Job]]]:
        """The jobs of every stage, in order (later stages read earlier stages' checkpoints)."""
        parents = [self._train_job(name) for name in sorted({n for p in self.pairs for n in (p.a, p.b)})]
        fused, tuned = [], []
        for pair in self.pairs:
            fused += self._fusion_jobs(pair)
            if pair.finetune:
                tuned += [self._finetune_job(pair, f"{pair.name}.{kind}") for kind in ("vanilla", "ot")]
        measures = [job for name in self.models for job in self._model_measures(name)]
        measures += [job for pair in self.pairs for job in self._pair_measures(pair)]
        return [("train parents", parents), ("fuse", fused), ("fine-tune", tuned), ("measure", measures)]

    def _train_job(self, name: str) -> Job:
        bs, init_seed, data_seed = self.parent_seeds[name]
        path, key = self.models[name]

        def run() -> None:
            model = init_model(self.cfg.arch, self.kwargs, init_seed).to(self.device)
            cfg = self.cfg.train_config(bs, data_seed)
            result = train(model, self.data, cfg, desc=name)
            save_checkpoint(result.model, path, meta=train_meta(cfg, result, self.data, init_seed=init_seed,
                                                                role="parent", key=key))
        return Job(f"train {name}", key, run, checkpoint=path)

    def _fusion_jobs(self, pair: Pair) -> list[Job]:
        f = self.cfg.fusion
        settings = {k: f[k] for k in ("mode", "align_samples", "solver", "reg", "iterations", "reset_bn_samples",
                                      "seed")}
        parents = [self.models[pair.a][1], self.models[pair.b][1]]
        jobs = []
        for kind in ("vanilla", "aligned", "ot"):
            name = f"{pair.name}.{kind}"
            key = self._derived(name, kind, parents, settings if kind != "vanilla" else {})
            jobs.append(Job(f"{kind} {pair.name}", key, self._fusion_run(pair, kind, name, key, settings),
                            checkpoint=self.models[name][0]))
        return jobs

    def _fusion_run(self, pair: Pair, kind: str, name: str, key: str, settings: dict) -> Callable[[], None]:
        def run() -> None:
            a, b = (load_checkpoint(self.models[n][0], self.device)[0] for n in (pair.a, pair.b))
            x = subsample(self.data.train, settings["align_samples"], settings["seed"], "[fusion] align_samples").x
            ot_kw = {"mode": settings["mode"], "x": x, "solver": settings["solver"], "reg": settings["reg"]}
            if kind == "vanilla":
                model = self.fuser.fuse([a, b], method="vanilla")
            elif kind == "aligned":
                model = self.fuser.align(a, b, **ot_kw)
            else:
                model = self.fuser.fuse([a, b], method="ot", iterations=settings["iterations"], **ot_kw)
            if settings["reset_bn_samples"] and kind != "aligned":
                reset_bn(model, subsample(self.data.train, settings["reset_bn_samples"], settings["seed"],
                                          "[fusion] reset_bn_samples"))
            save_checkpoint(model, self.models[name][0], meta={"role": kind, "pair": pair.name, "key": key,
                                                                "parents": [pair.a, pair.b], **settings})
        return run

    def _finetune_job(self, pair: Pair, source: str) -> Job:
        ft = self.cfg.finetune
        bs = int(ft.get("batch_size", pair.bs_b))
        loop = {k: v for k, v in ft.items() if k not in ("lr_factor", "batch_size")}
        cfg = TrainConfig(**{**self.cfg.train, **loop, "batch_size": bs,
                             "lr": ft["lr_factor"] * self.cfg.lr_for(pair.bs_b), "data_seed": 0})
        name = f"{source}-ft"
        key = self._derived(name, self.models[source][1], asdict(cfg))

        def run() -> None:
            model = load_checkpoint(self.models[source][0], self.device)[0]
            result = train(model, self.data, cfg, desc=name)
            save_checkpoint(result.model, self.models[name][0],
                            meta=train_meta(cfg, result, self.data, role="finetuned", finetuned_from=source, key=key))
        return Job(f"fine-tune {source}", key, run, checkpoint=self.models[name][0])

    def _model_measures(self, name: str) -> list[Job]:
        m = self.cfg.measure
        model_key = self.models[name][1]
        curv = {k: m[k] for k in ("samples", "batch_size", "seed")}
        jobs = [self._measure(name, "metrics", model_key, {}, lambda model: self._metrics(model))]
        jobs.append(self._measure(name, "eigenvalues", model_key, {**curv, "k": m["eig_k"], "tol": m["eig_tol"]},
                                  lambda model: top_eigenvalues(model, self._curv_split(), k=m["eig_k"],
                                                                batch_size=m["batch_size"], tol=m["eig_tol"],
                                                                seed=m["seed"])))
        jobs.append(self._measure(name, "trace", model_key, {**curv, "hvps": m["trace_hvps"]},
                                  lambda model: hessian_trace(model, self._curv_split(), batch_size=m["batch_size"],
                                                              max_hvps=m["trace_hvps"], seed=m["seed"])))
        if m["esd"] and name.split(".")[-1] in ("vanilla", "ot"):
            jobs.append(self._measure(name, "esd", model_key, {**curv, "steps": m["esd_steps"], "runs": m["esd_runs"]},
                                      lambda model: spectral_density(model, self._curv_split(), steps=m["esd_steps"],
                                                                     runs=m["esd_runs"], batch_size=m["batch_size"],
                                                                     seed=m["seed"])))
        return jobs

    def _curv_split(self):
        return subsample(self.data.train, self.cfg.measure["samples"], self.cfg.measure["seed"], "[measure] samples")

    def _metrics(self, model: nn.Module) -> dict:
        return {f"{s}_{k}": v for s in ("train", "test")
                for k, v in asdict(evaluate(model, self.data.split(s))).items()}

    def _measure(self, name: str, what: str, model_key: str, settings: dict,
                 compute: Callable[[nn.Module], Any]) -> Job:
        key = content_key(what, model_key, settings)
        path = self.models[name][0]

        def run() -> tuple[dict, dict]:
            model = load_checkpoint(path, self.device)[0]
            arrays, attrs = result_arrays(compute(model))
            return arrays, {**attrs, **settings, "checkpoint": path.name, "sha256": file_hash(path)}
        return Job(f"{what} {name}", key, run, group=f"/models/{name}/{what}")

    def _pair_measures(self, pair: Pair) -> list[Job]:
        m = self.cfg.measure
        keys = [self.models[n][1] for n in (pair.a, pair.b, f"{pair.name}.aligned")]
        jobs = [Job(f"ensemble {pair.name}", content_key("ensemble", keys[:2]), lambda: self._ensemble(pair),
                    group=f"/pairs/{pair.name}/ensemble")]
        for align, source in (("none", pair.a), ("ot", f"{pair.name}.aligned")):
            settings = {"points": m["barrier_points"], "samples": m["barrier_samples"], "seed": m["seed"]}
            key = content_key("barrier", self.models[source][1], keys[1], settings)

            def run(source: str = source, settings: dict = settings) -> tuple[dict, dict]:
                a, b = (load_checkpoint(self.models[n][0], self.device)[0] for n in (source, pair.b))
                splits = {s: subsample(self.data.split(s), m["barrier_samples"], m["seed"], "[measure] barrier_samples",
                                          f"of the {s} split") for s in ("train", "test")}
                curve = interpolation_curve(a, b, splits, points=m["barrier_points"], batch_size=m["batch_size"])
                arrays, attrs = result_arrays(curve)
                return arrays, {**attrs, **settings, "a": source, "b": pair.b}
            jobs.append(Job(f"barrier {align} {pair.name}", key, run, group=f"/barriers/{pair.a}~{pair.b}/{align}"))
        if m["contours"] and pair.scenario == "diff":
            jobs.append(self._plane_job(pair))
        return jobs

    def _plane_job(self, pair: Pair) -> Job:
        """Train-loss contours on the plane through A aligned to B, B and the (fine-tuned) OT fusion: the seed
        study's figure 6."""
        m = self.cfg.measure
        fused = f"{pair.name}.ot-ft" if pair.finetune else f"{pair.name}.ot"
        names = [f"{pair.name}.aligned", pair.b, fused]
        settings = {"steps": m["contour_steps"], "margin": 0.25, "samples": m["barrier_samples"], "seed": m["seed"],
                    "split": "train"}
        key = content_key("plane", [self.models[n][1] for n in names], settings)

        def run() -> tuple[dict, dict]:
            models = [load_checkpoint(self.models[n][0], self.device)[0] for n in names]
            split = subsample(self.data.train, m["barrier_samples"], m["seed"], "[measure] barrier_samples")
            labels = ["A aligned", "B", "OT fusion FT" if pair.finetune else "OT fusion"]
            return compute_surface(models[0], plane_surface(models, m["contour_steps"], 0.25, labels), split,
                                   m["batch_size"], settings)
        return Job(f"contour {pair.name}", key, run, group=f"/surfaces/{pair.name}/plane")

    def _ensemble(self, pair: Pair) -> tuple[dict, dict]:
        models = [load_checkpoint(self.models[n][0], self.device)[0] for n in (pair.a, pair.b)]
        return {}, {f"{s}_{k}": v for s in ("train", "test")
                    for k, v in asdict(evaluate_ensemble(models, self.data.split(s))).items()}

    # ---- running -----------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Run every stage, skipping what is done; the store ends with a description of the study."""
        stages = self.stages()
        done = group_keys(self.store)
        todo = [(stage, [j for j in jobs if not self._is_done(j, done)]) for stage, jobs in stages]
        bar = progress.bar(total=sum(len(j) for _, j in todo), desc="study")
        for stage, jobs in todo:
            bar.set_description(stage)
            self._run_stage(jobs, bar)
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
            batch = jobs[start:start + size]
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
        """Record the study's models and pairs in the store, for the report."""
        if dist.launched_rank() != 0:
            return
        groups = {f"/study/models/{name}": ({}, {"checkpoint": str(path), "key": key})
                  for name, (path, key) in self.models.items()}
        groups.update({f"/study/pairs/{p.name}": ({}, {**asdict(p), "key": content_key(asdict(p))})
                       for p in self.pairs})
        groups["/study/config"] = ({}, {"config": json.dumps(asdict(self.cfg), sort_keys=True), "name": self.cfg.name,
                                        "key": content_key(asdict(self.cfg))})
        write_results(self.store, groups)
