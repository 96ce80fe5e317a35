"""SGD training and fine-tuning with separate seeds for initialisation and data order.

Returns the weights of the last epoch run (`keep="last"`, the early-stopped runs the seed study
measured) or those of the best validation accuracy (`keep="best"`); epochs are counted from 1
everywhere (`history` lists hold epoch e at index e - 1). Supports step, cosine and plateau
schedules and early stopping, and is bitwise deterministic on CPU for fixed seeds and thread count.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .. import progress
from ..choices import KEEP, MONITORS, SCHEDULES
from ..data.augmentation import augment
from ..data.datasets import Dataset
from ..data.record import data_record
from ..data.split import check_labels
from ..errors import LandscapeError, check_choice, check_finite
from ..models.zoo import build_model
from ..spec import spec_of
from .metrics import evaluate


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored in the checkpoint's meta."""

    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 20
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    patience: int = 0  # early stopping: epochs without a better `monitor` value; 0 turns it off
    min_epochs: int = 0  # early stopping never stops before this many epochs
    monitor: str = (
        "val_acc"  # what the plateau schedule and early stopping watch: val_acc or val_loss
    )
    data_seed: int = 0
    augment: bool = True  # used only when the dataset supports it (CIFAR)
    # the weights returned: those of the last epoch run, or of the best validation accuracy
    keep: str = "last"

    def validate(self) -> None:
        """Raise a one-line error for impossible settings."""
        if self.batch_size <= 0 or self.epochs <= 0 or self.lr <= 0:
            raise LandscapeError("batch size, epochs and learning rate must be positive")
        check_choice(self.schedule, SCHEDULES, "schedule")
        check_choice(self.monitor, MONITORS, "monitor")
        check_choice(self.keep, KEEP, "`keep`")


@dataclass
class TrainResult:
    """The kept model and the run's record; epochs count from 1."""

    model: nn.Module
    kept_epoch: int  # the epoch whose weights `model` holds
    best_epoch: int  # the epoch of the best validation accuracy
    best_val_acc: float
    history: dict = field(default_factory=dict)
    seconds: float = 0.0


def init_model(arch: str, arch_kwargs: dict, init_seed: int) -> nn.Module:
    """Build a freshly initialised model; the same seed gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return build_model(arch, arch_kwargs)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, cfg.gamma)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    if cfg.schedule == "plateau":
        mode = "min" if cfg.monitor == "val_loss" else "max"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    return None


def train(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    desc: str = "train",
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train `model` in place with SGD.

    Args:
        model: the module to train (changed in place).
        data: the splits; validation accuracy is measured after every epoch.
        cfg: every setting of the run; `cfg.keep` says which weights are returned.
        desc: the progress bar's label.
        on_epoch: called as `on_epoch(e, model)` after every epoch e (1-based), e.g. to save the
            training trajectory.

    Returns:
        The model holding the kept weights (in eval mode) and the run's record.

    Raises:
        LandscapeError: impossible settings, non-finite weights, labels out of range or a diverged
        run.
    """
    cfg.validate()
    check_finite(model)
    check_labels(data.train, _num_classes(model, data))
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.data_seed)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    sched = _scheduler(opt, cfg)
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_acc": [], "lr": []}
    best_state, best_acc, best_epoch = None, -1.0, 0
    best_watched, since_best = -float("inf"), 0
    n = len(data.train)
    bar = progress.bar(total=cfg.epochs, desc=desc)
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(data.train.y.device)
        loss_sum = 0.0
        for s in range(0, n, cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            x, y = data.train.x[idx], data.train.y[idx]
            if cfg.augment and data.augment:
                x = augment(x, gen)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
        if not math.isfinite(loss_sum):
            raise LandscapeError(
                f"training diverged in epoch {epoch + 1} (training loss {loss_sum / n:.4g}): "
                "lower the learning rate"
            )
        val = evaluate(model, data.val)
        history["train_loss"].append(loss_sum / n)
        history["val_loss"].append(val.loss)
        history["val_acc"].append(val.acc)
        history["lr"].append(opt.param_groups[0]["lr"])
        if val.acc > best_acc:
            best_acc, best_epoch = val.acc, epoch + 1
            if cfg.keep == "best":
                best_state = copy.deepcopy(model.state_dict())
        watched = -val.loss if cfg.monitor == "val_loss" else val.acc  # higher is better
        best_watched, since_best = (
            (watched, 0) if watched > best_watched else (best_watched, since_best + 1)
        )
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(val.loss if cfg.monitor == "val_loss" else val.acc)
        elif sched is not None:
            sched.step()
        if on_epoch is not None:
            on_epoch(epoch + 1, model)
        bar.update(1)
        bar.set_postfix(val_acc=f"{val.acc:.3f}")
        if cfg.patience and since_best >= cfg.patience and epoch + 1 >= cfg.min_epochs:
            break
    bar.close()
    kept_epoch = len(history["val_acc"])
    if cfg.keep == "best":
        model.load_state_dict(best_state)
        kept_epoch = best_epoch
    model.eval()
    return TrainResult(
        model, kept_epoch, best_epoch, best_acc, history, time.perf_counter() - start
    )


def _num_classes(model: nn.Module, data: Dataset) -> int:
    spec = spec_of(model)
    return data.num_classes if spec is None or spec.num_classes is None else spec.num_classes


def data_meta(data: Dataset) -> dict:
    """What a checkpoint's meta records of the data a model was trained on.

    The data record (`landscape.data.record`), the input normalisation and the selection of
    training examples (when not all of them).

    Args:
        data: the training data.

    Returns:
        The meta's data fields.

    Examples:
        >>> from landscape.data.datasets import Dataset
        >>> from landscape.data.split import Split
        >>> split = Split(torch.arange(8.0).reshape(4, 2), torch.tensor([0, 1, 0, 1]))
        >>> meta = data_meta(Dataset("toy", split, split, split, 2, (2,), normalize=((0.0, 1.0),)))
        >>> meta["data_shape"], meta["normalize"], "selection" in meta
        ([2], [[0.0, 1.0]], False)
    """
    return {
        **data_record(data),
        "normalize": [list(pair) for pair in data.normalize],
        **({"selection": data.selection.record()} if not data.selection.whole else {}),
    }


def train_meta(cfg: TrainConfig, result: TrainResult, data: Dataset, **extra) -> dict:
    """The checkpoint meta of a training run."""
    return {
        **data_meta(data),
        **asdict(cfg),
        "kept_epoch": result.kept_epoch,
        "kept_val_acc": result.history["val_acc"][result.kept_epoch - 1],
        "best_epoch": result.best_epoch,
        "best_val_acc": result.best_val_acc,
        "epochs_run": len(result.history["val_acc"]),
        "history": {k: list(map(float, v)) for k, v in result.history.items()},
        "train_seconds": result.seconds,
        **extra,
    }
