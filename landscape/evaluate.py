"""Loss and accuracy: mean cross-entropy over a split, eval mode, batches weighted by size (DESIGN.md)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import dist
from .data import Split, batches


@dataclass(frozen=True)
class Metrics:
    """Mean loss, accuracy in [0, 1] and number of examples."""

    loss: float
    acc: float
    n: int


def reduce_sums(loss_sum: torch.Tensor, correct: torch.Tensor, n: int, device: torch.device) -> Metrics:
    """All-reduce per-rank sums of loss, correct predictions and examples into global means."""
    t = torch.stack([loss_sum.detach().double().to(device), correct.detach().double().to(device),
                     torch.tensor(float(n), dtype=torch.float64, device=device)])
    dist.all_reduce_sum(t)
    total = max(float(t[2]), 1.0)
    return Metrics(float(t[0]) / total, float(t[1]) / total, int(t[2]))


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1024) -> Metrics:
    """Mean cross-entropy and accuracy of `model` in eval mode on `split` (sharded across ranks)."""
    was = model.training
    model.eval()
    device = split.x.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    n = 0
    for x, y in batches(split, batch_size):
        out = model(x)
        loss_sum += F.cross_entropy(out, y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum()
        n += len(y)
    model.train(was)
    return reduce_sums(loss_sum, correct, n, device)


@torch.no_grad()
def evaluate_ensemble(models: Sequence[nn.Module], split: Split, batch_size: int = 1024,
                      weights: Sequence[float] | None = None) -> Metrics:
    """Prediction ensemble: loss and accuracy of the (weighted) average of the models' softmax outputs."""
    weights = [1.0 / len(models)] * len(models) if weights is None else list(weights)
    states = [m.training for m in models]
    for m in models:
        m.eval()
    device = split.x.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    n = 0
    for x, y in batches(split, batch_size):
        probs = sum(w * F.softmax(m(x).double(), dim=1) for w, m in zip(weights, models))
        loss_sum += F.nll_loss(torch.log(probs.clamp_min(1e-300)), y, reduction="sum")
        correct += (probs.argmax(1) == y).sum()
        n += len(y)
    for m, s in zip(models, states):
        m.train(s)
    return reduce_sums(loss_sum, correct, n, device)
