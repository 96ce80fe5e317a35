"""A 25x25 filter-normalised contour on the digits test examples: our walk against loss-landscapes'
`random_plane` on the same model, data, directions and grid, and our two ways of evaluating points
(walk, vmap) side by side.

- Ours: `landscape.geometry.surface.compute_surface` (loss and accuracy at every point),
  `batching="loop"` (the walk, what `auto` picks on the CPU) and `batching="vmap"`.
- Theirs: `loss_landscapes.random_plane(model, Loss(CrossEntropyLoss(), x, y), distance, steps,
  normalization=None, deepcopy_model=True)` (one forward over all the examples per point), a
  benchmark extra (`pip install --no-deps loss-landscapes==3.0.6`), never a dependency of the
  package.

Same directions: their random draws (`loss_landscapes.main.rand_u_like` and `orthogonal_to`) are
replaced, for the call only, by our two filter-normalised directions d1, d2, and
`normalization=None` keeps them as they are. Same grid: `random_plane` scales each direction to a
step of `|θ| / (distance * steps)` (so `distance` divides) and visits `θ + (i - steps/2) s1 + (j + 1
- steps/2) s2` in even columns i but `(j - steps/2)` in odd ones (its columns are shifted by one
step against each other). We pick the step h (in units of d) and `distance = |θ| / (steps h |d1|)`
and evaluate our grid `x_i = (i - steps/2) h`, `y_j = (j + 1 - steps/2) h`, which holds their even
columns exactly and their odd columns but one point each; the largest difference between the two
surfaces over those shared points is printed (rounding level means same model, data, grid).

Per-point cost in forward passes: the time of a variant over the time of as many plain forward
passes as there are points (`model(x)` over the same batches, inference mode, timed among the
variants), plus forward calls per point counted with a hook (which copies carry along). Every
variant is timed `--repeats` times, interleaved, after one warm-up each; medians are printed.
`--clock cpu` times the process's CPU time instead of wall time (steadier on a shared machine, blind
to waiting).

Usage: python benchmarks/surface_speed.py [--threads N] [--repeats R] [--steps S] [--batch-size B]
[--clock cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import ExitStack
from unittest import mock

import numpy as np
import torch

from landscape import progress
from landscape.data import load_data
from landscape.geometry.directions import (
    filter_normalised_direction,
    grid_coefficients,
    trainable_names,
)
from landscape.geometry.surface import Surface, compute_surface
from landscape.models.zoo import arch_kwargs_for, build_model

CASES = [
    ("VGG11 width 1/8, BN", "vgg11", {"width": 0.125, "bn": True}),
    ("MLPNet 400-200-100", "mlp", {"hidden": [400, 200, 100]}),
    ("MLP 64-32", "mlp", {"hidden": [64, 32]}),
]
SPAN = (
    2.0  # our grid spans about [-1, 1] along each direction (steps - 1 steps of SPAN / (steps - 1))
)


def _surface(model: torch.nn.Module, steps: int, h: float) -> Surface:
    """Our grid on the points loss-landscapes visits (see the module docstring), seed-0
    directions."""
    gen = torch.Generator().manual_seed(0)
    dirs = [filter_normalised_direction(model, gen) for _ in range(2)]
    xs = (np.arange(steps) - steps / 2) * h
    ys = (np.arange(steps) + 1 - steps / 2) * h
    return Surface("2d", [model.state_dict(), *dirs], grid_coefficients(xs, ys, np.eye(3)), xs, ys)


def _theirs(
    model: torch.nn.Module, surface: Surface, x: torch.Tensor, y: torch.Tensor, steps: int, h: float
):
    """`random_plane` with our directions in place of its random ones; returns a function of no
    arguments."""
    import loss_landscapes
    import loss_landscapes.main as ll_main
    from loss_landscapes.metrics import Loss
    from loss_landscapes.model_interface.model_parameters import ModelParameters

    names = trainable_names(model)
    d1, d2 = ([d[n].clone() for n in names] for d in surface.anchors[1:])
    theta = torch.cat([p.detach().flatten() for p in model.parameters()]).norm().item()
    distance = theta / (steps * h * torch.cat([t.flatten() for t in d1]).norm().item())
    metric = Loss(torch.nn.CrossEntropyLoss(), x, y)

    def run() -> np.ndarray:
        with ExitStack() as stack, torch.no_grad():
            stack.enter_context(
                mock.patch.object(
                    ll_main, "rand_u_like", lambda _: ModelParameters([t.clone() for t in d1])
                )
            )
            stack.enter_context(
                mock.patch.object(
                    ll_main, "orthogonal_to", lambda _: ModelParameters([t.clone() for t in d2])
                )
            )
            return loss_landscapes.random_plane(
                model,
                metric,
                distance=distance,
                steps=steps,
                normalization=None,
                deepcopy_model=True,
            )

    return run


def _shared_difference(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, int]:
    """Largest |ours - theirs| over the points both grids hold: even columns as they are, odd ones
    shifted."""
    even = np.abs(ours[0::2] - theirs[0::2])
    odd = np.abs(ours[1::2, :-1] - theirs[1::2, 1:])
    return float(max(even.max(), odd.max())), even.size + odd.size


def _forward_calls(model: torch.nn.Module, fn) -> int:
    calls = [0]
    handle = model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        fn()
    finally:
        handle.remove()
    return calls[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (default 3)")
    parser.add_argument("--steps", type=int, default=25, help="grid points per axis (default 25)")
    parser.add_argument(
        "--batch-size", type=int, default=512, help="examples per batch (default 512)"
    )
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="what is timed (default wall)"
    )
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    progress.set_quiet(True)
    try:
        import loss_landscapes  # noqa: F401

        have_theirs = True
    except ImportError:
        have_theirs = False
    data = load_data("digits")
    split = data.test
    points, h = args.steps**2, SPAN / (args.steps - 1)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps}x{args.steps} "
        "grid "
        f"({points} points) on digits test ({len(split)} examples), batch size {args.batch_size}; "
        f"{args.clock} time, medians of {args.repeats} interleaved runs after one warm-up each"
        + (
            ""
            if have_theirs
            else "; loss-landscapes not installed (pip install --no-deps loss-landscapes)"
        )
    )
    print(
        "ours: compute_surface, loss and accuracy per point; theirs: "
        "loss_landscapes.random_plane, loss per point;"
        " cost: seconds per point / seconds of a plain forward over the same examples\n"
    )
    print(
        f"{'model':<22} {'params':>7} {'fwd ms':>7} {'walk s':>7} {'vmap s':>7} {'theirs s':>9} "
        f"{'speed':>6} {'cost walk':>9} {'cost theirs':>11} {'calls':>5} {'|walk-vmap|':>11} "
        f"{'|walk-theirs|':>13}"
    )
    for label, arch, kwargs in CASES:
        torch.manual_seed(0)
        model = build_model(
            arch, arch_kwargs_for(arch, data.input_shape, data.num_classes, **kwargs)
        ).eval()
        surface = _surface(model, args.steps, h)
        batches = [
            (split.x[i : i + args.batch_size], split.y[i : i + args.batch_size])
            for i in range(0, len(split), args.batch_size)
        ]

        def forwards(model=model, batches=batches) -> None:  # one plain forward pass per point
            with torch.inference_mode():
                for _ in range(points):
                    for x, _ in batches:
                        model(x)

        def ours(batching: str, model=model, surface=surface) -> np.ndarray:
            return compute_surface(model, surface, split, args.batch_size, {}, batching=batching)[
                0
            ]["loss"]

        variants = {"forward": forwards, "walk": lambda: ours("loop"), "vmap": lambda: ours("vmap")}
        if have_theirs:
            variants["theirs"] = _theirs(model, surface, split.x, split.y, args.steps, h)
        results = {name: fn() for name, fn in variants.items()}  # warm-up
        times = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, fn in variants.items():
                start = clock()
                results[name] = fn()
                times[name].append(clock() - start)
        t = {name: statistics.median(v) for name, v in times.items()}
        fwd = t["forward"] / points
        calls = _forward_calls(model, variants["walk"]) / points
        n_params = sum(p.numel() for p in model.parameters())
        diff_vmap = np.abs(results["walk"] - results["vmap"]).max()
        line = f"{label:<22} {n_params:>7} {fwd * 1e3:>7.3f} {t['walk']:>7.2f} {t['vmap']:>7.2f} "
        if have_theirs:
            diff, shared = _shared_difference(results["walk"], results["theirs"])
            line += (
                f"{t['theirs']:>9.2f} {t['theirs'] / t['walk']:>5.2f}x "
                f"{t['walk'] / points / fwd:>9.3f} "
                f"{t['theirs'] / points / fwd:>11.3f} {calls:>5.2f} {diff_vmap:>11.1e} "
                f"{diff:>9.1e} ({shared})"
            )
        else:
            line += (
                f"{'-':>9} {'-':>6} {t['walk'] / points / fwd:>9.3f} {'-':>11} {calls:>5.2f} "
                f"{diff_vmap:>11.1e}"
            )
        print(line, flush=True)
    print(
        "\nspeed: their time / our walk's time (above 1: we are faster). --batching auto on the "
        "CPU: the walk."
    )


if __name__ == "__main__":
    main()
