"""landscape's curvature engine beside PyHessian 0.1, curvlinops 3.0.1 and hessian-eigenthings
1.0.0a5.

Same models, same examples and batches, all four libraries in one process, runs interleaved. Models:
an MLP, a VGG11 and a ResNet-18 at small widths, trained for a few epochs on digits (cached under
runs/bench-curvature/), evaluated in float32. Prints, all measured in this run:

1. the cost of one Hessian-vector product over the data divided by one full gradient, for every
   library (and for landscape's paths: kept graphs, recomputed graphs, 5 vectors per pass,
   torch.func jvp(grad));
2. top-1 and top-5 eigenvalues: for each library and relative error 1e-2, 1e-3, 1e-4 (against a
   tightly converged float64 Lanczos reference), the products and wall time of its cheapest setting
   that reached it, each library's accuracy knob swept over the same kind of grid (landscape and
   PyHessian: tol; curvlinops: scipy eigsh's tol; hessian-eigenthings: lanczos' max_iter, it has no
   early stop); then PyHessian's defaults (maxIter 100, tol 1e-3) against landscape's defaults (tol
   1e-3), with the error each reached;
3. the relative error of every trace estimator at 90 products against the exact trace of the MLP
   (root mean square over SEEDS start seeds);
4. the wall time of one 90-step SLQ run for the ESD (PyHessian's `density` with the removed
   `torch.eig` shimmed here only);
5. the curvature suite (`landscape curvature`: top-5, trace and density from one block Lanczos run,
   defaults) against PyHessian's three calls at their defaults (`eigenvalues(top_n=5)`, `trace()`,
   `density()`): wall time (median over seeds 0, 1, 2, the runs interleaved) and each figure's
   error: top-5 against the float64 reference, the trace against the exact one (MLP) or a
   high-budget Krylov-aware estimate (conv nets: to a relative standard error of 1e-3 on VGG11,
   2e-3 on ResNet-18, whose products cost three times as much), the density's first two moments
   against tr(H)/n and tr(H^2)/n (MLP, exact), as root mean squares over the seeds; and where the
   suite's products and seconds went (the block Lanczos run against the trace probes and the
   operator's set-up). ResNet-18 runs on the digits' 8 x 8 inputs like the other two models, not
   on CIFAR-shaped 3 x 32 x 32 ones (16 times the pixels), to keep `--suite` to minutes on a CPU.

Timings are medians of 3 (the sweeps run once; the cheapest setting per target and the defaults are
run twice more); products are deterministic given the seed. Peers are benchmark extras (`pip install
-e .[bench]`; the Makefile installs them with --no-deps so that torch is never replaced).

Run: `python benchmarks/curvature_vs_peers.py [--device cuda] [--threads N] [--suite]` (`--suite`:
section 5 only). References (float64 eigenvalues, exact or high-budget traces) are cached beside the
checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.func import functional_call, grad, jvp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from landscape.curvature.density import spectral_density
from landscape.curvature.eigen import lanczos_top, top_eigenvalues
from landscape.curvature.operator import HessianOperator, probes
from landscape.curvature.pyhessian_adapter import _session
from landscape.curvature.suite import curvature_suite, krylov_suite
from landscape.curvature.trace import hessian_trace
from landscape.data import Batches, load_data, subsample
from landscape.io.checkpoint import file_hash, load_checkpoint, save_checkpoint
from landscape.models.zoo import arch_kwargs_for
from landscape.training.loop import TrainConfig, init_model, train

BATCH = 256
LEVELS = (1e-2, 1e-3, 1e-4)
SEEDS = 10
TRACE_BUDGET = 90
SUITE_SEEDS = (0, 1, 2)
# the conv nets' trace references: relative standard error (ResNet-18's products cost 3x VGG11's;
# 2e-3 is still 5x below the 1% the suite's trace is judged by)
REFERENCE_RSE = {"VGG11 x0.125": 1e-3, "ResNet-18 x0.125": 2e-3}
ESD_STEPS = 90
CACHE = Path(__file__).resolve().parents[1] / "runs" / "bench-curvature"
MODELS = {  # name: (arch, arch kwargs, training examples used for the Hessian: None = all 1294)
    "MLP 64-32": ("mlp", {"hidden": [64, 32]}, None),
    "VGG11 x0.125": ("vgg11", {"width": 0.125}, 512),
    "ResNet-18 x0.125": ("resnet18", {"width": 0.125}, 512),
}
GRIDS = {  # each library's accuracy knob, swept
    "landscape": {1: (1e-1, 1e-2, 1e-3, 1e-4), 5: (1e-1, 1e-2, 1e-3, 1e-4)},
    "PyHessian": {1: (1e-2, 1e-3, 1e-4, 1e-5), 5: (1e-2, 1e-3, 1e-4)},
    "curvlinops": {1: (1e-1, 1e-2, 1e-4), 5: (1e-1, 1e-2, 1e-4)},
    "eigenthings": {1: (4, 6, 8, 10, 14, 20), 5: (10, 14, 18, 24, 30)},
}
KNOB = {"landscape": "tol", "PyHessian": "tol", "curvlinops": "tol", "eigenthings": "max_iter"}
warnings.simplefilter("ignore", UserWarning)


@dataclass
class Case:
    """A model with its examples, in the forms each library takes."""

    name: str
    model: nn.Module
    split: object
    batches: list

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @property
    def n(self) -> int:
        return sum(len(y) for _, y in self.batches)


def trained(name: str, data, device: torch.device) -> Case:
    arch, kwargs, samples = MODELS[name]
    path = CACHE / f"{arch}.pt"
    if not path.exists():
        model = init_model(
            arch, arch_kwargs_for(arch, data.input_shape, data.num_classes, **kwargs), 0
        )
        train(model, data, TrainConfig(batch_size=32, lr=0.05, epochs=5, data_seed=0))
        CACHE.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, path)
    model = load_checkpoint(path, device)[0]
    split = subsample(data.train, samples, seed=0).to(device) if samples else data.train.to(device)
    return Case(name, model, split, list(Batches(split, BATCH)))


# ---- the four libraries, each counting its own products ------------------------------------------


def curvlinops_operator(case: Case):
    from curvlinops import HessianLinearOperator

    # its cheapest settings
    op = HessianLinearOperator(
        case.model,
        nn.CrossEntropyLoss(),
        case.params,
        case.batches,
        progressbar=False,
        check_deterministic=False,
        num_data=case.n,
    )
    op.products = 0
    inner = op._matmat

    def counted(m):
        op.products += m[0].shape[-1]
        return inner(m)

    op._matmat = counted
    return op


def eigenthings_operator(case: Case):
    from hessian_eigenthings import HessianOperator as EigenthingsOperator

    ce, scale = nn.CrossEntropyLoss(reduction="sum"), len(case.batches) / case.n

    def loss(
        model, batch
    ):  # its operator averages batches unweighted: this makes it the mean over examples
        return ce(model(batch[0]), batch[1]) * scale

    op = EigenthingsOperator(case.model, case.batches, loss)
    op.products = 0
    inner = op.matvec

    def counted(v):
        op.products += 1
        return inner(v)

    op.matvec = counted
    return op


def eig_landscape(case: Case, k: int, tol: float, seed: int) -> tuple[np.ndarray, int]:
    r = top_eigenvalues(case.model, case.split, k=k, tol=tol, seed=seed, batch_size=BATCH)
    return r.eigenvalues, r.hvps


def eig_pyhessian(case: Case, k: int, tol: float, seed: int) -> tuple[np.ndarray, int]:
    with _session(case.model, case.split, BATCH, seed, "ce") as h:
        values, _ = h.eigenvalues(maxIter=100, tol=tol, top_n=k)
        return np.array(sorted(values, key=abs, reverse=True)), h.hvps


def eig_curvlinops(case: Case, k: int, tol: float, seed: int) -> tuple[np.ndarray, int]:
    op = curvlinops_operator(case)
    v0 = np.random.default_rng(seed).standard_normal(op.shape[1])
    values = eigsh(
        op.to_scipy(np.float64), k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False
    )
    return np.sort(values)[::-1], op.products


def eig_eigenthings(case: Case, k: int, max_iter: int, seed: int) -> tuple[np.ndarray, int]:
    from hessian_eigenthings import lanczos

    op = eigenthings_operator(case)
    values = lanczos(op, k=k, max_iter=max_iter, which="LA", seed=seed).eigenvalues
    return np.sort(np.asarray(values.cpu() if torch.is_tensor(values) else values))[
        ::-1
    ], op.products


EIG = {
    "landscape": eig_landscape,
    "PyHessian": eig_pyhessian,
    "curvlinops": eig_curvlinops,
    "eigenthings": eig_eigenthings,
}


def timed(f: Callable, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = f(*args)
    return time.perf_counter() - start, out


def median_ms(f: Callable, n: int = 5) -> float:
    f()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


# ---- 1. cost of one product ----------------------------------------------------------------------


def cost_section(case: Case) -> None:
    print(
        f"\n== {case.name}: one Hessian-vector product over the data / one full gradient (median "
        "of 5)"
    )
    kept = HessianOperator(case.model, case.split, BATCH, cache=True)
    recomputed = HessianOperator(case.model, case.split, BATCH, cache=False)
    g = torch.Generator().manual_seed(0)
    v1, v5 = probes(kept, 1, g), probes(kept, 5, g)
    params = {k: p.detach() for k, p in case.model.named_parameters()}
    buffers = dict(case.model.named_buffers())
    tangent = dict(
        zip(params, (t.view(p.shape) for t, p in zip(v1[0].split(kept.numels), params.values())))
    )

    def forward_over_reverse():
        for x, y in case.batches:

            def loss(p, x=x, y=y):
                return F.cross_entropy(
                    functional_call(case.model, (p, buffers), (x,)), y, reduction="sum"
                )

            jvp(grad(loss), (params,), (tangent,))

    curv, things = curvlinops_operator(case), eigenthings_operator(case)
    rows = {
        "one full gradient (landscape)": kept.gradient,
        "landscape, kept graphs (default when they fit)": lambda: kept.matmat(v1),
        "landscape, recomputed graphs": lambda: recomputed.matmat(v1),
        "landscape, 5 vectors per pass, kept graphs (per vector)": lambda: kept.matmat(v5),
        "torch.func jvp(grad(loss)) (not used)": forward_over_reverse,
        "curvlinops 3.0.1 H @ v": lambda: curv @ v1[0],
        "hessian-eigenthings 1.0.0a5 matvec": lambda: things.matvec(v1[0]),
    }
    with _session(case.model, case.split, BATCH, 0, "ce") as h:
        vec = [t.view(p.shape) for t, p in zip(v1[0].split(kept.numels), h.params)]
        rows["PyHessian 0.1 dataloader_hv_product"] = lambda: h.dataloader_hv_product(vec)
        times: dict[str, list[float]] = {label: [] for label in rows}
        for _ in range(6):  # interleaved; the first round warms up
            for label, f in rows.items():
                start = time.perf_counter()
                f()
                times[label].append(time.perf_counter() - start)
    ms = {label: 1000 * statistics.median(t[1:]) for label, t in times.items()}
    ms["landscape, 5 vectors per pass, kept graphs (per vector)"] /= 5
    gradient = ms.pop("one full gradient (landscape)")
    print(f"{'one full gradient':<58} {gradient:8.1f} ms   1.00")
    for label, t in ms.items():
        print(f"{label:<58} {t:8.1f} ms   {t / gradient:4.2f}")


# ---- 2. eigenvalues ------------------------------------------------------------------------------


class Negated:
    """-H, to find H's smallest eigenvalue as the largest of -H."""

    def __init__(self, op: HessianOperator):
        self.op, self.size, self.dtype, self.device, self.hvps = op, op.size, op.dtype, op.device, 0

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        self.hvps += len(vectors)
        return -self.op.matmat(vectors)


def reference(case: Case) -> tuple[np.ndarray, float]:
    """The top-6 eigenvalues (float64 Lanczos, residuals at most 1e-10 relative) and a bound on the
    magnitude of the smallest one (its Ritz value plus residual after at most 100 products of
    -H)."""

    def compute() -> list[float]:
        model, split = model64(case), case.split.to("cpu")
        top = top_eigenvalues(
            model, split, k=6, tol=1e-10, max_hvps=400, strict=True, batch_size=BATCH
        )
        low = lanczos_top(
            Negated(HessianOperator(model, split, BATCH)),
            1,
            1e-2,
            100,
            torch.Generator().manual_seed(0),
            strict=True,
        )
        assert top.converged, "the reference did not converge"
        return [*top.eigenvalues, abs(float(low.values[0])) + float(low.residuals[0])]

    values = cached(case, "eigenvalues", compute)
    return np.array(values[:6]), values[6]


def rel_error(values: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(values - exact) / np.abs(exact)))


def eig_section(case: Case) -> None:
    exact, smallest = reference(case)
    print(
        f"\n== {case.name}: top eigenvalues; float64 reference {np.round(exact[:5], 6).tolist()}; "
        "the smallest "
        f"eigenvalue's magnitude is at most {smallest:.3g} (so the largest-magnitude ones that "
        "PyHessian finds are these)"
    )
    assert smallest < exact[4]
    runs: dict[tuple, list] = {}  # (library, k, knob) -> [error, products, [seconds...]]
    for k in (1, 5):
        for i in range(max(len(g[k]) for g in GRIDS.values())):
            for lib, grid in GRIDS.items():
                if i < len(grid[k]):
                    seconds, (values, products) = timed(EIG[lib], case, k, grid[k][i], 0)
                    runs[lib, k, grid[k][i]] = [rel_error(values, exact[:k]), products, [seconds]]
    best: dict[tuple, tuple] = {}
    for (lib, k, knob), (error, products, _) in runs.items():
        for level in LEVELS:
            if error <= level and (
                (lib, k, level) not in best or products < runs[best[lib, k, level]][1]
            ):
                best[lib, k, level] = (lib, k, knob)
    defaults = {("landscape", k, 1e-3) for k in (1, 5)} | {("PyHessian", k, 1e-3) for k in (1, 5)}
    for _ in range(2):  # two more timings of every run the tables use: medians of 3
        for key in sorted(set(best.values()) | defaults, key=str):
            runs[key][2].append(timed(EIG[key[0]], case, key[1], key[2], 0)[0])
    libs = list(GRIDS)
    for k in (1, 5):
        print(
            f"top-{k}: products and median seconds of the cheapest setting that reached each "
            "relative error"
        )
        print(
            f"{'rel. error':>10} | "
            + " | ".join(f"{lib:^31}" for lib in libs)
            + " | PyHessian / landscape"
        )
        for level in LEVELS:
            cells, secs = [], {}
            for lib in libs:
                key = best.get((lib, k, level))
                if key is None:
                    cells.append(f"{'not reached':^31}")
                    continue
                secs[lib] = statistics.median(runs[key][2])
                cells.append(f"{runs[key][1]:>3} HVPs {secs[lib]:6.2f} s {KNOB[lib]}={key[2]:<6g}")
            ratio = (
                f"{secs['PyHessian'] / secs['landscape']:.1f}x"
                if {"PyHessian", "landscape"} <= set(secs)
                else "-"
            )
            print(f"{level:>10.0e} | " + " | ".join(cells) + f" | {ratio}")
        py, ours = runs["PyHessian", k, 1e-3], runs["landscape", k, 1e-3]
        tp, tl = statistics.median(py[2]), statistics.median(ours[2])
        print(
            f"defaults, top-{k}: PyHessian (maxIter 100, tol 1e-3) {py[1]} HVPs {tp:.2f} s, rel. "
            f"error {py[0]:.1e} | landscape (tol 1e-3) {ours[1]} HVPs {tl:.2f} s, rel. error "
            f"{ours[0]:.1e} | "
            f"{tp / tl:.1f}x faster, error {'at most' if ours[0] <= py[0] else 'ABOVE'} PyHessian's"
        )
        block = 2 if k == 1 else k

        def blocked(case=case, k=k, block=block):
            return top_eigenvalues(
                case.model, case.split, k=k, seed=0, batch_size=BATCH, block=block
            )

        seconds = [timed(blocked)[0] for _ in range(3)]
        r = blocked()
        print(
            f"block Lanczos, top-{k} with --block {block} (tol 1e-3): {r.hvps} HVPs "
            f"{statistics.median(seconds):.2f} s, rel. error "
            f"{rel_error(r.eigenvalues, exact[:k]):.1e} "
            f"(single vector: {ours[1]} HVPs {tl:.2f} s)"
        )


# ---- 3. trace ------------------------------------------------------------------------------------


def cached(case: Case, what: str, compute: Callable[[], list[float]]) -> list[float]:
    """`compute()`, cached next to the checkpoint in `<arch>.<what>` (keyed by the checkpoint's
    hash)."""
    checkpoint = CACHE / f"{MODELS[case.name][0]}.pt"
    path = checkpoint.with_suffix(f".{what}")
    if path.exists() and path.read_text().split()[0] == file_hash(checkpoint):
        return [float(v) for v in path.read_text().split()[1:]]
    values = compute()
    path.write_text(f"{file_hash(checkpoint)} {' '.join(repr(float(v)) for v in values)}\n")
    return values


def model64(case: Case) -> nn.Module:
    return load_checkpoint(CACHE / f"{MODELS[case.name][0]}.pt", "cpu")[0].double()


def exact_moments(case: Case) -> tuple[float, float]:
    """tr(H) = sum_i e_i^T H e_i and tr(H^2) = ||H||_F^2 in float64 from the products with all unit
    vectors."""

    def compute() -> list[float]:
        op = HessianOperator(model64(case), case.split.to("cpu"), BATCH)
        eye = torch.eye(op.size, dtype=torch.float64)
        trace = square = 0.0
        for rows in eye.split(512):
            h = op.matmat(rows)
            trace, square = (
                trace + float(torch.einsum("bn,bn->", rows, h)),
                square + float((h**2).sum()),
            )
        return [trace, square]

    trace, square = cached(case, "moments", compute)
    return trace, square


def exact_trace(case: Case) -> float:
    return exact_moments(case)[0]


@contextlib.contextmanager
def seeded(seed: int):
    """The global RNG seeded (PyHessian and curvlinops draw from it), restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def trace_section(case: Case) -> None:
    from curvlinops import hutchinson_trace, hutchpp_trace, xtrace
    from hessian_eigenthings import hutch_plus_plus, hutchinson

    exact = exact_trace(case)
    m = TRACE_BUDGET

    def ours(method):
        return lambda s: (
            hessian_trace(case.model, case.split, method=method, max_hvps=m, seed=s).trace,
            m,
        )

    def pyhessian(s):
        with _session(case.model, case.split, BATCH, s, "ce") as h:
            return float(np.mean(h.trace(maxIter=m, tol=-math.inf))), h.hvps

    def curv(f):
        def run(s):
            op = curvlinops_operator(case)
            with seeded(s):
                return float(f(op, m)), op.products

        return run

    def things(f, **kw):
        def run(s):
            op = eigenthings_operator(case)
            return float(f(op, seed=s, **kw).estimate), op.products

        return run

    estimators = {
        "landscape Hutch++": ours("hutch++"),
        "landscape Hutchinson": ours("hutchinson"),
        "PyHessian Hutchinson (tol -inf: all 90)": pyhessian,
        "curvlinops hutchinson_trace": curv(hutchinson_trace),
        "curvlinops hutchpp_trace": curv(hutchpp_trace),
        "curvlinops xtrace": curv(xtrace),
        "eigenthings hutchinson": things(hutchinson, num_samples=m),
        "eigenthings hutch_plus_plus": things(hutch_plus_plus, num_matvecs=m),
    }
    print(
        f"\n== {case.name}: trace at {m} products; exact trace {exact:.6g} (float64, all unit "
        f"vectors); relative error over {SEEDS} seeds"
    )
    results = {name: [] for name in estimators}
    for s in range(SEEDS):
        for name, f in estimators.items():
            seconds, (estimate, products) = timed(f, s)
            results[name].append((abs(estimate - exact) / abs(exact), products, seconds))
    print(f"{'estimator':<42} {'RMS rel. error':>14} {'median':>8} {'products':>9} {'seconds':>8}")
    for name, rows in results.items():
        errors = np.array([r[0] for r in rows])
        print(
            f"{name:<42} {math.sqrt(np.mean(errors**2)):>14.2%} {np.median(errors):>8.2%} "
            f"{rows[0][1]:>9} {statistics.median(r[2] for r in rows):>8.2f}"
        )


# ---- 4. spectral density -------------------------------------------------------------------------


@contextlib.contextmanager
def torch_eig_shim():
    """torch.eig(A, eigenvectors) as PyHessian 0.1's density() calls it (removed from torch 2)."""
    old = torch.eig

    def eig(a, eigenvectors=False):
        w, v = torch.linalg.eigh(a)
        return torch.stack([w, torch.zeros_like(w)], -1), (v if eigenvectors else torch.empty(0))

    torch.eig = eig
    try:
        yield
    finally:
        torch.eig = old


def esd_section(case: Case) -> None:
    from curvlinops import lanczos_approximate_spectrum
    from hessian_eigenthings import spectral_density as things_density

    def ours():
        return spectral_density(
            case.model, case.split, steps=ESD_STEPS, runs=1, batch_size=BATCH
        ).hvps

    def pyhessian():
        with _session(case.model, case.split, BATCH, 0, "ce") as h, torch_eig_shim():
            h.density(iter=ESD_STEPS, n_v=1)
            return h.hvps

    def curv():
        op = curvlinops_operator(case)
        with seeded(0):
            lanczos_approximate_spectrum(op, ESD_STEPS)
        return op.products

    def things():
        op = eigenthings_operator(case)
        things_density(op, num_runs=1, lanczos_steps=ESD_STEPS, seed=0)
        return op.products

    runs = {
        "landscape spectral_density": ours,
        "PyHessian density (torch.eig shimmed)": pyhessian,
        "curvlinops lanczos_approximate_spectrum": curv,
        "eigenthings spectral_density": things,
    }
    times = {name: [] for name in runs}
    products = {}
    for _ in range(3):
        for name, f in runs.items():
            seconds, products[name] = timed(f)
            times[name].append(seconds)
    print(f"\n== {case.name}: one {ESD_STEPS}-step SLQ run (median of 3)")
    base = statistics.median(times["landscape spectral_density"])
    for name in runs:
        t = statistics.median(times[name])
        print(
            f"{name:<42} {products[name]:>4} products {t:7.2f} s  {t / base:4.1f}x landscape's time"
        )


# ---- 5. the curvature suite ----------------------------------------------------------------------


def reference_trace(case: Case) -> tuple[float, float]:
    """The exact trace (MLP), or the Krylov-aware estimate of a 50 x 4 basis plus probes to the
    relative standard error REFERENCE_RSE of the model (at most 1000): (trace, its standard
    error)."""
    if case.name.startswith("MLP"):
        return exact_trace(case), 0.0

    def compute() -> list[float]:
        op = HessianOperator(case.model, case.split, BATCH)
        rse = REFERENCE_RSE[case.name]
        run = krylov_suite(op, 1, 1e-3, 50, 4, rse, 1200, torch.Generator().manual_seed(123))
        return [run.estimates.mean(), run.estimates.std(ddof=1) / math.sqrt(len(run.estimates))]

    trace, stderr = cached(case, "trace-reference", compute)
    return trace, stderr


def moments(nodes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The first two moments of an SLQ measure (rows: start vectors, averaged)."""
    return np.array([(weights * nodes**p).sum(-1).mean() for p in (1, 2)])


def suite_section(case: Case) -> None:
    exact, _ = reference(case)
    trace_ref, trace_se = reference_trace(case)
    mlp = case.name.startswith("MLP")
    moment_ref = (
        np.array(exact_moments(case)) / sum(p.numel() for p in case.params) if mlp else None
    )
    rows = [
        "PyHessian eigenvalues(top_n=5)",
        "PyHessian trace()",
        "PyHessian density()",
        "PyHessian, all three",
        "landscape curvature_suite(k=5)",
    ]
    seconds = {r: [] for r in rows}
    hvps = {r: [] for r in rows}
    errors = {r: {"top-5": [], "trace": [], "moments": []} for r in rows}
    split = []  # per seed: (Lanczos products, their seconds, trace probes, the suite's seconds)
    for seed in SUITE_SEEDS:
        with _session(case.model, case.split, BATCH, seed, "ce") as h, torch_eig_shim():
            for row, call in (
                (rows[0], lambda: h.eigenvalues(maxIter=100, tol=1e-3, top_n=5)[0]),
                (rows[1], lambda: h.trace()),
                (rows[2], lambda: h.density()),
            ):
                before = h.hvps
                t, out = timed(call)
                seconds[row].append(t)
                hvps[row].append(h.hvps - before)
                if row == rows[0]:
                    errors[row]["top-5"].append(
                        rel_error(np.array(sorted(out, key=abs, reverse=True)), exact[:5])
                    )
                elif row == rows[1]:
                    errors[row]["trace"].append(abs(np.mean(out) - trace_ref) / abs(trace_ref))
                elif mlp:
                    errors[row]["moments"].append(
                        np.abs(moments(np.array(out[0]), np.array(out[1])) - moment_ref)
                        / np.abs(moment_ref)
                    )
        seconds[rows[3]].append(sum(seconds[r][-1] for r in rows[:3]))
        hvps[rows[3]].append(sum(hvps[r][-1] for r in rows[:3]))
        t, r = timed(
            lambda seed=seed: curvature_suite(
                case.model, case.split, k=5, seed=seed, batch_size=BATCH
            )
        )
        ours = rows[4]
        seconds[ours].append(t)
        hvps[ours].append(r.hvps)
        e = r.eigenvalues
        split.append((e.hvps, e.seconds, r.hvps - e.hvps, r.seconds))
        errors[ours]["top-5"].append(rel_error(r.eigenvalues.eigenvalues, exact[:5]))
        errors[ours]["trace"].append(abs(r.trace.trace - trace_ref) / abs(trace_ref))
        if mlp:
            errors[ours]["moments"].append(
                np.abs(moments(r.esd.nodes, r.esd.weights) - moment_ref) / np.abs(moment_ref)
            )
    for part, row in (("top-5", rows[0]), ("trace", rows[1]), ("moments", rows[2])):
        errors[rows[3]][part] = errors[row][part]
    reference_text = (
        f"exact trace {trace_ref:.6g}"
        if mlp
        else f"trace reference {trace_ref:.6g} +- {trace_se:.2g} (Krylov-aware, high budget)"
    )
    print(
        f"\n== {case.name}: curvature suite vs PyHessian's three calls at their defaults; top-5 "
        "reference "
        f"{np.round(exact[:5], 6).tolist()}, {reference_text}; seconds: median over seeds "
        f"{list(SUITE_SEEDS)}, errors: root mean square over them"
    )

    def rms(values: list) -> str:
        return f"{math.sqrt(np.mean(np.square(values))):.1e}" if len(values) else "-"

    print(
        f"{'':<32} {'HVPs':>5} {'seconds':>8} {'top-5 rel. err':>15} {'trace rel. err':>15} "
        f"{'ESD m1 rel. err':>16} {'ESD m2 rel. err':>16}"
    )
    for row in rows:
        m = np.array(errors[row]["moments"])
        print(
            f"{row:<32} {statistics.median(hvps[row]):>5.0f} "
            f"{statistics.median(seconds[row]):>8.2f} "
            f"{rms(errors[row]['top-5']):>15} {rms(errors[row]['trace']):>15} "
            f"{rms(m[:, 0] if len(m) else []):>16} {rms(m[:, 1] if len(m) else []):>16}"
        )
    ratio = statistics.median(seconds[rows[3]]) / statistics.median(seconds[rows[4]])
    print(f"suite: {ratio:.1f}x faster than PyHessian's three calls")
    lanczos_hvps, lanczos_s, probes, total_s = (statistics.median(v) for v in zip(*split))
    print(
        f"suite's products (median over seeds): {lanczos_hvps:.0f} in the block Lanczos run "
        f"({lanczos_s:.2f} s); {probes:.0f} trace probes and the operator's set-up in the other "
        f"{total_s - lanczos_s:.2f} s of its {total_s:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--suite", action="store_true", help="Run only section 5, the curvature suite."
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    used = (
        ("pyhessian",)
        if args.suite
        else ("pyhessian", "curvlinops-for-pytorch", "hessian-eigenthings")
    )
    peers = ", ".join(f"{p} {version(p)}" for p in used)
    print(
        f"landscape curvature vs {peers} | torch {torch.__version__}, {torch.get_num_threads()} "
        "thread(s), "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, device {device}, "
        f"python {platform.python_version()}"
    )
    print(f"load average at the start (1, 5, 15 min): {os.getloadavg()}")
    start = time.perf_counter()
    data = load_data("digits")
    cases = [trained(name, data, device) for name in MODELS]
    for case in cases:
        n = sum(p.numel() for p in case.params)
        print(
            f"{case.name}: {n} parameters, {case.n} training examples in batches of {BATCH}, "
            f"float32; products by {HessianOperator(case.model, case.split, BATCH).path}"
        )
    if not args.suite:
        for case in cases:
            cost_section(case)
        for case in cases:
            eig_section(case)
        trace_section(cases[0])
        for case in cases[:2]:
            esd_section(case)
    for case in cases:
        suite_section(case)
    print(
        f"\ntotal {time.perf_counter() - start:.0f} s; load average at the end (1, 5, 15 min): "
        f"{os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
