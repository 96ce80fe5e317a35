"""landscape's curvature engine against PyHessian 0.1 on the same CNN and data, in one run.

Models: VGG11 (width 0.25, BatchNorm, 580k parameters) trained on digits with batch 32 and with batch 512, like
the seed study's parents A and B; the Hessian is over all 1294 training examples in batches of 256 (the seed
study used 15 batches of 256). Prints, all measured here in this run (medians over REPEATS, runs interleaved):

1. top eigenvalue at equal accuracy: relative error against a tightly converged reference after each product,
   for PyHessian's power iteration and landscape's Lanczos, so the wall time and products each needs to reach
   the same error are read off the same runs; plus both libraries' default settings end to end.
2. trace: relative standard error of Hutchinson vs Hutch++ at the same budget of products (and PyHessian's
   trace with its own stopping rule).
3. the cost of one Hessian-vector product over the data divided by one full gradient, for landscape's product
   (graphs kept or recomputed, one or 8 vectors at a time), torch.func forward-over-reverse (the alternative
   measured before choosing reverse-over-reverse) and PyHessian's.

Run: `.venv/bin/python benchmarks/curvature_vs_pyhessian.py` (about 2-3 minutes on 2 CPU cores).
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from landscape.curvature.eigen import top_eigenvalues
from landscape.curvature.lanczos import lanczos
from landscape.curvature.operator import HessianOperator, probes
from landscape.curvature.pyhessian_adapter import _session
from landscape.curvature.trace import hessian_trace
from landscape.data import Batches, load_data
from landscape.models.zoo import arch_kwargs_for
from landscape.training.loop import TrainConfig, init_model, train

REPEATS = 3
BATCH = 256
LEVELS = (1e-2, 1e-3, 1e-4, 1e-5)  # float32 products: below 1e-6 is rounding noise
TRACE_BUDGET = 90
warnings.simplefilter("ignore", UserWarning)


def median_ms(f, n: int = 5) -> float:
    """Median wall time of f() in milliseconds, after one warm-up call."""
    f()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def trained(data, batch_size: int, epochs: int, lr: float):
    model = init_model("vgg11", arch_kwargs_for("vgg11", data.input_shape, data.num_classes, width=0.25), 0)
    return train(model, data, TrainConfig(batch_size=batch_size, lr=lr, epochs=epochs, data_seed=0)).model.eval()


def pyhessian_curve(model, split, tol: float, max_iter: int, seed: int) -> list[tuple[float, float]]:
    """(seconds since start, Rayleigh quotient) after each of PyHessian's products, power iteration for k=1."""
    start = time.perf_counter()
    curve: list[tuple[float, float]] = []
    with _session(model, split, BATCH, seed, "ce") as h:
        inner = h.dataloader_hv_product

        def recorded(v):
            value, hv = inner(v)
            curve.append((time.perf_counter() - start, value))
            return value, hv
        h.dataloader_hv_product = recorded
        h.eigenvalues(maxIter=max_iter, tol=tol, top_n=1)
    return curve


def lanczos_curve(model, split, steps: int, seed: int) -> list[tuple[float, float]]:
    """(seconds since start, top Ritz value) after each Lanczos step, operator construction included."""
    start = time.perf_counter()
    op = HessianOperator(model, split, BATCH)
    generator = torch.Generator().manual_seed(seed)
    curve: list[tuple[float, float]] = []

    def record(t, j) -> bool:
        curve.append((time.perf_counter() - start, float(torch.linalg.eigvalsh(t.matrix()[0])[-1])))
        return False
    lanczos(op, probes(op, 1, generator, "normal"), steps, generator, record)
    return curve


def first_reaching(curve: list[tuple[float, float]], reference: float, level: float) -> tuple[int, float] | None:
    """(products, seconds) at the first product whose estimate is within `level` relative error."""
    for i, (seconds, value) in enumerate(curve):
        if abs(value - reference) <= level * abs(reference):
            return i + 1, seconds
    return None


def eigen_section(name: str, model, split) -> None:
    ref = top_eigenvalues(model, split, k=2, tol=1e-10, max_hvps=300)
    lam = ref.eigenvalues[0]
    print(f"\n== {name}: top eigenvalue, reference {lam:.8g} (Lanczos, residual {ref.residuals[0]:.1e}); "
          f"lambda2/lambda1 = {ref.eigenvalues[1] / lam:.3f}")
    py_curves, lz_curves, py_default, lz_default = [], [], [], []
    for _ in range(REPEATS):  # interleaved, so both see the same machine
        py_curves.append(pyhessian_curve(model, split, tol=1e-9, max_iter=60, seed=0))
        lz_curves.append(lanczos_curve(model, split, steps=20, seed=0))
        py_default.append(top_eigenvalues(model, split, backend="pyhessian", method="power", seed=0))
        lz_default.append(top_eigenvalues(model, split, seed=0))
    print(f"{'rel. error':>10} | {'PyHessian power':^22} | {'landscape Lanczos':^22} | {'time ratio':>10}")
    print(f"{'':>10} | {'HVPs':>6} {'seconds':>14} | {'HVPs':>6} {'seconds':>14} | {'PyH/ours':>10}")
    for level in LEVELS:
        py = [first_reaching(c, lam, level) for c in py_curves]
        lz = [first_reaching(c, lam, level) for c in lz_curves]
        if any(r is None for r in lz):
            print(f"{level:>10.0e} | Lanczos did not reach it within 20 products")
            continue
        tl = statistics.median(r[1] for r in lz)
        if any(r is None for r in py):  # not reached in 60 products: its whole run is a lower bound
            tp = statistics.median(c[-1][0] for c in py_curves)
            print(f"{level:>10.0e} | {'>60':>6} {'>' + format(tp, '.2f'):>14} | {lz[0][0]:>6d} {tl:>14.2f} | "
                  f"{'>' + format(tp / tl, '.1f'):>9}x")
            continue
        tp = statistics.median(r[1] for r in py)
        print(f"{level:>10.0e} | {py[0][0]:>6d} {tp:>14.2f} | {lz[0][0]:>6d} {tl:>14.2f} | {tp / tl:>9.1f}x")
    tp, tl = statistics.median(r.seconds for r in py_default), statistics.median(r.seconds for r in lz_default)
    ep = abs(py_default[0].eigenvalues[0] - lam) / lam
    el = abs(lz_default[0].eigenvalues[0] - lam) / lam
    print(f"defaults end to end: PyHessian (power, tol 1e-3) {py_default[0].hvps} HVPs {tp:.2f} s, rel. error "
          f"{ep:.1e} | landscape (Lanczos, residual tol 1e-3) {lz_default[0].hvps} HVPs {tl:.2f} s, rel. error "
          f"{el:.1e} | time ratio {tp / tl:.1f}x, error ratio {ep / max(el, 1e-16):.0e}x")


def trace_section(name: str, model, split) -> None:
    print(f"\n== {name}: trace at a budget of {TRACE_BUDGET} HVPs")
    rows = [hessian_trace(model, split, method=m, batch_size=BATCH, max_hvps=TRACE_BUDGET, seed=0)
            for m in ("hutchinson", "hutch++")]
    for r in rows:
        print(f"{r.method:>11}: trace {r.trace:10.4f} +- {r.stderr:8.4f}  rel. stderr {r.rel_stderr:7.2%}  "
              f"{r.hvps} HVPs  {r.seconds:6.2f} s")
    ratio = rows[0].rel_stderr / rows[1].rel_stderr
    print(f"relative standard error Hutchinson / Hutch++ at equal budget: {ratio:.1f}x")
    old = hessian_trace(model, split, backend="pyhessian", batch_size=BATCH, max_hvps=100, seed=0)
    print(f"  PyHessian: trace {old.trace:10.4f} +- {old.stderr:8.4f}  rel. stderr {old.rel_stderr:7.2%}  "
          f"{old.hvps} HVPs  {old.seconds:6.2f} s (its own stop: maxIter 100, running mean changed < 1e-3)")
    if old.hvps < 10:
        print(f"  (PyHessian stopped after {old.hvps} probes whose running means happened to agree within 0.1%: "
              f"estimates {np.round(old.estimates, 3).tolist()}; the {TRACE_BUDGET}-probe answer is "
              f"{rows[1].trace:.2f})")


def cost_section(name: str, model, split) -> None:
    print(f"\n== {name}: cost of one HVP over the data / one full gradient (median of 5)")
    kept = HessianOperator(model, split, BATCH, cache=True)
    recomputed = HessianOperator(model, split, BATCH, cache=False)
    g = torch.Generator().manual_seed(0)
    v1, v8 = probes(kept, 1, g), probes(kept, 8, g)
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    tangent = dict(zip(params, (t.view(p.shape) for t, p in zip(v1[0].split(kept.numels), params.values()))))
    data = list(Batches(split, BATCH))

    def forward_over_reverse():
        for x, y in data:
            def loss(p, x=x, y=y):
                return F.cross_entropy(functional_call(model, (p, buffers), (x,)), y, reduction="sum")
            jvp(grad(loss), (params,), (tangent,))

    with _session(model, split, BATCH, 0, "ce") as h:
        vec = [torch.randn_like(p) for p in h.params]
        pyh = median_ms(lambda: h.dataloader_hv_product(vec))
    gradient = median_ms(kept.gradient)
    rows = [("landscape, gradient graphs kept (default when they fit)", median_ms(lambda: kept.matmat(v1))),
            ("landscape, graphs recomputed every product", median_ms(lambda: recomputed.matmat(v1))),
            ("landscape, 8 vectors per pass, graphs kept (per vector)", median_ms(lambda: kept.matmat(v8)) / 8),
            ("torch.func forward-over-reverse jvp(grad) (not used)", median_ms(forward_over_reverse)),
            ("PyHessian 0.1 dataloader_hv_product", pyh)]
    print(f"{'one full gradient':<58} {gradient:8.1f} ms   1.00")
    for label, ms in rows:
        print(f"{label:<58} {ms:8.1f} ms   {ms / gradient:4.2f}")


def main() -> None:
    torch.manual_seed(0)
    print(f"landscape curvature vs PyHessian 0.1 | torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"load average at the start (1, 5, 15 min): {os.getloadavg()}")
    data = load_data("digits")
    split = data.train
    models = {"VGG11x0.25 trained with batch 32": trained(data, 32, 10, 0.05),
              "VGG11x0.25 trained with batch 512": trained(data, 512, 30, 0.1)}
    n = sum(p.numel() for p in next(iter(models.values())).parameters())
    print(f"data: digits, {len(split)} training examples in batches of {BATCH}; {n} parameters; float32 on CPU")
    for name, model in models.items():
        eigen_section(name, model, split)
    first = next(iter(models))
    trace_section(first, models[first], split)
    cost_section(first, models[first], split)
    print(f"\nload average at the end (1, 5, 15 min): {os.getloadavg()}; timings are wall clock, medians of "
          f"{REPEATS} interleaved runs (eigenvalues) or 5 calls (costs)")


if __name__ == "__main__":
    main()
