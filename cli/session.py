"""What a command does around the libraries: device and torchrun set-up, loading checkpoints and the
data (once per command, checked against every model), and printing results for people or as one JSON
object.

Imported inside command bodies only, so that `--help` never loads torch."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch import nn

from landscape import dist, progress
from landscape.data.datasets import Dataset, load_data, normalize_label
from landscape.data.record import data_mismatch, recorded_source
from landscape.data.selection import DataSpec
from landscape.data.split import check_labels
from landscape.errors import LandscapeError, check_finite, warn
from landscape.io.checkpoint import file_hash, load_checkpoint
from landscape.spec import spec_of

from .messages import recorded_warnings


def device_of(name: str) -> torch.device:
    """Parse --device; `auto` picks CUDA when present (each rank its local GPU under torchrun)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise LandscapeError(f"unknown device {name!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise LandscapeError("--device cuda asked for, but no CUDA device is available")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


class Session:
    """One command's run: its device, the checkpoints it read (`models`) and the data it loaded."""

    def __init__(self, device: str = "cpu", quiet: bool = False, as_json: bool = False):
        self.device = device_of(device)
        dist.init(self.device)
        progress.set_quiet(quiet or as_json)
        self.as_json = as_json
        self.models: list[dict[str, str]] = []
        self.metas: list[dict] = []

    def load(self, path: str) -> tuple[nn.Module, dict]:
        """A checkpoint on the session's device (eval mode), recorded as `{path, sha256}`."""
        model, meta = load_checkpoint(path, self.device)
        check_finite(model, str(path))
        self.models.append({"path": str(path), "sha256": file_hash(path)})
        self.metas.append(meta)
        return model, meta

    def data(
        self, spec: str | DataSpec | None, models: list[nn.Module], normalize: str = "auto"
    ) -> Dataset:
        """The dataset (no source: the one the checkpoints record, else digits), loaded once,
        checked against every model (input shape, label range, and the record of its training data:
        a warning for other data or inputs beyond the training range). `normalize` "auto" uses the
        input statistics the checkpoints recorded, else the training split's. Rows of as many values
        as a flattening model's (MLP) input shape are reshaped to it."""
        if spec is None or (isinstance(spec, DataSpec) and spec.source is None):
            source = self._recorded_source()
            spec = source if spec is None else spec.with_default(source)
        try:
            data = load_data(spec, device=self.device, normalize=self._normalize(normalize))
        except (
            LandscapeError
        ):  # the normalisation does not fit the data: a shape mismatch is the first cause
            self._check_shapes(load_data(spec, normalize="none"), models, spec)
            raise
        data = self._check_shapes(data, models, spec)
        for model in models:
            model_spec = spec_of(model)
            classes = (
                data.num_classes
                if model_spec is None or model_spec.num_classes is None
                else model_spec.num_classes
            )
            for split in (data.train, data.val, data.test):
                check_labels(split, classes)
        for meta, ref in zip(self.metas, self.models):
            for problem in data_mismatch(meta, data):
                warn(f"{ref['path']}: {problem}")
        return data

    @staticmethod
    def _check_shapes(data: Dataset, models: list[nn.Module], spec: str | DataSpec) -> Dataset:
        """`data` with inputs of the models' shape (rows reshaped for an MLP), or a one-line
        error."""
        for model in models:
            model_spec = spec_of(model)
            shape = None if model_spec is None else model_spec.input_shape
            if (
                shape is not None
                and tuple(shape) != tuple(data.input_shape)
                and model_spec.arch == "mlp"
                and math.prod(shape) == math.prod(data.input_shape)
            ):
                data = data.reshaped(shape)
            if shape is not None and tuple(shape) != tuple(data.input_shape):
                raise LandscapeError(
                    f"data {str(spec)!r} has inputs of shape {tuple(data.input_shape)}, the model "
                    f"expects {tuple(shape)}"
                )
        return data

    def _recorded_source(self) -> str:
        sources = sorted({s for s in map(recorded_source, self.metas) if s is not None})
        if len(sources) > 1:
            raise LandscapeError(
                f"the checkpoints record different data ({', '.join(sources)}): give --data"
            )
        return sources[0] if sources else "digits"

    def _normalize(self, normalize: str) -> Any:
        if normalize != "auto":
            return normalize
        recorded = [
            np.asarray(meta["normalize"], dtype=float)
            for meta in self.metas
            if meta.get("normalize") is not None
        ]
        # equal up to float32 rounding (checkpoints fused before the values were recorded as given
        # hold float32 copies)
        if any(
            r.shape != recorded[0].shape or not np.allclose(r, recorded[0], rtol=1e-6, atol=0)
            for r in recorded
        ):
            raise LandscapeError(
                "the checkpoints record different input normalisations: give --normalize"
            )
        return recorded[0].tolist() if recorded else "auto"

    def settings(self, data: Dataset, **more: Any) -> dict[str, Any]:
        """The settings every result records: the checkpoints, the data and its normalisation, and
        `more`."""
        return {
            "models": [dict(m) for m in self.models],
            "data": data.name,
            "normalize": [list(pair) for pair in data.normalize],
            **({"selection": data.selection.record()} if not data.selection.whole else {}),
            **more,
        }

    def emit(self, result: dict, text: str) -> None:
        """Print `text` for people or `result` as one JSON object (with the `warnings` printed, if
        any); only rank 0 prints."""
        if not dist.is_main():
            return
        click.echo(json.dumps(_jsonable(with_warnings(result))) if self.as_json else text)


def with_warnings(record: dict[str, Any]) -> dict[str, Any]:
    """`record` plus the `warnings` this command printed so far, when there were any."""
    notes = recorded_warnings()
    return {**record, "warnings": notes} if notes else dict(record)


def stored(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` as HDF5 attributes: the checkpoints as parallel lists `models` (paths) and
    `sha256`, the normalisation as its label ("none" or "MEAN,STD;..."), and the warnings printed so
    far."""
    models = settings.get("models", [])
    rest = {k: v for k, v in with_warnings(settings).items() if k not in ("models", "normalize")}
    out = {**rest, "models": [m["path"] for m in models], "sha256": [m["sha256"] for m in models]}
    if "normalize" in settings:
        out["normalize"] = normalize_label(settings["normalize"])
    if "selection" in settings:
        out["selection"] = json.dumps(settings["selection"], sort_keys=True)
    return out


def stem(path: str) -> str:
    """A checkpoint's file name without its suffix (the default name of stored groups)."""
    return Path(path).stem


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def parse_floats(value: str, what: str) -> list[float]:
    """Parse a comma-separated list of numbers."""
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise LandscapeError(f"{what}: expected comma-separated numbers, got {value!r}") from None


def parse_range(value: str) -> tuple[float, float]:
    """Parse `lo:hi`, lo below hi."""
    lo, sep, hi = value.partition(":")
    try:
        if not sep or not float(lo) < float(hi):
            raise ValueError
        return float(lo), float(hi)
    except ValueError:
        raise LandscapeError(f"--range: expected lo:hi with lo < hi, got {value!r}") from None
