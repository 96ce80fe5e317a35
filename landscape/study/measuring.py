"""The measurement actions of a batch-size study's run, per model and per pair.

Per model its metrics, curvature and sharpness, per pair its prediction ensemble, barriers and
contours. Each action takes a planned task and returns its store group as (arrays, attrs),
recording the settings it was measured with and the checkpoint it read (name and hash).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ..curvature.eigen import top_eigenvalues
from ..curvature.results import SuiteResult
from ..curvature.stationarity import point_state
from ..curvature.suite import curvature_suite
from ..curvature.trace import hessian_trace
from ..data.datasets import Dataset
from ..data.split import Split, subsample
from ..geometry.barrier import interpolation_curve
from ..geometry.sharpness import measure_sharpness
from ..geometry.surface import compute_surface, plane_surface, random_surface
from ..io.checkpoint import file_hash, load_checkpoint
from ..io.store import content_key, result_arrays
from ..training.metrics import evaluate, evaluate_ensemble
from .tasks import StudyPlan, Task


class Measurer:
    """The measurement actions of a run of plan `plan` on `device`; `data` gives the data set.

    Examples:
        >>> from landscape.data.datasets import data_shape, load_data
        >>> from landscape.study import presets
        >>> from landscape.study.config import load_config
        >>> from landscape.study.plan import plan_study
        >>> cfg = load_config(presets.path("quick"))
        >>> measurer = Measurer(plan_study(cfg, "runs/quick", data_shape(cfg.data)), "cpu", None)
        >>> sorted(measurer.actions())[:3]
        ['barrier', 'contour', 'eigenvalues']
    """

    def __init__(self, plan: StudyPlan, device: torch.device | str, data: Callable[[], Dataset]):
        self.plan, self.device, self._data = plan, torch.device(device), data
        self.cfg = plan.cfg
        self._suites: dict[tuple[str, str], SuiteResult] = {}  # (model, settings key) -> run

    @property
    def data(self) -> Dataset:
        """The study's data set."""
        return self._data()

    def actions(self) -> dict[str, Callable[[Task], tuple[dict, dict]]]:
        """The measurement actions by name (a task's `action`).

        Returns:
            Action name -> the function taking a task and returning its group's (arrays, attrs).
        """
        return {
            "metrics": self._metrics,
            "suite": self._suite,
            "eigenvalues": self._eigenvalues,
            "trace": self._trace,
            "sharpness": self._sharpness,
            "ensemble": self._ensemble,
            "barrier": self._barrier,
            "contour": self._contour,
        }

    def load(self, name: str) -> nn.Module:
        """Load model `name`.

        Args:
            name: a model of the plan.

        Returns:
            The model from its checkpoint, on the runner's device.
        """
        return load_checkpoint(self.plan.models[name].checkpoint, self.device)[0]

    # ---- measurements of one model ---------------------------------------------------------------
    def _measured(
        self, task: Task, compute: Callable[[nn.Module, Split], Any], at: bool = True
    ) -> tuple[dict, dict]:
        """Measure the task's model with `compute`.

        `compute` gets the model and the curvature examples (None when the settings have no seed);
        with `at`, the result also records the loss, accuracy and gradient norm there (`point_*`
        attributes).

        Returns:
            (arrays, attrs) of the task's group: the result, the point, the settings and the
            checkpoint's name and hash.
        """
        settings = task.params["settings"]
        path = self.plan.models[task.params["model"]].checkpoint
        model = load_checkpoint(path, self.device)[0]
        split = (
            subsample(self.data.train, settings["samples"], settings["seed"], "[measure] samples")
            if "seed" in settings
            else None
        )
        arrays, attrs = result_arrays(compute(model, split))
        batch = self.cfg.measure.batch_size
        point = point_state(model, split, batch).attrs() if at else {}
        return arrays, {
            **attrs,
            **point,
            **settings,
            "checkpoint": path.name,
            "sha256": file_hash(path),
        }

    def _metrics(self, task: Task) -> tuple[dict, dict]:
        """Loss and accuracy on the training and test splits.

        Returns:
            (arrays, attrs) of its store group.
        """

        def compute(model: nn.Module, _: Any) -> dict:
            return {
                f"{s}_{k}": v
                for s in ("train", "test")
                for k, v in asdict(evaluate(model, self.data.split(s))).items()
            }

        return self._measured(task, compute, at=False)

    def _suite(self, task: Task) -> tuple[dict, dict]:
        """One group (eigenvalues, trace or ESD) of the model's curvature suite run.

        The model's three groups share one run of the suite.

        Returns:
            (arrays, attrs) of its store group.
        """
        s = task.params["settings"]
        run = (task.params["model"], content_key(s))

        def compute(model: nn.Module, split: Split) -> dict:
            if run not in self._suites:
                self._suites[run] = curvature_suite(
                    model,
                    split,
                    k=s["k"],
                    tol=s["tol"],
                    steps=s["min_steps"],
                    block=s["block"],
                    trace_rse=s["trace_rse"],
                    max_hvps=task.params["max_hvps"],
                    batch_size=s["batch_size"],
                    seed=s["seed"],
                )
            done = self._suites[run]
            return {**asdict(done.parts()[task.params["part"]]), **done.shared()}

        return self._measured(task, compute)

    def _eigenvalues(self, task: Task) -> tuple[dict, dict]:
        """Top eigenvalues of another curvature matrix (`ggn`, `fisher`).

        Returns:
            (arrays, attrs) of its store group.
        """
        s = task.params["settings"]
        return self._measured(
            task,
            lambda model, split: top_eigenvalues(
                model,
                split,
                k=s["k"],
                batch_size=s["batch_size"],
                tol=s["tol"],
                seed=s["seed"],
                curvature=task.params["curvature"],
            ),
        )

    def _trace(self, task: Task) -> tuple[dict, dict]:
        """Trace of another curvature matrix (`ggn`, `fisher`).

        Returns:
            (arrays, attrs) of its store group.
        """
        s = task.params["settings"]
        return self._measured(
            task,
            lambda model, split: hessian_trace(
                model,
                split,
                batch_size=s["batch_size"],
                max_hvps=s["hvps"],
                seed=s["seed"],
                curvature=task.params["curvature"],
            ),
        )

    def _sharpness(self, task: Task) -> tuple[dict, dict]:
        """Worst-case and random sharpness.

        Returns:
            (arrays, attrs) of its store group.
        """
        s = task.params["settings"]
        return self._measured(
            task,
            lambda model, split: measure_sharpness(
                model,
                split,
                s["kind"],
                s["rho"],
                s["norm"],
                s["steps"],
                s["restarts"],
                s["draws"],
                seed=s["seed"],
                batch_size=s["batch_size"],
            ),
            at=False,
        )

    # ---- measurements of a pair ------------------------------------------------------------------
    def _ensemble(self, task: Task) -> tuple[dict, dict]:
        """Loss and accuracy of the averaged predictions of A and B.

        Returns:
            (arrays, attrs) of its store group.
        """
        models = [self.load(n) for n in task.params["models"]]
        return {}, {
            f"{s}_{k}": v
            for s in ("train", "test")
            for k, v in asdict(evaluate_ensemble(models, self.data.split(s))).items()
        }

    def _barrier(self, task: Task) -> tuple[dict, dict]:
        """The interpolation curve from A (or A aligned to B) to B and its barriers.

        Returns:
            (arrays, attrs) of its store group.
        """
        m, settings = self.cfg.measure, task.params["settings"]
        a, b = self.load(task.params["a"]), self.load(task.params["b"])
        splits = {
            s: subsample(
                self.data.split(s),
                m.barrier_samples,
                settings["seed"],
                "[measure] barrier_samples",
                f"of the {s} split",
            )
            for s in ("train", "test")
        }
        curve = interpolation_curve(a, b, splits, points=m.barrier_points, batch_size=m.batch_size)
        arrays, attrs = result_arrays(curve)
        return arrays, {**attrs, **settings, "a": task.params["a"], "b": task.params["b"]}

    def _contour(self, task: Task) -> tuple[dict, dict]:
        """Train-loss contours around the (fine-tuned) OT fusion.

        Returns:
            (arrays, attrs) of its store group.
        """
        m, s = self.cfg.measure, task.params["settings"]
        kind, label = task.params["kind"], task.params["label"]
        split = subsample(
            self.data.train, m.barrier_samples, s["seed"], "[measure] barrier_samples"
        )
        models = [self.load(n) for n in task.params["models"]]
        if kind == "plane":
            surface = plane_surface(models, s["steps"], s["margin"], ["A aligned", "B", label])
        else:
            r = s["range"]
            surface = random_surface(models[0], 2, -r, r, s["steps"], s["seed"], False, label)
        return compute_surface(models[0], surface, split, m.batch_size, {**s, "kind": kind})
