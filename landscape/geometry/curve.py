"""Mode-connecting curves: a path of low loss between two models through a trained bend.

`curve_coefficients` defines the curves (with their papers), `train_curve` trains the bend and
`measure_curve` measures loss, accuracy and barriers along the curve.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .. import progress
from ..choices import CURVE_KINDS
from ..data.batches import as_batches
from ..data.split import Split
from ..errors import LandscapeError, check_finite
from ..loss import Criterion, loss_sum
from ..training.bn import has_batchnorm
from .barrier import Curve, curve_from_values
from .points import Data, evaluate_points, same_layout


def curve_coefficients(kind: str, t: np.ndarray) -> np.ndarray:
    """Weights (len(t), 3) of A, the bend θ and B at each t of a `kind` curve.

    With the endpoints A and B fixed and one bend θ, a point of the curve at t in [0, 1] is
    (Garipov, Izmailov, Podoprikhin, Vetrov & Wilson, "Loss surfaces, mode connectivity, and fast
    ensembling of DNNs", NeurIPS 2018; Draxler, Veschgini, Salmhofer & Hamprecht, "Essentially no
    barriers in neural network energy landscape", ICML 2018):

    - `bezier`: the quadratic Bezier curve (1 - t)^2 A + 2 t (1 - t) θ + t^2 B;
    - `polychain`: the broken line A -> θ -> B, θ reached at t = 1/2.

    Args:
        kind: "bezier" or "polychain".
        t: the curve's parameter values.

    Returns:
        The weights, one row per t.

    Raises:
        LandscapeError: an unknown kind.

    Examples:
        >>> curve_coefficients("bezier", [0.0, 0.5, 1.0]).tolist()
        [[1.0, 0.0, 0.0], [0.25, 0.5, 0.25], [0.0, 0.0, 1.0]]
        >>> curve_coefficients("polychain", [0.25, 0.5]).tolist()
        [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]
    """
    t = np.asarray(t, dtype=np.float64)
    if kind == "bezier":
        return np.stack([(1 - t) ** 2, 2 * t * (1 - t), t**2], axis=1)
    if kind == "polychain":
        first = t < 0.5
        return np.stack(
            [
                np.where(first, 1 - 2 * t, 0.0),
                np.where(first, 2 * t, 2 - 2 * t),
                np.where(first, 0.0, 2 * t - 1),
            ],
            axis=1,
        )
    raise LandscapeError(f"unknown curve kind {kind!r}; choose one of {', '.join(CURVE_KINDS)}")


def _check(a: nn.Module, b: nn.Module) -> None:
    """Refuse endpoints that are not finite or not of one layout.

    Raises:
        LandscapeError: models of different architectures or widths.
    """
    check_finite(a, "model A")
    check_finite(b, "model B")
    if not same_layout([a.state_dict(), b.state_dict()]):
        raise LandscapeError(
            "the two models have different architectures or widths: align them first (`align` ot)"
        )


def train_curve(
    a: nn.Module,
    b: nn.Module,
    data: Split | Data,
    *,
    kind: str = "bezier",
    epochs: int = 10,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    seed: int = 0,
    criterion: Criterion = "ce",
) -> nn.Module:
    """Train the bend of a `kind` curve from A to B (endpoints fixed) on `data`.

    The bend starts at the midpoint of A and B and is trained by SGD on E_t[L(curve(t))], one t
    drawn uniformly per batch (Garipov et al., eq. 3), the model in train mode (BatchNorm normalises
    with batch statistics). Non-finite endpoints, endpoints of different layouts and an unknown
    kind are refused by the checks this calls.

    Args:
        a: endpoint A, aligned to B if wanted.
        b: endpoint B, of A's architecture and widths.
        data: a `Split` (shuffled each epoch with `seed`) or a re-iterable of `(inputs, targets)`
            batches.
        kind: "bezier" or "polychain".
        epochs: passes over `data`.
        lr: SGD's learning rate on the bend's parameters.
        momentum: SGD's momentum.
        weight_decay: SGD's weight decay.
        batch_size: examples per step (a `Split` only).
        seed: the seed of the t drawn per batch and of the shuffling.
        criterion: "ce", "nll" or a loss callable.

    Returns:
        The bend: a copy of A's architecture holding θ (parameters trained; buffers those of the
        midpoint), in eval mode.

    Raises:
        LandscapeError: `epochs` below 1.

    Examples:
        With a learning rate of 0 the bend stays at the midpoint of A and B:

        >>> import torch
        >>> from landscape.data.split import Split
        >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        >>> data = Split(torch.randn(4, 2, generator=torch.Generator().manual_seed(0)),
        ...              torch.tensor([0, 1, 0, 1]))
        >>> bend = train_curve(a, b, data, epochs=1, lr=0.0, batch_size=2)
        >>> torch.allclose(bend.weight, (a.weight + b.weight) / 2), bend.training
        (True, False)
    """
    _check(a, b)
    curve_coefficients(kind, np.zeros(1))
    if epochs < 1:
        raise LandscapeError(f"`epochs` must be at least 1, got {epochs}")
    gen = torch.Generator().manual_seed(seed)
    sa, sb = a.state_dict(), b.state_dict()
    bend = copy.deepcopy(a)
    bend.load_state_dict(
        {k: (v + sb[k]) / 2 if v.is_floating_point() else v for k, v in sa.items()}
    )
    names = [n for n, p in bend.named_parameters() if p.requires_grad]
    params = dict(bend.named_parameters())
    ends = [{n: s[n].detach() for n in names} for s in (sa, sb)]
    optimiser = torch.optim.SGD(
        [params[n] for n in names], lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    loss = loss_sum(criterion)
    device = next(bend.parameters()).device
    bend.train()
    steps = progress.bar(total=epochs, desc=f"curve {kind}", stage=True)
    for epoch in range(epochs):
        if isinstance(data, Split):
            order = torch.randperm(len(data), generator=gen)
            batches = as_batches(Split(data.x[order], data.y[order]), batch_size, device)
        else:
            batches = as_batches(data, batch_size, device)
        for x, y in batches:
            t = float(torch.rand(1, generator=gen))
            c = curve_coefficients(kind, np.array([t]))[0]
            point = {n: c[0] * ends[0][n] + c[1] * params[n] + c[2] * ends[1][n] for n in names}
            out = functional_call(bend, point, (x,))
            optimiser.zero_grad()
            (loss(out, y) / len(y)).backward()
            optimiser.step()
        steps.update(1)
        steps.set_postfix(epoch=epoch + 1)
    steps.close()
    return bend.eval()


def measure_curve(
    a: nn.Module,
    bend: nn.Module,
    b: nn.Module,
    kind: str,
    splits: Mapping[str, Data],
    points: int = 21,
    batch_size: int = 256,
    *,
    criterion: Criterion = "ce",
    reset_bn: bool | None = None,
) -> Curve:
    """Loss and accuracy along the `kind` curve through `bend` at `points` evenly spaced t.

    t = 0 is A and t = 1 is B; the barriers are those of `landscape.geometry.barrier` (the excess
    over the chord between the endpoints' values). Every point is a linear combination of the three
    states, so the curve is measured like the straight line (`evaluate_points`). Non-finite
    endpoints, endpoints of different layouts and an unknown kind are refused by the checks this
    calls.

    Args:
        a: endpoint A.
        bend: the bend (`train_curve`).
        b: endpoint B.
        kind: "bezier" or "polychain".
        splits: `{"train": ..., "test": ...}` (the test split optional).
        points: values of t, both ends included.
        batch_size: examples per batch of a `Split`.
        criterion: "ce", "nll" or a loss callable.
        reset_bn: recompute BatchNorm statistics on the train split at every point [whenever the
            model has BatchNorm: the bend's interpolated statistics mean nothing].

    Returns:
        A `Curve` whose `alphas` are the t values.

    Raises:
        LandscapeError: a bend of another architecture, or `points` below 2.

    Examples:
        A Bezier curve whose bend is the midpoint is the straight line (W = 0 to W = I):

        >>> import torch
        >>> from landscape.data.split import Split
        >>> a, b = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False)
        >>> _ = torch.nn.init.zeros_(a.weight), torch.nn.init.eye_(b.weight)
        >>> bend = torch.nn.Linear(2, 2, bias=False)
        >>> _ = bend.load_state_dict({"weight": torch.eye(2) / 2})
        >>> data = Split(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
        >>> curve = measure_curve(a, bend, b, "bezier", {"train": data}, points=3)
        >>> curve.train_loss.round(4).tolist()  # as `interpolation_curve` gives
        [0.6931, 0.3937, 0.2201]
    """
    _check(a, b)
    if not same_layout([a.state_dict(), bend.state_dict()]):
        raise LandscapeError("the bend has another architecture than the endpoints")
    if points < 2:
        raise LandscapeError(f"`points` must be at least 2 (both ends), got {points}")
    reset = has_batchnorm(a) if reset_bn is None else reset_bn
    t = np.linspace(0.0, 1.0, points)
    order = [splits[name] for name in ("train", "test") if name in splits]
    values = (
        evaluate_points(
            a,
            [a.state_dict(), bend.state_dict(), b.state_dict()],
            torch.from_numpy(curve_coefficients(kind, t)),
            order,
            batch_size,
            reset_on=splits["train"] if reset else None,
            criterion=criterion,
        )
        .cpu()
        .numpy()
    )
    test = values[1] if "test" in splits else np.full((0, 2), np.nan)
    return curve_from_values(t, values[0], test, reset)
