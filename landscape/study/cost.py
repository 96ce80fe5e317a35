"""What a study costs before it runs (`landscape study --dry-run`).

Every job with its work in examples (trained = forward + backward + SGD step, forwards,
Hessian-vector products), totals per stage, and, with measured seconds per example (`calibrate`, on
the device the study would use), the time it takes.

The counts are upper bounds: training counts every epoch up to the maximum (early stopping ends
sooner), eigenvalues count the Lanczos cap of 100 products per eigenvalue (tolerance usually stops
it sooner).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..curvature.operator import HessianOperator
from ..data.split import Split
from ..models.zoo import build_model
from .tasks import Task

UNITS = {"train": "trained", "forward": "forward", "hvp": "HVP"}
Rates = dict[tuple[str, int], float]  # (unit, batch size) -> seconds per example


def _amount(n: float) -> str:
    """`n` with three significant digits and a k, M or G suffix.

    Returns:
        The amount in words.
    """
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.0f}"


def clock(seconds: float) -> str:
    """A duration in words of its size; an estimate has no more precision than that.

    Args:
        seconds: the duration.

    Returns:
        `2 d 5 h`, `13 h 58 min`, `4 min 12 s`, `32.5 s` or, below 10 s, three significant digits
        (`0.0123 s`).

    Examples:
        >>> clock(0.01234), clock(252), clock(50280), clock(190800)
        ('0.0123 s', '4 min 12 s', '13 h 58 min', '2 d 5 h')
    """
    if seconds < 10:
        return f"{seconds:.3g} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if round(seconds) < 3600:
        return "{} min {} s".format(*divmod(round(seconds), 60))
    hours, m = divmod(round(seconds / 60), 60)
    days, h = divmod(hours, 24)
    return f"{days} d {h} h" if days else f"{h} h {m} min"


def work(jobs: Sequence[Task]) -> dict[tuple[str, int], int]:
    """The work of `jobs`: examples per (unit, batch size).

    Args:
        jobs: tasks with a `cost` of (unit, batch size, examples) entries.

    Returns:
        (unit, batch size) -> examples.

    Examples:
        >>> from landscape.study.tasks import Task
        >>> jobs = [Task("a", "k1", "train", cost=(("train", 32, 100),)),
        ...         Task("b", "k2", "train", cost=(("train", 32, 50), ("forward", 1024, 10)))]
        >>> work(jobs)
        {('train', 32): 150, ('forward', 1024): 10}
    """
    total: dict[tuple[str, int], int] = defaultdict(int)
    for job in jobs:
        for unit, batch, examples in job.cost:
            total[unit, batch] += examples
    return dict(total)


def describe(work_done: dict[tuple[str, int], int]) -> str:
    """Work in words.

    Args:
        work_done: (unit, batch size) -> examples, as `work` gives it.

    Returns:
        `1.2M trained (batch 32), 3.4k HVP (batch 256)`, or `nothing`.

    Examples:
        >>> describe({("train", 32): 1_200_000, ("hvp", 256): 3400})
        '3.4k HVP (batch 256), 1.2M trained (batch 32)'
    """
    if not work_done:
        return "nothing"
    return ", ".join(
        f"{_amount(n)} {UNITS[unit]} (batch {batch})"
        for (unit, batch), n in sorted(work_done.items())
    )


def seconds(work_done: dict[tuple[str, int], int], rates: Rates) -> float:
    """Time of `work_done` at the measured `rates`.

    Args:
        work_done: (unit, batch size) -> examples.
        rates: (unit, batch size) -> seconds per example.

    Returns:
        Seconds.

    Examples:
        >>> seconds({("train", 32): 1000}, {("train", 32): 0.002})
        2.0
    """
    return sum(n * rates[key] for key, n in work_done.items())


def plan_text(
    stages: Sequence[tuple[str, Sequence[Task], Sequence[Task]]],
    rates: Rates | None = None,
    device: str = "",
    list_jobs: bool = True,
) -> str:
    """The job list of a dry run, stage by stage, with the work and time of what is left.

    Args:
        stages: (stage, all its jobs, the jobs not done yet) per stage.
        rates: (unit, batch size) -> measured seconds per example; None prints no times.
        device: the device the rates were measured on, for the text.
        list_jobs: list every job (done or to do) under its stage.

    Returns:
        Per stage its jobs with their work and the stage's total, the total to do, and with `rates`
        the estimated time.

    Examples:
        >>> from landscape.study.tasks import Task
        >>> jobs = [Task("train a", "k1", "train", cost=(("train", 32, 1000),))]
        >>> print(plan_text([("train parents", jobs, jobs)], {("train", 32): 0.002}, "cpu"))
        train parents: 1 jobs, 1 to do: 1k trained (batch 32); about 2 s
          [todo] train a: 1k trained (batch 32)
        total to do: 1k trained (batch 32)
        estimated time on cpu: 2 s (upper bound: ...)
          measured 2 s per 1000 trained examples at batch 32
    """
    lines, total_todo, left = [], defaultdict(int), 0.0
    for stage, jobs, todo in stages:
        pending = {id(j) for j in todo}
        stage_work = work(todo)
        for key, n in stage_work.items():
            total_todo[key] += n
        timing = ""
        if rates is not None:
            left += seconds(stage_work, rates)
            timing = f"; about {clock(seconds(stage_work, rates))}"
        lines.append(
            f"{stage}: {len(jobs)} jobs, {len(todo)} to do: {describe(stage_work)}{timing}"
        )
        for job in jobs if list_jobs else ():
            mark = "todo" if id(job) in pending else "done"
            lines.append(f"  [{mark}] {job.name}: {describe(work([job]))}")
    lines.append(f"total to do: {describe(dict(total_todo))}")
    if rates is not None:
        lines.append(
            f"estimated time on {device or 'this device'}: {clock(left)} (upper bound: every epoch "
            "up to "
            "the maximum, 100 Lanczos products per eigenvalue, gradient graphs recomputed per "
            "product)"
        )
        lines += [
            f"  measured {clock(r * 1e3)} per 1000 {UNITS[u]} examples at batch {b}"
            for (u, b), r in sorted(rates.items())
        ]
    return "\n".join(lines)


def _sync(device: torch.device) -> None:
    """Wait for `device` to finish its queued work (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(
    arch: str,
    arch_kwargs: dict,
    keys: Sequence[tuple[str, int]],
    device: torch.device | str,
    repeats: int = 2,
) -> Rates:
    """Seconds per example of each (unit, batch size) in `keys` for the model on `device`.

    Each is the fastest of `repeats` timed calls after one warm-up, on random inputs of the model's
    input shape, of an SGD step (train), a forward pass in eval mode (forward) or a Hessian-vector
    product without cached gradient graphs (hvp).

    Args:
        arch: the architecture (a zoo name or `package.module:factory`).
        arch_kwargs: its keyword arguments, with `input_shape` and `num_classes`.
        keys: the (unit, batch size) pairs to time.
        device: where to time them.
        repeats: timed calls per pair.

    Returns:
        (unit, batch size) -> seconds per example.

    Examples:
        >>> kwargs = {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16]}
        >>> rates = calibrate("mlp", kwargs, [("train", 8), ("hvp", 8)], "cpu", repeats=1)
        >>> sorted(rates), all(r > 0 for r in rates.values())
        ([('hvp', 8), ('train', 8)], True)
    """
    device = torch.device(device)
    model = build_model(arch, arch_kwargs).to(device)
    shape, classes = arch_kwargs["input_shape"], arch_kwargs["num_classes"]
    generator = torch.Generator().manual_seed(0)
    rates: Rates = {}
    for unit, batch in sorted(set(keys)):
        x = torch.randn(batch, *shape, generator=generator).to(device)
        y = torch.randint(0, classes, (batch,), generator=generator).to(device)
        step = _step(unit, model, x, y, device)
        step()
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - start)
        rates[unit, batch] = min(times) / batch
    return rates


def _step(
    unit: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> Callable[[], object]:
    """One call of the work `unit` on the batch (x, y).

    Returns:
        A function doing one SGD step, forward pass or Hessian-vector product.
    """
    if unit == "train":
        opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

        def train_step() -> None:
            model.train()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return train_step
    if unit == "forward":

        def forward() -> None:
            model.eval()
            with torch.no_grad():
                model(x)

        return forward
    model.eval()
    op = HessianOperator(model, Split(x, y), batch_size=len(y), cache=False)
    v = torch.randn(1, op.size, generator=torch.Generator().manual_seed(1)).to(device)
    return lambda: op.matmat(v)
