"""Coordinates in parameter space: random directions, principal directions, planes and paths.

(Filter-)normalised random directions, the principal directions of a training trajectory, the
plane through three models, and piecewise-linear paths. Each returns anchor states and the
coefficients that `points.evaluate_points` evaluates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..choices import DIRECTION_NORMS
from ..errors import LandscapeError
from .points import State


def _params(model_or_state: nn.Module | State, names: Sequence[str]) -> list[torch.Tensor]:
    """The tensors `names` of a model or state dict, detached.

    Returns:
        One tensor per name.
    """
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return [state[n].detach() for n in names]


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the trainable parameters, in `model.parameters()` order.

    Args:
        model: the model.

    Returns:
        The names of the parameters that require gradients.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> trainable_names(model)
        ['weight', 'bias']
        >>> _ = model.bias.requires_grad_(False)
        >>> trainable_names(model)
        ['weight']
    """
    return [n for n, p in model.named_parameters() if p.requires_grad]


def filter_normalised_direction(
    model: nn.Module, generator: torch.Generator, include_1d: bool = False, norm: str = "filter"
) -> dict[str, torch.Tensor]:
    """A Gaussian direction with every filter rescaled to the norm of the same filter of the model.

    Li, Xu, Taylor, Studer & Goldstein ("Visualizing the loss landscape of neural nets", NeurIPS
    2018, section 4): for each parameter with at least two dimensions, each slice along the first
    dimension (a convolution filter, a row of a linear layer) gets `d_i <- d_i * ||θ_i|| / ||d_i||`.
    One-dimensional parameters (biases, BatchNorm scales and shifts) get zero unless `include_1d`,
    in which case the direction copies them, as their reference code does. Buffers never move. The
    normal draws happen on the CPU in parameter order, so a seed gives the same direction on every
    device and rank.

    `norm` chooses the other normalisations their reference code offers (`choices.DIRECTION_NORMS`):
    "layer" rescales each parameter tensor as a whole to the norm of the model's, `d <- d * ||θ|| /
    ||d||`; "weight" scales each entry by its weight, `d <- d * θ`; "none" keeps the Gaussian draw.
    The draws are the same for every `norm`.

    Args:
        model: the model the direction starts from.
        generator: the CPU generator of the Gaussian draws.
        include_1d: copy one-dimensional parameters instead of zeroing them.
        norm: "filter", "layer", "weight" or "none".

    Returns:
        A state dict of the model's keys: the direction on trainable parameters, zero on buffers and
        frozen parameters (integer buffers copied).

    Raises:
        LandscapeError: an unknown `norm`.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2)
        >>> d = filter_normalised_direction(model, torch.Generator().manual_seed(0))
        >>> torch.allclose(d["weight"].norm(dim=1), model.weight.norm(dim=1)), d["bias"].tolist()
        (True, [0.0, 0.0])
    """
    if norm not in DIRECTION_NORMS:
        raise LandscapeError(
            f"unknown direction normalisation {norm!r}; choose one of {', '.join(DIRECTION_NORMS)}"
        )
    names = set(trainable_names(model))
    out = {}
    for key, value in model.state_dict().items():
        if key not in names:
            out[key] = torch.zeros_like(value) if value.is_floating_point() else value.clone()
            continue
        w = value.detach()
        d = torch.randn(w.shape, generator=generator, dtype=torch.float32).to(w.device, w.dtype)
        if w.dim() <= 1:
            d = w.clone() if include_1d else torch.zeros_like(w)
        elif norm == "filter":
            w_norm = w.flatten(1).norm(dim=1)
            d_norm = d.flatten(1).norm(dim=1)
            d = d * (w_norm / (d_norm + 1e-10)).view(-1, *[1] * (w.dim() - 1))
        elif norm == "layer":
            d = d * (w.norm() / (d.norm() + 1e-10))
        elif norm == "weight":
            d = d * w
        out[key] = d
    return out


def pca_directions(
    final: State, trajectory: Sequence[State], names: Sequence[str]
) -> tuple[list[dict[str, torch.Tensor]], np.ndarray, np.ndarray]:
    """The two principal directions of a training trajectory around its final point.

    Li et al. 2018 ("Visualizing the loss landscape of neural nets", NeurIPS 2018, section 7): with
    θ_n the `final` state and θ_0..θ_{m-1} the `trajectory` states, the rows θ_i - θ_n of the
    trainable parameters `names` (flattened) are centred and decomposed by SVD; the first two right
    singular vectors are the directions (orthonormal, as states: zero for every other key), the
    squares of their singular values over the total the share of the trajectory's variance each
    explains. The trajectory's coordinates are the projections of θ_i - θ_n on the two directions,
    so the final state sits at the origin.

    Args:
        final: the state the plane is centred on.
        trajectory: the states along training (at least three).
        names: the parameters the directions move.

    Returns:
        (two direction states, the (m, 2) coordinates of the trajectory, the 2 explained variance
        ratios).

    Raises:
        LandscapeError: with fewer than three trajectory states or a trajectory that does not span
            two dimensions.

    Examples:
        Rows (2, 0, 0), (0, 1, 0), (-2, 0, 0), centred: variances 8 along x and 2/3 along y (the
        signs of singular vectors are arbitrary, so absolute values are shown):

        >>> import torch
        >>> final = {"w": torch.zeros(3)}
        >>> path = [{"w": torch.tensor(r)} for r in ([2.0, 0, 0], [0, 1.0, 0], [-2.0, 0, 0])]
        >>> dirs, coords, explained = pca_directions(final, path, ["w"])
        >>> [d["w"].abs().round(decimals=4).tolist() for d in dirs], abs(coords).round(4).tolist()
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[2.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
        >>> explained.round(4).tolist()  # 8 / (8 + 2/3), (2/3) / (8 + 2/3)
        [0.9231, 0.0769]
    """
    if len(trajectory) < 3:
        raise LandscapeError(
            f"PCA directions need at least 3 trajectory checkpoints, got {len(trajectory)}"
        )
    origin = torch.cat([t.double().flatten() for t in _params(final, names)])
    rows = torch.stack(
        [torch.cat([t.double().flatten() for t in _params(s, names)]) - origin for s in trajectory]
    )
    _, sing, vh = torch.linalg.svd(rows - rows.mean(0), full_matrices=False)
    if len(sing) < 2 or float(sing[1]) <= 1e-12 * max(float(sing[0]), 1e-300):
        raise LandscapeError(
            "the trajectory checkpoints do not span two dimensions (identical or collinear "
            "states): PCA gives no plane"
        )
    explained = (sing[:2] ** 2 / (sing**2).sum()).numpy()
    directions = []
    for v in vh[:2]:
        state = {
            k: (torch.zeros_like(t) if t.is_floating_point() else t.clone())
            for k, t in final.items()
        }
        for name, piece in zip(names, v.split([final[n].numel() for n in names])):
            state[name] = piece.view_as(final[name]).to(final[name].dtype)
        directions.append(state)
    return directions, (rows @ vh[:2].T).numpy(), explained


def grid(lo: float, hi: float, steps: int) -> np.ndarray:
    """`steps` evenly spaced values from `lo` to `hi`.

    Args:
        lo: the first value.
        hi: the last value.
        steps: how many values.

    Returns:
        The values.

    Raises:
        LandscapeError: `steps` below 2 or `lo` not below `hi`.

    Examples:
        >>> grid(-1.0, 1.0, 5).tolist()
        [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    if steps < 2:
        raise LandscapeError(f"`steps` must be at least 2, got {steps}")
    if not hi > lo:
        raise LandscapeError(f"`lo` must be less than `hi`, got {lo} and {hi}")
    return np.linspace(lo, hi, steps)


def grid_coefficients(xs: np.ndarray, ys: np.ndarray | None, weights: np.ndarray) -> torch.Tensor:
    """Coefficients of a grid in row-major (x, y) order: point `(x, y)` is `w0 + x w1 + y w2`.

    Args:
        xs: the x values.
        ys: the y values, or None for a line.
        weights: `(3, K)` (or `(2, K)` for a line): the anchor coefficients of the origin, of the x
            axis and of the y axis.

    Returns:
        (len(xs) * len(ys), K) or (len(xs), K) float64 coefficients over the K anchors.

    Examples:
        >>> import numpy as np
        >>> grid_coefficients(np.array([0.0, 1.0]), np.array([0.0, 2.0]), np.eye(3)).tolist()
        [[1.0, 0.0, 0.0], [1.0, 0.0, 2.0], [1.0, 1.0, 0.0], [1.0, 1.0, 2.0]]
    """
    w = torch.as_tensor(weights, dtype=torch.float64)
    x = torch.as_tensor(xs, dtype=torch.float64)
    if ys is None:
        return w[0] + x[:, None] * w[1]
    y = torch.as_tensor(ys, dtype=torch.float64)
    gx, gy = torch.meshgrid(x, y, indexing="ij")
    return w[0] + gx.reshape(-1, 1) * w[1] + gy.reshape(-1, 1) * w[2]


def serpentine(shape: tuple[int, ...]) -> np.ndarray:
    """Flat row-major indices of a 1-D or 2-D grid in serpentine order (every other row reversed).

    Each point is then a neighbour of the one before it, as the walk of `points.evaluate_points`
    wants.

    Args:
        shape: (n,) or (n, m).

    Returns:
        The indices.

    Examples:
        >>> serpentine((2, 3)).tolist()
        [0, 1, 2, 5, 4, 3]
    """
    order = np.arange(math.prod(shape)).reshape(shape[0], -1)
    order[1::2] = order[1::2, ::-1]
    return order.reshape(-1)


# the third model of a plane must be at least this fraction of |B - A| off the line through A, B
COLLINEAR = 1e-5


def plane_axes(states: Sequence[State], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal axes of the plane through three models.

    Garipov, Izmailov, Podoprikhin, Vetrov & Wilson ("Loss surfaces, mode connectivity, and fast
    ensembling of DNNs", NeurIPS 2018, section 3.3): origin A, x along `B - A`, y along the part of
    `C - A` orthogonal to it, lengths in parameter-space units (trainable parameters).

    Args:
        states: the three models' state dicts A, B, C.
        names: the parameters that span the plane.

    Returns:
        The `(3, 3)` anchor coefficients of origin, x and y for `grid_coefficients`, and the
        `(3, 2)` coordinates of A, B and C in the plane.

    Raises:
        LandscapeError: A and B identical, or C (within COLLINEAR) on the line through them.

    Examples:
        >>> import torch
        >>> states = [{"w": torch.tensor(v)} for v in ([0.0, 0.0], [2.0, 0.0], [1.0, 1.0])]
        >>> weights, coords = plane_axes(states, ["w"])
        >>> coords.tolist()
        [[0.0, 0.0], [2.0, 0.0], [1.0, 1.0]]
        >>> weights.tolist()  # x axis (B - A) / 2, y axis C - A - (B - A) / 2
        [[1.0, 0.0, 0.0], [-0.5, 0.5, 0.0], [-0.5, -0.5, 1.0]]
    """
    a, b, c = (torch.cat([t.double().flatten() for t in _params(s, names)]) for s in states)
    u, w = b - a, c - a
    u_norm = float(u.norm())
    if u_norm == 0:
        raise LandscapeError("the first two models are identical: they do not span a plane")
    along = float(w @ u) / u_norm
    v_norm = float((w - along * u / u_norm).norm())
    if (
        v_norm <= COLLINEAR * u_norm
    ):  # float32 rounding puts an exact midpoint about 1e-8 * |B - A| off the line
        raise LandscapeError(
            f"the three models lie on one line (the third is {v_norm:.3g} off the line through the "
            f"first two, which are {u_norm:.3g} apart): they do not span a plane; a two-model "
            "average or fusion is the midpoint of its aligned parents, so plot a fine-tuned one"
        )
    weights = np.array(
        [
            [1.0, 0.0, 0.0],
            [-1 / u_norm, 1 / u_norm, 0.0],
            [(along / u_norm - 1) / v_norm, -along / (u_norm * v_norm), 1 / v_norm],
        ]
    )
    coords = np.array([[0.0, 0.0], [u_norm, 0.0], [along, v_norm]])
    return weights, coords


def plane_ranges(
    coords: np.ndarray, margin: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The x and y ranges covering the models' coordinates, padded by `margin` of the larger extent.

    The padding is the same on each side of both axes, so a third model close to the line through
    the first two still gets a readable plane.

    Args:
        coords: (n, 2) coordinates of the models.
        margin: the padding, as a fraction of the larger extent.

    Returns:
        ((x0, x1), (y0, y1)).

    Examples:
        >>> import numpy as np
        >>> plane_ranges(np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0]]), 0.5)
        ((-1.0, 3.0), (-1.0, 2.0))
    """
    lo, hi = coords.min(0), coords.max(0)
    pad = margin * float((hi - lo).max())
    return (float(lo[0] - pad), float(hi[0] + pad)), (float(lo[1] - pad), float(hi[1] + pad))


def path_coefficients(n_models: int, steps: int) -> tuple[np.ndarray, torch.Tensor]:
    """Piecewise-linear path through `n_models` models, `steps` points per segment (ends shared).

    The coordinate `t` runs from 0 to `n_models - 1`; model `k` sits at `t = k`.

    Args:
        n_models: the models the path goes through.
        steps: points per segment, both ends included.

    Returns:
        (t, coefficients (len(t), n_models) float64).

    Raises:
        LandscapeError: fewer than two models or `steps` below 2.

    Examples:
        >>> t, coeffs = path_coefficients(3, 3)
        >>> t.tolist()
        [0.0, 0.5, 1.0, 1.5, 2.0]
        >>> coeffs.tolist()
        [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]
    """
    if n_models < 2:
        raise LandscapeError("a path needs at least two models")
    if steps < 2:
        raise LandscapeError(f"`steps` must be at least 2, got {steps}")
    t = np.linspace(0.0, n_models - 1, (n_models - 1) * (steps - 1) + 1)
    coeffs = torch.zeros(len(t), n_models, dtype=torch.float64)
    for p, tp in enumerate(t):
        k = min(math.floor(tp), n_models - 2)
        frac = tp - k
        coeffs[p, k], coeffs[p, k + 1] = 1 - frac, frac
    return t, coeffs
