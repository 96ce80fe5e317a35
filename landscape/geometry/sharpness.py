"""Worst-case and average-case sharpness, standard or adaptive, in an L2 or L-infinity ball.

`measure_sharpness` measures both around a model (its docstring has the definitions and their
papers); `SharpnessResult` holds what it finds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import dist, progress
from ..choices import SHARPNESS_KINDS, SHARPNESS_NORMS
from ..curvature.operator import check_model
from ..data.batches import Batch, Batches, as_batches
from ..data.split import Split
from ..errors import LandscapeError, check_finite
from ..loss import Criterion, loss_name, loss_sum


@dataclass
class SharpnessResult:
    """Worst-case and average-case sharpness around a model, with what each restart and draw found.

    Attributes:
        kind: "adaptive" or "standard".
        norm: "l2" or "linf".
        rho: the radius.
        loss: the mean loss at the model, L(θ).
        worst: the worst-case sharpness S_max (a lower bound on the true maximum).
        average: the average-case sharpness S_avg (NaN without draws).
        average_stderr: its standard error (NaN with fewer than two draws).
        restart_worst: each restart's largest increase.
        random_increase: each random draw's increase.
        steps: ascent steps per restart.
        restarts: random restarts.
        random_draws: Gaussian perturbations drawn.
        step_size: the ascent step.
        seed: the seed of the starts and draws.
        passes: loss evaluations over the data (forward passes; all but the last of each restart
            with a backward pass).
        seconds: wall time of the run.
        n_params: trainable parameters.
        n_examples: examples.
        batch_size: examples per batch.
        criterion: the loss's name.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> _ = torch.nn.init.zeros_(model.weight)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> r = measure_sharpness(model, data, "standard", 0.1, steps=2, restarts=2, random_draws=3,
        ...                       criterion=torch.nn.MSELoss())
        >>> r.loss, len(r.restart_worst), len(r.random_increase), r.passes  # 1 + 2 * 3 + 3
        (0.0, 2, 3, 10)
    """

    kind: str
    norm: str
    rho: float
    loss: float
    worst: float
    average: float
    average_stderr: float
    restart_worst: np.ndarray
    random_increase: np.ndarray
    steps: int
    restarts: int
    random_draws: int
    step_size: float
    seed: int
    passes: int
    seconds: float
    n_params: int
    n_examples: int
    batch_size: int
    criterion: str = "ce"


class _Loss:
    """The mean loss over fixed batches and its gradient w.r.t. the trainable parameters."""

    def __init__(
        self, model: nn.Module, data: Split | Iterable[Batch], batch_size: int, criterion: Criterion
    ):
        self.model, self.loss = model, loss_sum(criterion)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.batches: Batches = as_batches(data, batch_size, self.params[0].device)
        self.n = self.batches.examples()
        if self.n == 0:
            raise LandscapeError("no examples to measure sharpness on")
        self.passes = 0

    def __call__(self, grad: bool) -> tuple[float, torch.Tensor | None]:
        total = torch.zeros((), dtype=torch.float64, device=self.params[0].device)
        flat = (
            torch.zeros(
                sum(p.numel() for p in self.params),
                dtype=self.params[0].dtype,
                device=self.params[0].device,
            )
            if grad
            else None
        )
        with torch.set_grad_enabled(grad):
            for x, y in self.batches:
                x = x.to(self.params[0].dtype) if x.is_floating_point() else x
                value = self.loss(self.model(x), y)
                if grad:
                    g = torch.autograd.grad(
                        value, self.params, allow_unused=True, materialize_grads=True
                    )
                    flat += torch.cat([t.reshape(-1) for t in g])
                total += value.detach().double()
        self.passes += 1
        total = dist.all_reduce_sum(total) / self.n
        return float(total), (dist.all_reduce_sum(flat) / self.n if grad else None)


@contextmanager
def _moved(
    params: list[torch.Tensor],
) -> Iterator[tuple[torch.Tensor, Callable[[torch.Tensor], None]]]:
    """The flat original parameters and a function that sets them to original + delta.

    The parameters are restored on exit.

    Yields:
        (the flat original parameters, `place(delta)`).
    """
    original = torch.cat([p.detach().reshape(-1) for p in params]).clone()

    def place(delta: torch.Tensor) -> None:
        with torch.no_grad():
            for p, piece in zip(params, (original + delta).split([p.numel() for p in params])):
                p.copy_(piece.view_as(p))

    try:
        yield original, place
    finally:
        place(torch.zeros_like(original))


def _project(gamma: torch.Tensor, rho: float, norm: str) -> torch.Tensor:
    """`gamma` projected onto the ball of radius `rho` in `norm`.

    Returns:
        The projection.
    """
    if norm == "linf":
        return gamma.clamp(-rho, rho)
    size = float(gamma.norm())
    return gamma * (rho / size) if size > rho else gamma


def _start(size: int, rho: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    """A random start in the ball (on CPU, float64, from `generator`).

    Returns:
        The start.
    """
    if norm == "linf":
        return (torch.rand(size, generator=generator, dtype=torch.float64) * 2 - 1) * rho
    direction = torch.randn(size, generator=generator, dtype=torch.float64)
    return (
        direction
        / direction.norm()
        * rho
        * float(torch.rand((), generator=generator, dtype=torch.float64))
    )


def _ascent(
    evaluate: _Loss,
    place: Callable[[torch.Tensor], None],
    scale: torch.Tensor,
    e: torch.Tensor,
    rho: float,
    norm: str,
    steps: int,
    step_size: float,
    bar: Any,
) -> float:
    """The largest loss at the iterates of `steps` projected gradient ascent steps from `e`.

    Returns:
        The largest loss met.
    """
    best = -math.inf
    for step in range(steps + 1):
        place(scale * e)
        value, grad = evaluate(grad=step < steps)
        best = max(best, value)
        bar.update(1)
        if grad is None:
            break
        g = scale * grad
        move = g.sign() if norm == "linf" else g / g.norm().clamp_min(torch.finfo(g.dtype).tiny)
        e = _project(e + step_size * move, rho, norm)
    return best


def measure_sharpness(
    model: nn.Module,
    data: Split | Iterable[Batch],
    kind: str = "adaptive",
    rho: float = 0.05,
    norm: str = "l2",
    steps: int = 10,
    restarts: int = 3,
    random_draws: int = 10,
    step_size: float | None = None,
    seed: int = 0,
    batch_size: int = 256,
    criterion: Criterion = "ce",
) -> SharpnessResult:
    """Worst-case and average-case sharpness of the mean loss of `model` on `data` within `rho`.

    With θ the trainable parameters, L the mean loss over the chosen examples (docs/conventions.md)
    and c a scale per parameter, perturbations are δ = c ⊙ e with e in the ball ||e||_p <= rho:

    - worst-case sharpness  S_max = max_{||e||_p <= rho} L(θ + c ⊙ e) - L(θ);
    - average-case sharpness S_avg = E_{e ~ N(0, rho^2 I)} L(θ + c ⊙ e) - L(θ);

    with c = 1 ("standard") or c = |θ| ("adaptive"; Kwon, Kim, Park & Choi, "ASAM: Adaptive
    sharpness-aware minimization for scale-invariant learning of deep neural networks", ICML 2021;
    Andriushchenko, Croce, Müller, Hein & Flammarion, "A modern look at the relationship between
    sharpness and generalization", ICML 2023). Adaptive sharpness is invariant under rescalings
    that leave the function unchanged (a ReLU neuron's incoming weights times a, its outgoing ones
    divided by a): L(θ + |θ| ⊙ e) is then the same function of e. The Hessian's top eigenvalue and
    standard sharpness are not.

    The maximum is sought by projected gradient ascent on e (Madry, Makelov, Schmidt, Tsipras &
    Vladu, "Towards deep learning models resistant to adversarial attacks", ICLR 2018), from
    `restarts` random starts (e uniform in the L-infinity ball, or a uniformly random direction at
    a uniform radius in the L2 ball), `steps` steps each of size `step_size`: e <- P(e + s g /
    ||g||_2) for L2, e <- clip(e + s sign(g), -rho, rho) for L-infinity, g = c ⊙ ∇L(θ + c ⊙ e).
    The largest loss met at any iterate is kept, so S_max is a lower bound on the true maximum that
    more steps or restarts can only raise. Both are measured on the whole set of examples given
    (Andriushchenko et al. average over mini-batches of m examples; pass m examples to match their
    m-sharpness). The model (eval mode) is left as it was; a model in train mode with dropout or
    BatchNorm, or without trainable parameters or finite values, is refused by the checks this
    calls.

    Args:
        model: the model measured.
        data: a `Split` or a re-iterable of batches.
        kind: "adaptive" (perturbations scaled by |θ|) or "standard".
        rho: the radius.
        norm: "l2" or "linf", the ball of the worst case.
        steps: projected gradient ascent steps per restart.
        restarts: random restarts.
        random_draws: Gaussian perturbations averaged for the average case (0: none).
        step_size: the ascent step s [2.5 rho / steps].
        seed: seeds the random starts and draws (drawn on the CPU, so every device gives the same
            ones).
        batch_size: examples per batch of a `Split`.
        criterion: "ce", "nll" or a loss callable.

    Returns:
        The worst and average sharpness, with each restart's and draw's increase.

    Raises:
        LandscapeError: an unknown kind or norm, a radius or step size that is not positive, fewer
            than one step or restart, negative `random_draws`, or no examples.

    Examples:
        Least squares with Hessian diag(1, 4) at its minimum: L(e) = e^T H e / 2, whose maximum on
        the L-infinity ball of radius 0.1 is at a corner, (1 + 4) 0.1^2 / 2:

        >>> import torch
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> _ = torch.nn.init.zeros_(model.weight)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> mse = torch.nn.MSELoss()
        >>> r = measure_sharpness(model, data, "standard", 0.1, "linf", criterion=mse)
        >>> round(r.worst, 4)
        0.025
        >>> r = measure_sharpness(model, data, "standard", 0.1, "l2", criterion=mse)
        >>> round(r.worst, 2), r.worst <= 0.02  # at most 4 * 0.1^2 / 2, along the top eigenvector
        (0.02, True)
    """
    if kind not in SHARPNESS_KINDS:
        raise LandscapeError(
            f"unknown sharpness kind {kind!r}; choose {' or '.join(SHARPNESS_KINDS)}"
        )
    if norm not in SHARPNESS_NORMS:
        raise LandscapeError(f"unknown norm {norm!r}; choose {' or '.join(SHARPNESS_NORMS)}")
    if (
        not rho > 0
        or steps < 1
        or restarts < 1
        or random_draws < 0
        or (step_size is not None and step_size <= 0)
    ):
        raise LandscapeError(
            f"`rho` and `step_size` must be positive, `steps` and `restarts` at least 1 and "
            f"`random_draws` at least 0, got rho={rho}, steps={steps}, restarts={restarts}, "
            f"random_draws={random_draws}, step_size={step_size}"
        )
    check_finite(model)
    check_model(model)
    step_size = 2.5 * rho / steps if step_size is None else step_size
    start = time.perf_counter()
    evaluate = _Loss(model, data, batch_size, criterion)
    generator = torch.Generator().manual_seed(seed)
    with _moved(evaluate.params) as (theta, place):
        scale = theta.abs() if kind == "adaptive" else torch.ones_like(theta)
        base = evaluate(grad=False)[0]
        worst, increases = [], []
        bar = progress.bar(total=restarts * (steps + 1) + random_draws, desc=f"{kind} sharpness")
        try:
            for _ in range(restarts):
                worst.append(
                    _ascent(
                        evaluate,
                        place,
                        scale,
                        _start(theta.numel(), rho, norm, generator).to(theta),
                        rho,
                        norm,
                        steps,
                        step_size,
                        bar,
                    )
                    - base
                )
            for _ in range(random_draws):
                place(
                    scale
                    * torch.randn(theta.numel(), generator=generator, dtype=torch.float64).to(theta)
                    * rho
                )
                increases.append(evaluate(grad=False)[0] - base)
                bar.update(1)
        finally:
            bar.close()
    random_increase = np.array(increases)
    average = float(random_increase.mean()) if increases else math.nan
    stderr = (
        float(random_increase.std(ddof=1) / math.sqrt(len(increases)))
        if len(increases) > 1
        else math.nan
    )
    return SharpnessResult(
        kind,
        norm,
        rho,
        base,
        max(worst),
        average,
        stderr,
        np.array(worst),
        random_increase,
        steps,
        restarts,
        random_draws,
        step_size,
        seed,
        evaluate.passes,
        time.perf_counter() - start,
        theta.numel(),
        evaluate.n,
        batch_size,
        loss_name(criterion),
    )
