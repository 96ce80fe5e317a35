"""What every command shares: options, loading with checks, quiet/JSON output, one-line errors."""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import click
import numpy as np
import torch

from landscape import dist, progress
from landscape.checkpoint import load_checkpoint
from landscape.data import Dataset, check_labels, load_data
from landscape.errors import LandscapeError


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
            import os

            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def data_options(f: Callable) -> Callable:
    """--data, --samples, --batch-size, --seed, --split, --device."""
    for opt in reversed([
        click.option("--data", "data_spec", default="digits", show_default=True,
                     help="digits, a .npz file, or mnist:DIR / cifar10:DIR / cifar100:DIR"),
        click.option("--samples", type=int, default=None, help="Use N examples (seeded); default all."),
        click.option("--batch-size", type=int, default=256, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and probes."),
        click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto."),
    ]):
        f = opt(f)
    return f


def output_options(f: Callable) -> Callable:
    """--json, --out FILE.h5, --quiet."""
    for opt in reversed([
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout, nothing else."),
        click.option("--out", type=click.Path(dir_okay=False), default=None, help="Store results in this HDF5 file."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]):
        f = opt(f)
    return f


def start(device: str = "cpu", quiet: bool = False, as_json: bool = False) -> torch.device:
    """Set up a command: parse the device, join torchrun's group if launched by it, silence bars."""
    dev = device_of(device)
    dist.init(dev)
    progress.set_quiet(quiet or as_json)
    return dev


def load_model(path: str, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Load a checkpoint onto `device` (eval mode)."""
    return load_checkpoint(path, device)


def data_for(model: torch.nn.Module, spec: str, device: torch.device) -> Dataset:
    """Load the dataset and check that it fits the model (input shape and label range)."""
    data = load_data(spec, device=device)
    kwargs = getattr(model, "landscape_spec", {}).get("arch_kwargs", {})
    shape = kwargs.get("input_shape")
    if shape is not None and tuple(shape) != tuple(data.input_shape):
        raise LandscapeError(f"data {spec!r} has inputs of shape {tuple(data.input_shape)}, the model expects "
                             f"{tuple(shape)}")
    classes = int(kwargs.get("num_classes", data.num_classes))
    for split in (data.train, data.val, data.test):
        check_labels(split, classes)
    return data


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


def emit(result: dict, as_json: bool, text: str) -> None:
    """Print `text` for people or `result` as one JSON object; only rank 0 prints."""
    if not dist.is_main():
        return
    if as_json:
        click.echo(json.dumps(_jsonable(result)))
    else:
        click.echo(text)


def parse_floats(value: str, what: str) -> list[float]:
    """Parse a comma-separated list of numbers."""
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise LandscapeError(f"{what}: expected comma-separated numbers, got {value!r}") from None


def parse_range(value: str) -> tuple[float, float]:
    """Parse `lo:hi`."""
    lo, sep, hi = value.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(lo), float(hi)
    except ValueError:
        raise LandscapeError(f"--range: expected lo:hi, got {value!r}") from None

