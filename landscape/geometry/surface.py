"""Loss surfaces: contours, planes and paths, computed in chunks and stored resumably in HDF5.

1-D and 2-D random-direction contours, the plane of a training trajectory's principal
directions, the plane through three models and paths through models are each a `Surface`;
`compute_surface` evaluates one and stores it in the group `/surfaces/<name>/<kind>`.

The group holds `x` (and `y`), `loss` and `acc` with axis order (x, y) (attribute `axes`), a
`done` mask, and `model_x`/`model_y` with the coordinates of the models to mark (attribute
`models`); a PCA surface also the trajectory's coordinates `path_x`/`path_y` and the variance
share `explained` of each direction. After every chunk the finished points are written
(atomically, at most every `save_every` seconds); a rerun with the same `key` evaluates only the
points not yet done, so a killed run continues where it stopped.
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
    """Where to evaluate: anchor states, coefficients per point, axes and the models to mark.

    Attributes:
        kind: "1d", "2d", "pca", "plane" or "path".
        anchors: the K states the points combine.
        coeffs: (points, K) coefficients, row-major over (x, y).
        x: the x values.
        y: the y values, or None for a line.
        model_x: the x coordinates of the models to mark.
        model_y: their y coordinates.
        models: their names.
        path_x: a training trajectory's x coordinates (PCA directions), drawn as a line.
        path_y: its y coordinates.
        explained: the share of the trajectory's variance along each PCA direction.

    Examples:
        >>> import torch
        >>> models = [torch.nn.Linear(2, 1) for _ in range(3)]
        >>> s = path_surface(models, 3, ["A", "B", "C"])
        >>> s.kind, s.shape, s.x.tolist(), s.model_x.tolist()
        ('path', (5,), [0.0, 0.5, 1.0, 1.5, 2.0], [0.0, 1.0, 2.0])
    """

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
    """`θ + x d1 (+ y d2)` over a `steps`-point grid of [lo, hi] per axis, random directions.

    The directions are normalised as `norm` says (filter-wise by default,
    `directions.filter_normalised_direction`). A non-finite model is refused by `check_finite`.

    Args:
        model: the model θ at the origin.
        dims: 1 or 2 directions.
        lo: the grid's first value on each axis.
        hi: its last value.
        steps: points per axis.
        seed: seeds the directions.
        include_1d: move one-dimensional parameters too.
        name: the model's name, marked at the origin.
        norm: "filter", "layer", "weight" or "none".

    Returns:
        The surface; its anchors are the model's state and the directions.

    Examples:
        >>> import torch
        >>> s = random_surface(torch.nn.Linear(2, 1), dims=2, lo=-1.0, hi=1.0, steps=3, seed=0)
        >>> s.kind, s.shape, len(s.anchors), s.coeffs[:2].tolist()  # 1 θ + x d1 + y d2
        ('2d', (3, 3), 3, [[1.0, -1.0, -1.0], [1.0, -1.0, 0.0]])
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
    """`θ + x d1 + y d2` with d1, d2 the principal directions of the `trajectory` around θ.

    Li et al. 2018, section 7 (`directions.pca_directions`). The grid covers the trajectory's extent
    and the origin, padded by `margin` of it; the trajectory's coordinates are kept to be drawn.
    One-dimensional parameters stay fixed unless `include_1d`. A non-finite model is refused by
    `check_finite`.

    Args:
        model: the model θ at the origin (the trajectory's final point).
        trajectory: state dicts along training (at least three).
        steps: points per axis.
        margin: the padding, as a fraction of the larger extent.
        include_1d: move one-dimensional parameters too.
        name: the model's name, marked at the origin.

    Returns:
        The surface, with the trajectory's coordinates and the variance share of each direction.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(3, 1, bias=False)
        >>> _ = torch.nn.init.zeros_(model.weight)
        >>> rows = ([2.0, 0, 0], [0, 1.0, 0], [-2.0, 0, 0])
        >>> path = [{"weight": torch.tensor([r])} for r in rows]
        >>> s = pca_surface(model, path, steps=5, margin=0.1)
        >>> s.kind, s.shape, s.explained.round(4).tolist(), abs(s.path_x).round(4).tolist()
        ('pca', (5, 5), [0.9231, 0.0769], [2.0, 0.0, 2.0])
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
    """The plane through three models (A at the origin, B on the x axis), padded by `margin` of it.

    Non-finite models, and three models that do not span a plane, are refused by the checks this
    calls.

    Args:
        models: A, B and C.
        steps: points per axis.
        margin: the padding, as a fraction of the larger extent (`directions.plane_ranges`).
        names: the models' names, marked at their coordinates.

    Returns:
        The surface; its anchors are the three states.

    Examples:
        >>> import torch
        >>> models = [torch.nn.Linear(2, 1, bias=False) for _ in range(3)]
        >>> for m, w in zip(models, ([0.0, 0.0], [2.0, 0.0], [1.0, 1.0])):
        ...     _ = m.load_state_dict({"weight": torch.tensor([w])})
        >>> s = plane_surface(models, steps=5, margin=0.5, names=["A", "B", "C"])
        >>> s.model_x.tolist(), s.model_y.tolist(), s.x.tolist()
        ([0.0, 2.0, 1.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 1.0, 2.0, 3.0])
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
    """The piecewise-linear path through the models, `steps` points per segment.

    Non-finite models are refused by `check_finite`.

    Args:
        models: the models, in the path's order.
        steps: points per segment, both ends included.
        names: the models' names, marked at t = 0, 1, ...

    Returns:
        The surface; its anchors are the models' states.

    Examples:
        >>> import torch
        >>> s = path_surface([torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)], 3, ["A", "B"])
        >>> s.coeffs.tolist()
        [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    """
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
    """The surface's arrays as stored: values and done mask in the grid's shape, axes and marks.

    Returns:
        The arrays by name.
    """
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
    """Values and done mask stored by an earlier run with the same key (nothing done otherwise).

    Returns:
        ((n, 2) values, (n,) done mask).
    """
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
    """Evaluate the surface's points not yet stored under `group` in `out`, and store them.

    Points already done by a run with the same `key` are read back, the others evaluated in
    serpentine order (`points.evaluate_points`, or `repaired.evaluate_repaired` with `repair_on`)
    and written after every chunk (at most every `save_every` seconds, and at the end).

    Args:
        model: a model of the anchors' architecture.
        surface: where to evaluate.
        data: a `Split` or any re-iterable of batches (`landscape.data.batches`).
        batch_size: examples per batch of a `Split`.
        settings: stored as attributes and hashed into the group's `key`.
        out: the HDF5 store (None: nothing stored).
        group: the group in `out`.
        batching: how points are evaluated (`points.evaluate_points`).
        parallel: how points are shared under torchrun.
        chunk: points between saves (`points.evaluate_points`).
        save_every: the least seconds between two writes.
        criterion: "ce", "nll", "lm" or a loss callable.
        output: which tensor of the model's output is the prediction (`landscape.models.outputs`).
        repair_on: REPAIR every point between models on these examples first (a path only;
            `landscape.geometry.repaired`).

    Returns:
        (the arrays, the attributes) as stored.

    Raises:
        LandscapeError: `repair_on` with a surface that is not a path.

    Examples:
        The path from W = 0 to W = I, stored and read back by a rerun:

        >>> import tempfile
        >>> import torch
        >>> from pathlib import Path
        >>> from landscape.data.split import Split
        >>> a, b = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False)
        >>> _ = torch.nn.init.zeros_(a.weight), torch.nn.init.eye_(b.weight)
        >>> data = Split(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
        >>> s = path_surface([a, b], 3, ["A", "B"])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = Path(tmp) / "surfaces.h5"
        ...     arrays, attrs = compute_surface(a, s, data, 256, {}, out=out, group="s/path")
        ...     again, _ = compute_surface(a, s, data, 256, {}, out=out, group="s/path")
        >>> arrays["loss"].round(4).tolist(), attrs["complete"]
        ([0.6931, 0.3937, 0.2201], True)
        >>> bool((again["loss"] == arrays["loss"]).all())
        True
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
