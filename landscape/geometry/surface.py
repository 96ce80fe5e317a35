"""Loss surfaces: 1-D and 2-D random-direction contours, the plane of a training trajectory's
principal directions, the plane through three models and paths through models, computed in chunks
and stored in a resumable HDF5 group `/surfaces/<name>/<kind>`.

The group holds `x` (and `y`), `loss` and `acc` with axis order (x, y) (attribute `axes`), a `done`
mask, and `model_x`/`model_y` with the coordinates of the models to mark (attribute `models`); a PCA
surface also the trajectory's coordinates `path_x`/`path_y` and the variance share `explained` of
each direction. After every chunk the finished points are written (atomically, at most every
`save_every` seconds); a rerun with the same `key` evaluates only the points not yet done, so a
killed run continues where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import progress
from ..errors import LandscapeError, check_finite
from ..io.store import content_key, read_result, write_result
from ..loss import Criterion
from ..models.outputs import Output
from .directions import (
    filter_normalised_direction,
    grid,
    grid_coefficients,
    path_coefficients,
    pca_directions,
    plane_axes,
    plane_ranges,
    serpentine,
    trainable_names,
)
from .points import Data, State, evaluate_points
from .repaired import evaluate_repaired


@dataclass
class Surface:
    """Where to evaluate: anchor states, coefficients per point, axes and the models to mark."""

    kind: str
    anchors: list[State]
    coeffs: torch.Tensor
    x: np.ndarray
    y: np.ndarray | None = None
    model_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    model_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    models: list[str] = field(default_factory=list)
    path_x: np.ndarray | None = (
        None  # a training trajectory's coordinates (PCA directions), drawn as a line
    )
    path_y: np.ndarray | None = None
    explained: np.ndarray | None = (
        None  # the share of the trajectory's variance along each PCA direction
    )

    @property
    def shape(self) -> tuple[int, ...]:
        """(len(x),) or (len(x), len(y))."""
        return (len(self.x),) if self.y is None else (len(self.x), len(self.y))


def random_surface(
    model: nn.Module,
    dims: int,
    lo: float,
    hi: float,
    steps: int,
    seed: int,
    include_1d: bool = False,
    name: str = "model",
    norm: str = "filter",
) -> Surface:
    """`θ + x d1 (+ y d2)` over a `steps`-point grid of [lo, hi] per axis, random directions
    normalised as `norm` says (filter-wise by default, `directions.filter_normalised_direction`).
    """
    check_finite(model, name)
    gen = torch.Generator().manual_seed(seed)
    dirs = [filter_normalised_direction(model, gen, include_1d, norm) for _ in range(dims)]
    xs = grid(lo, hi, steps)
    ys = xs if dims == 2 else None
    weights = np.eye(dims + 1)
    return Surface(
        f"{dims}d",
        [model.state_dict(), *dirs],
        grid_coefficients(xs, ys, weights),
        xs,
        ys,
        np.zeros(1),
        np.zeros(1),
        [name],
    )


def pca_surface(
    model: nn.Module,
    trajectory: Sequence[State],
    steps: int,
    margin: float,
    include_1d: bool = False,
    name: str = "model",
) -> Surface:
    """`θ + x d1 + y d2` with d1, d2 the principal directions of the `trajectory` around the model θ
    (Li et al. 2018, section 7; `directions.pca_directions`), over the trajectory's extent padded by
    `margin` of it; the trajectory's coordinates are kept to be drawn. One-dimensional parameters
    stay fixed unless `include_1d`.
    """
    check_finite(model, name)
    state = model.state_dict()
    names = [n for n in trainable_names(model) if include_1d or state[n].dim() > 1]
    dirs, coords, explained = pca_directions(state, trajectory, names)
    (x0, x1), (y0, y1) = plane_ranges(np.vstack([coords, np.zeros((1, 2))]), margin)
    xs, ys = grid(x0, x1, steps), grid(y0, y1, steps)
    return Surface(
        "pca",
        [state, *dirs],
        grid_coefficients(xs, ys, np.eye(3)),
        xs,
        ys,
        np.zeros(1),
        np.zeros(1),
        [name],
        coords[:, 0],
        coords[:, 1],
        explained,
    )


def plane_surface(
    models: Sequence[nn.Module], steps: int, margin: float, names: Sequence[str]
) -> Surface:
    """The plane through three models (A at the origin, B on the x axis), padded by `margin` of the
    extent.
    """
    for model, name in zip(models, names):
        check_finite(model, name)
    states = [m.state_dict() for m in models]
    weights, coords = plane_axes(states, trainable_names(models[0]))
    (x0, x1), (y0, y1) = plane_ranges(coords, margin)
    xs, ys = grid(x0, x1, steps), grid(y0, y1, steps)
    return Surface(
        "plane",
        states,
        grid_coefficients(xs, ys, weights),
        xs,
        ys,
        coords[:, 0],
        coords[:, 1],
        list(names),
    )


def path_surface(models: Sequence[nn.Module], steps: int, names: Sequence[str]) -> Surface:
    """The piecewise-linear path through the models, `steps` points per segment."""
    for model, name in zip(models, names):
        check_finite(model, name)
    t, coeffs = path_coefficients(len(models), steps)
    return Surface(
        "path",
        [m.state_dict() for m in models],
        coeffs,
        t,
        None,
        np.arange(len(models), dtype=float),
        np.zeros(len(models)),
        list(names),
    )


def _arrays(s: Surface, values: np.ndarray, done: np.ndarray) -> dict[str, np.ndarray]:
    arrays = {
        "x": s.x,
        "loss": values[:, 0].reshape(s.shape),
        "acc": values[:, 1].reshape(s.shape),
        "done": done.reshape(s.shape),
        "model_x": s.model_x,
        "model_y": s.model_y,
    }
    if s.y is not None:
        arrays["y"] = s.y
    if s.path_x is not None:
        arrays.update(path_x=s.path_x, path_y=s.path_y, explained=s.explained)
    return arrays


def _resume(out: Path | None, group: str, key: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and done mask stored by an earlier run with the same key (nothing done otherwise)."""
    values, done = np.full((n, 2), np.nan), np.zeros(n, dtype=bool)
    if out is None or not out.exists():
        return values, done
    try:
        arrays, attrs = read_result(out, group)
    except KeyError:
        return values, done
    if attrs.get("key") != key or arrays["done"].size != n:
        return values, done
    done = arrays["done"].reshape(-1).astype(bool)
    values[:, 0], values[:, 1] = arrays["loss"].reshape(-1), arrays["acc"].reshape(-1)
    return values, done


def compute_surface(
    model: nn.Module,
    surface: Surface,
    data: Data,
    batch_size: int,
    settings: dict,
    *,
    out: str | Path | None = None,
    group: str = "",
    batching: str = "auto",
    parallel: str = "data",
    chunk: int | None = None,
    save_every: float = 5.0,
    criterion: Criterion = "ce",
    output: Output = None,
    repair_on: Data | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Evaluate the surface's points not yet stored under `group` in `out`; return its arrays and
    attributes.

    `data` is a `Split` or any re-iterable of batches (`landscape.data.batches`); `criterion` "ce",
    "nll", "lm" or a loss callable; `output` the prediction's tensor (`landscape.models.outputs`);
    `settings` are stored as attributes and hashed into the group's `key`. `repair_on`: REPAIR every
    point between models on these examples first (a path; `landscape.geometry.repaired`).
    """
    if repair_on is not None and surface.kind != "path":
        raise LandscapeError(
            f"REPAIR applies to points between models (a path), not to a {surface.kind} surface"
        )
    out = Path(out) if out else None
    n = len(surface.coeffs)
    key = content_key(settings)
    attrs = {
        **settings,
        "kind": surface.kind,
        "axes": "x" if surface.y is None else "x,y",
        "models": list(surface.models),
        "key": key,
    }
    values, done = _resume(out, group, key, n)
    order = serpentine(surface.shape)
    todo = order[~done[order]]  # in serpentine order, so that the walk steps between neighbours
    bar = progress.bar(total=n, desc=f"contour {surface.kind}")
    bar.update(int(done.sum()))
    last = time.monotonic()

    def save(force: bool = False) -> None:
        nonlocal last
        if out is not None and (force or time.monotonic() - last >= save_every):
            write_result(
                out, group, _arrays(surface, values, done), {**attrs, "complete": bool(done.all())}
            )
            last = time.monotonic()

    def finished(rows: range, result: torch.Tensor) -> None:
        idx = todo[rows.start : rows.stop]
        values[idx] = result[0].cpu().numpy()
        done[idx] = True
        bar.update(len(idx))
        save()

    if len(todo) and repair_on is not None:
        evaluate_repaired(
            model,
            surface.anchors,
            surface.coeffs[torch.as_tensor(todo)],
            [data],
            repair_on,
            batch_size,
            criterion=criterion,
            on_point=lambda p, values: finished(range(p, p + 1), values[:, None]),
        )
    elif len(todo):
        evaluate_points(
            model,
            surface.anchors,
            surface.coeffs[torch.as_tensor(todo)],
            [data],
            batch_size,
            batching=batching,
            parallel=parallel,
            chunk=chunk,
            on_chunk=finished,
            criterion=criterion,
            output=output,
        )
    bar.close()
    save(force=True)
    return _arrays(surface, values, done), {**attrs, "complete": True}
