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
    """Everything that decides a training run; stored in the checkpoint's meta.

    Attributes:
        batch_size: examples per SGD step.
        lr: the initial learning rate.
        momentum: SGD's momentum.
        weight_decay: SGD's L2 penalty.
        epochs: the most epochs run.
        schedule: none, step, cosine (annealed to 0 over `epochs`) or plateau.
        step_size: the step schedule's epochs between decays.
        gamma: the step schedule's decay factor.
        plateau_factor: the plateau schedule's decay factor.
        plateau_patience: the plateau schedule's epochs without improvement before a decay.
        patience: early stopping's epochs without a better `monitor` value; 0 turns it off.
        min_epochs: early stopping never stops before this many epochs.
        monitor: what the plateau schedule and early stopping watch: val_acc or val_loss.
        data_seed: the seed of the data order (and of the augmentation).
        augment: augment the inputs where the data set supports it (CIFAR).
        keep: the weights returned: those of the last epoch run, or of the best validation
            accuracy.

    Examples:
        >>> TrainConfig(epochs=2, schedule="step").validate()
        >>> TrainConfig(lr=0).validate()
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: batch size, epochs and learning rate must be positive
    """

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
        """Raise a one-line error for impossible settings.

        Raises:
            LandscapeError: a batch size, epoch count or learning rate that is not positive, or
                an unknown schedule, monitor or `keep` (`check_choice`).
        """
        if self.batch_size <= 0 or self.epochs <= 0 or self.lr <= 0:
            raise LandscapeError("batch size, epochs and learning rate must be positive")
        check_choice(self.schedule, SCHEDULES, "schedule")
        check_choice(self.monitor, MONITORS, "monitor")
        check_choice(self.keep, KEEP, "`keep`")


@dataclass
class TrainResult:
    """The kept model and the run's record; epochs count from 1.

    Attributes:
        model: the trained module, holding the kept weights.
        kept_epoch: the epoch whose weights `model` holds.
        best_epoch: the epoch of the best validation accuracy.
        best_val_acc: that accuracy.
        history: per epoch: train_loss, val_loss, val_acc and lr (epoch e at index e - 1).
        seconds: the run's wall-clock time.

    Examples:
        >>> from torch import nn
        >>> result = TrainResult(nn.Linear(2, 2), kept_epoch=3, best_epoch=2, best_val_acc=0.9)
        >>> result.history, result.seconds
        ({}, 0.0)
    """

    model: nn.Module
    kept_epoch: int  # the epoch whose weights `model` holds
    best_epoch: int  # the epoch of the best validation accuracy
    best_val_acc: float
    history: dict = field(default_factory=dict)
    seconds: float = 0.0


def init_model(arch: str, arch_kwargs: dict, init_seed: int) -> nn.Module:
    """Build a freshly initialised model; the same seed gives the same weights.

    The seed is used in a forked random state: torch's global generator is left as it was.

    Args:
        arch: the architecture (`landscape.models.zoo.build_model`).
        arch_kwargs: its keyword arguments.
        init_seed: the seed of the initial weights.

    Returns:
        The model.

    Examples:
        >>> import torch
        >>> spec = {"input_shape": [2], "num_classes": 2, "hidden": [3]}
        >>> before = torch.random.get_rng_state()
        >>> a, b, c = (init_model("mlp", spec, seed) for seed in (0, 0, 1))
        >>> torch.equal(a.classifier.weight, b.classifier.weight)
        True
        >>> torch.equal(a.classifier.weight, c.classifier.weight)
        False
        >>> torch.equal(torch.random.get_rng_state(), before)
        True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return build_model(arch, arch_kwargs)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """The learning-rate scheduler `cfg.schedule` names.

    Returns:
        The scheduler, or None for the schedule "none".
    """
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
        LandscapeError: a diverged run (non-finite training loss). Impossible settings, non-finite
            weights and labels out of range raise it too (the checks this calls).

    Examples:
        >>> import torch
        >>> from landscape.data.datasets import Dataset
        >>> from landscape.data.split import Split
        >>> x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
        >>> split = Split(x, (x[:, 0] > 0).long())
        >>> data = Dataset("toy", split, split, split, num_classes=2, input_shape=(2,))
        >>> spec = {"input_shape": [2], "num_classes": 2, "hidden": [8]}
        >>> cfg = TrainConfig(batch_size=4, epochs=3, lr=0.1)
        >>> a = train(init_model("mlp", spec, 0), data, cfg)
        >>> a.kept_epoch, [round(lr, 4) for lr in a.history["lr"]]  # 0.1 (1 + cos(pi e / 3)) / 2
        (3, [0.1, 0.075, 0.025])
        >>> b = train(init_model("mlp", spec, 0), data, cfg)  # the same seeds: the same weights
        >>> all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
        True
        >>> cfg = TrainConfig(batch_size=4, epochs=3, lr=0.1, keep="best")
        >>> best = train(init_model("mlp", spec, 0), data, cfg)
        >>> best.history["val_acc"][best.kept_epoch - 1] == max(best.history["val_acc"])
        True
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
    """The classes the model predicts: its spec's, else the data's.

    Returns:
        The number of classes.
    """
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
    """The checkpoint meta of a training run.

    Args:
        cfg: the run's settings (every field is recorded).
        result: the run.
        data: the data it was trained on (`landscape.data.record.data_record`, normalisation,
            selection).
        **extra: more entries (e.g. `arch`, `init_seed`), added last.

    Returns:
        The meta: the data record, the settings, the kept and best epochs, the history and the
        time.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from landscape.data.datasets import Dataset
        >>> from landscape.data.split import Split
        >>> split = Split(torch.zeros(2, 2), torch.tensor([0, 1]))
        >>> data = Dataset("toy", split, split, split, num_classes=2, input_shape=(2,))
        >>> history = {"train_loss": [0.7, 0.6], "val_loss": [0.7, 0.5], "val_acc": [0.5, 1.0]}
        >>> result = TrainResult(nn.Linear(2, 2), 2, 2, 1.0, history)
        >>> meta = train_meta(TrainConfig(epochs=2), result, data, init_seed=7)
        >>> meta["dataset"], meta["epochs_run"], meta["kept_val_acc"], meta["lr"], meta["init_seed"]
        ('toy', 2, 1.0, 0.05, 7)
    """
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
