"""Loss and accuracy: the mean loss over the examples, the model in eval mode, batches weighted by
their size (docs/conventions.md, "Measurements").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import dist
from ..data.batches import Batch, as_batches
from ..data.split import Split
from ..errors import LandscapeError, check_finite
from ..loss import Criterion, correct, counter, loss_sum
from ..models.outputs import Output, predict


@dataclass(frozen=True)
class Metrics:
    """Mean loss, accuracy in [0, 1] (NaN for targets that are not classes) and number of
    examples.
    """

    loss: float
    acc: float
    n: int


def reduce_sums(
    loss_sum: torch.Tensor, correct: torch.Tensor, n: int, device: torch.device
) -> Metrics:
    """All-reduce per-rank sums of loss, correct predictions and examples into global means."""
    t = torch.stack(
        [
            loss_sum.detach().double().to(device),
            correct.detach().double().to(device),
            torch.tensor(float(n), dtype=torch.float64, device=device),
        ]
    )
    dist.all_reduce_sum(t)
    total = max(float(t[2]), 1.0)
    return Metrics(float(t[0]) / total, float(t[1]) / total, int(t[2]))


def check_targets(out: torch.Tensor, y: torch.Tensor) -> None:
    """Raise when class-index targets name a class the model's outputs do not have."""
    if out.ndim == 2 and y.ndim == 1 and not y.is_floating_point() and len(y):
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= out.shape[1]:
            raise LandscapeError(
                f"labels out of range: data has label {high if high >= out.shape[1] else low} but "
                f"the model has {out.shape[1]} classes"
            )


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Split | Iterable[Batch],
    batch_size: int = 1024,
    criterion: Criterion = "ce",
    output: Output = None,
) -> Metrics:
    """Mean loss and accuracy of `model` in eval mode on `data` (sharded across ranks).

    Args:
        model: any module; its prediction is taken from its output by `landscape.models.outputs`
        (`output`). data: a `Split` or a re-iterable of batches (`landscape.data.batches`: `(inputs,
        targets)`, inputs a
            tensor, tuple or mapping, or a mapping with `labels`).
        batch_size: examples per batch of a `Split`.
        criterion: "ce", "nll", "lm" or a callable (`landscape.loss`); the mean is over what it
            counts (examples, or predicted tokens for "lm").
        output: which tensor of the model's output is the prediction (None: the documented rule).

    Returns:
        `Metrics` (accuracy NaN for targets that are not class indices).

    Raises:
        LandscapeError: bad data, labels out of range, or an output without a prediction tensor.
    """
    check_finite(model)
    was = model.training
    model.eval()
    device = _device(model)
    total, count = loss_sum(criterion), counter(criterion)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.zeros((), dtype=torch.float64, device=device)
    n = 0
    try:
        for x, y in as_batches(data, batch_size, device):
            out = predict(model, x, output)
            check_targets(out, y)
            loss += total(out, y).double()
            hits += correct(out, y).double()
            n += count(y)
    finally:
        model.train(was)
    return reduce_sums(loss, hits, n, device)


@torch.no_grad()
def evaluate_ensemble(
    models: Sequence[nn.Module],
    data: Split | Iterable[Batch],
    batch_size: int = 1024,
    weights: Sequence[float] | None = None,
    output: Output = None,
) -> Metrics:
    """Prediction ensemble: loss and accuracy of the (weighted) average of the models' softmax
    outputs (each model's prediction as `evaluate` takes it, `output`).
    """
    weights = [1.0 / len(models)] * len(models) if weights is None else list(weights)
    for i, m in enumerate(models, 1):
        check_finite(m, f"model {i}")
    states = [m.training for m in models]
    for m in models:
        m.eval()
    device = _device(models[0])
    loss = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.zeros((), dtype=torch.float64, device=device)
    n = 0
    for x, y in as_batches(data, batch_size, device):
        probs = sum(
            w * F.softmax(predict(m, x, output).double(), dim=1) for w, m in zip(weights, models)
        )
        check_targets(probs, y)
        loss += F.nll_loss(torch.log(probs.clamp_min(1e-300)), y, reduction="sum")
        hits += correct(probs, y)
        n += len(y)
    for m, s in zip(models, states):
        m.train(s)
    return reduce_sums(loss, hits, n, device)
