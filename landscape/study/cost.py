"""What a study costs before it runs (`landscape study --dry-run`): every job with its work in
examples (trained = forward + backward + SGD step, forwards, Hessian-vector products), totals per
stage, and, with measured seconds per example (`calibrate`, on the device the study would use), the
time it takes.

The counts are upper bounds: training counts every epoch up to the maximum (early stopping ends
sooner), eigenvalues count the Lanczos cap of 100 products per eigenvalue (tolerance usually stops
it sooner).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..curvature.operator import HessianOperator
from ..data.split import Split
from ..models.zoo import build_model
from .tasks import Task

UNITS = {"train": "trained", "forward": "forward", "hvp": "HVP"}
Rates = dict[tuple[str, int], float]  # (unit, batch size) -> seconds per example


def _amount(n: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.0f}"


def clock(seconds: float) -> str:
    """A duration in words of its size: `2 d 5 h`, `13 h 58 min`, `4 min 12 s`, `32.5 s` or, below
    10 s, three significant digits (`0.0123 s`); an estimate has no more precision than that.
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
    """Examples per (unit, batch size) over `jobs`."""
    total: dict[tuple[str, int], int] = defaultdict(int)
    for job in jobs:
        for unit, batch, examples in job.cost:
            total[unit, batch] += examples
    return dict(total)


def describe(work_done: dict[tuple[str, int], int]) -> str:
    """`1.2M trained (batch 32), 3.4k HVP (batch 256)`."""
    if not work_done:
        return "nothing"
    return ", ".join(
        f"{_amount(n)} {UNITS[unit]} (batch {batch})"
        for (unit, batch), n in sorted(work_done.items())
    )


def seconds(work_done: dict[tuple[str, int], int], rates: Rates) -> float:
    """Time of `work_done` at the measured `rates`."""
    return sum(n * rates[key] for key, n in work_done.items())


def plan_text(
    stages: Sequence[tuple[str, Sequence[Task], Sequence[Task]]],
    rates: Rates | None = None,
    device: str = "",
    list_jobs: bool = True,
) -> str:
    """The job list of a dry run: per stage its jobs (done or to do; `list_jobs`) with their work,
    the stage's total, and, with `rates`, the time of what is left.
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
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(
    arch: str,
    arch_kwargs: dict,
    keys: Sequence[tuple[str, int]],
    device: torch.device | str,
    repeats: int = 2,
) -> Rates:
    """Seconds per example of each (unit, batch size) in `keys` for the model on `device`: the
    fastest of `repeats` timed calls after one warm-up, on random inputs of the model's input shape,
    of an SGD step (train), a forward pass in eval mode (forward) or a Hessian-vector product
    without cached gradient graphs (hvp).
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
):
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
