"""`landscape eig`, `trace`, `esd` and `curvature` (all three from one run): curvature of a
checkpoint's loss (eval mode, mean loss over the examples)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from landscape.choices import (
    BACKENDS,
    CURVATURE_LABELS,
    CURVATURES,
    EIG_METHODS,
    TRACE_METHODS,
    WHICH,
)

from .options import NAME, compose, measure

CURVATURE = compose(
    click.argument("checkpoint", type=click.Path(dir_okay=False)),
    measure(),
    NAME,
    click.option(
        "--curvature",
        type=click.Choice(CURVATURES),
        default="hessian",
        show_default=True,
        help="The matrix: the Hessian, the generalised Gauss-Newton matrix, or the empirical "
        "Fisher.",
    ),
)
PER_LAYER = click.option(
    "--per-layer",
    is_flag=True,
    help="Measure each parameter block's diagonal block instead (stored as block_<what>).",
)


def _run(
    checkpoint: str,
    what: str | None,
    opts: dict,
    compute: Callable,
    describe: Callable[[Any], str],
    omit_from_json: tuple[str, ...] = (),
) -> None:
    """Load the model and data, compute, print, and store `/models/<name>/<what>` (the Hessian) or
    `/models/<name>/<curvature>/<what>` when --out is given; with `what` None the result is a suite
    (`SuiteResult`): its groups are stored together, each with the settings they share, and the JSON
    object holds one object per group. Every group also records the loss, accuracy and gradient norm
    at the measured point."""
    from landscape.curvature.stationarity import FAR_FROM_STATIONARY, point_state
    from landscape.data.split import subsample
    from landscape.errors import warn
    from landscape.io.store import result_arrays, write_results

    from .session import Session, stem, stored

    session = Session(opts["device"], opts["quiet"], opts["as_json"])
    model = session.load(checkpoint)[0]
    data = session.data(opts["data_spec"], [model], opts["normalize"])
    split = subsample(
        data.split(opts["split"]), opts["samples"], opts["seed"], of=f"of the {opts['split']} split"
    )
    result = compute(model, split)
    point = point_state(model, split, opts["batch_size"], opts["loss"])
    if point.far:
        warn(
            f"{checkpoint} is far from a stationary point of the measured loss: gradient norm "
            f"{point.grad_norm:.3g}, {point.rel_grad_norm:.3g} of the weights' norm (above "
            f"{FAR_FROM_STATIONARY:g}); its curvature does not describe a minimum"
        )
    parts, shared = (result.parts(), result.shared()) if what is None else ({what: result}, {})
    groups = {
        part: (arrays, {**attrs, **point.attrs()})
        for part, (arrays, attrs) in ((part, result_arrays(r)) for part, r in parts.items())
    }
    settings = session.settings(
        data,
        split=opts["split"],
        samples=opts["samples"],
        batch_size=opts["batch_size"],
        seed=opts["seed"],
        criterion=opts["loss"],
    )
    curvature = "" if opts["curvature"] == "hessian" else f"/{opts['curvature']}"
    if opts["out"]:
        name = opts["name"] or stem(checkpoint)
        write_results(
            opts["out"],
            {
                f"/models/{name}{curvature}/{part}": (
                    arrays,
                    {**attrs, **shared, **stored(settings)},
                )
                for part, (arrays, attrs) in groups.items()
            },
        )
    shown = {
        part: {k: v for k, v in {**arrays, **attrs}.items() if k not in omit_from_json}
        for part, (arrays, attrs) in groups.items()
    }
    session.emit(
        {**settings, **(shown[what] if what else {**shared, **shown})},
        f"{describe(result)}\n  {point.text()}",
    )


def _method(method: str | None, backend: str, default: str, pyhessian: str) -> str:
    """The method to run: the default of the backend, and only `pyhessian`'s own one with --backend
    pyhessian."""
    from landscape.errors import LandscapeError

    if backend == "pyhessian":
        if method not in (None, pyhessian):
            raise LandscapeError(f"--backend pyhessian has only --method {pyhessian}")
        return pyhessian
    return method or default


def _products(curvature: str) -> str:
    return (
        "Hessian-vector products"
        if curvature == "hessian"
        else f"{CURVATURE_LABELS[curvature]} products"
    )


def _eig_lines(checkpoint: str, r) -> list[str]:
    kind = "largest algebraic" if r.which == "algebraic" else "largest magnitude"
    lines = [
        (
            f"{checkpoint}: top-{r.k} {CURVATURE_LABELS[r.curvature]} eigenvalues ({r.backend} "
            f"{r.method}, {kind}) on {r.n_examples} examples, {r.n_params} parameters"
        )
    ]
    lines += [
        f"  {i + 1:>3}  {v: .6g}  +- {bound:.1e}  (residual {res:.1e})"
        for i, (v, bound, res) in enumerate(zip(r.eigenvalues, r.bounds, r.residuals))
    ]
    state = {True: "converged", False: "NOT converged: raise --max-hvps or --tol", None: ""}[
        r.converged
    ]
    rule = {"bound": "error bounds", "residual": "residuals", "change": "relative change"}[r.rule]
    lines.append(
        f"  {r.hvps} {_products(r.curvature)} ({r.hvp_path}"
        + (f", blocks of {r.block}" if r.block > 1 else "")
        + f"), {r.seconds:.2f} s, "
        f"stop on {rule} <= tol {r.tol:g}" + (f": {state}" if state else "")
    )
    return lines


def _eig_text(checkpoint: str) -> Callable[[Any], str]:
    return lambda r: "\n".join(_eig_lines(checkpoint, r))


@click.command("eig")
@CURVATURE
@click.option("-k", "k", type=int, default=1, show_default=True, help="Number of top eigenvalues.")
@click.option(
    "--method",
    type=click.Choice(EIG_METHODS),
    default=None,
    help="lanczos (default), or PyHessian-style power iteration (the only one --backend pyhessian "
    "has).",
)
@click.option(
    "--which",
    type=click.Choice(WHICH),
    default=None,
    help="Largest algebraic (Lanczos default) or largest magnitude (what power iteration finds).",
)
@click.option(
    "--tol",
    type=float,
    default=1e-3,
    show_default=True,
    help="Lanczos: every eigenvalue's relative error bound <= tol; power: relative change between "
    "iterations.",
)
@click.option(
    "--strict", is_flag=True, help="Lanczos: stop on residual <= tol*|lambda| instead (costlier)."
)
@click.option(
    "--block",
    type=int,
    default=1,
    show_default=True,
    help="Lanczos: start vectors per product (block Lanczos; resolves clusters of up to this many "
    "eigenvalues).",
)
@click.option(
    "--max-hvps",
    type=int,
    default=None,
    help="Budget of Hessian-vector products [100 per eigenvalue, or --block if larger].",
)
@click.option("--eigenvectors", is_flag=True, help="Store the eigenvectors in --out.")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="landscape",
    show_default=True,
    help="pyhessian: PyHessian 0.1's own power iteration.",
)
@PER_LAYER
def eig_cmd(
    checkpoint,
    k,
    method,
    which,
    tol,
    strict,
    block,
    max_hvps,
    eigenvectors,
    backend,
    per_layer,
    **opts,
):
    """Top-k eigenvalues of the Hessian (or Gauss-Newton, empirical Fisher) of the loss; with
    --per-layer the top eigenvalue of each parameter block's diagonal block."""
    from landscape.curvature.eigen import top_eigenvalues
    from landscape.errors import LandscapeError

    if eigenvectors and not opts["out"]:
        raise LandscapeError("--eigenvectors are stored in the HDF5 file: give --out FILE.h5")
    method = _method(method, backend, "lanczos", "power")
    if per_layer:
        if (
            k != 1
            or method != "lanczos"
            or backend != "landscape"
            or eigenvectors
            or block != 1
            or strict
        ):
            raise LandscapeError(
                "--per-layer gives each block's top eigenvalue by Lanczos: it takes none of -k, "
                "--method power, --backend pyhessian, --eigenvectors, --block, --strict"
            )
        _per_layer_eig(checkpoint, which or "algebraic", tol, max_hvps or 100, opts)
        return

    def compute(model, split):
        return top_eigenvalues(
            model,
            split,
            k=k,
            batch_size=opts["batch_size"],
            method=method,
            tol=tol,
            max_hvps=max_hvps,
            seed=opts["seed"],
            which=which,
            eigenvectors=eigenvectors,
            backend=backend,
            criterion=opts["loss"],
            block=block,
            strict=strict,
            curvature=opts["curvature"],
        )

    _run(
        checkpoint,
        "eigenvalues",
        opts,
        compute,
        _eig_text(checkpoint),
        omit_from_json=("eigenvectors",),
    )


@click.command("trace")
@CURVATURE
@click.option(
    "--method",
    type=click.Choice(TRACE_METHODS),
    default=None,
    help="hutch++ (default) or hutchinson (the only one --backend pyhessian has).",
)
@click.option(
    "--max-hvps",
    type=int,
    default=100,
    show_default=True,
    help="Budget of Hessian-vector products.",
)
@click.option(
    "--target-rse",
    type=float,
    default=None,
    help="Stop once the relative standard error is at most this (after 10 probes).",
)
@click.option("--block", type=int, default=8, show_default=True, help="Probes per batched product.")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="landscape",
    show_default=True,
    help="pyhessian: PyHessian 0.1's own Hutchinson loop and stopping rule.",
)
@PER_LAYER
def trace_cmd(checkpoint, method, max_hvps, target_rse, block, backend, per_layer, **opts):
    """Trace of the Hessian (or Gauss-Newton, empirical Fisher) of the loss (Hutch++ or Hutchinson),
    with a standard error; with --per-layer the trace of each parameter block's diagonal block
    (--max-hvps per block)."""
    from landscape.curvature.trace import hessian_trace
    from landscape.errors import LandscapeError

    method = _method(method, backend, "hutch++", "hutchinson")
    if per_layer:
        if method != "hutch++" or backend != "landscape" or target_rse is not None:
            raise LandscapeError(
                "--per-layer sums small blocks exactly and estimates large ones by Hutch++: it "
                "takes none of --method hutchinson, --backend pyhessian, --target-rse"
            )
        _per_layer_trace(checkpoint, max_hvps, block, opts)
        return

    def compute(model, split):
        return hessian_trace(
            model,
            split,
            method=method,
            batch_size=opts["batch_size"],
            max_hvps=max_hvps,
            target_rse=target_rse,
            seed=opts["seed"],
            block=block,
            backend=backend,
            criterion=opts["loss"],
            curvature=opts["curvature"],
        )

    def describe(r) -> str:
        text = (
            f"{checkpoint}: {CURVATURE_LABELS[r.curvature]} trace {r.trace:.6g} +- {r.stderr:.3g} "
            "(relative "
            f"standard error {r.rel_stderr:.2%}) by {r.backend} {r.method}\n  {r.probes} probes"
            + (f" after a sketch of {r.sketch}" if r.sketch else "")
            + f", {r.hvps} {_products(r.curvature)}, {r.seconds:.2f} s, {r.n_examples} examples"
        )
        return text + (f"\n  note: {r.note}" if r.note else "")

    _run(checkpoint, "trace", opts, compute, describe)


@click.command("esd")
@CURVATURE
@click.option("--steps", type=int, default=90, show_default=True, help="Lanczos steps per run (m).")
@click.option("--runs", type=int, default=1, show_default=True, help="Random start vectors (n_v).")
@click.option(
    "--sigma2",
    type=float,
    default=None,
    help="Gaussian kernel variance [1e-5 * max(1, eigenvalue range)].",
)
@click.option(
    "--grid-points", type=int, default=None, help="Points of the density grid [>= 10000, auto]."
)
@click.option(
    "--block", type=int, default=8, show_default=True, help="Runs advanced together per product."
)
def esd_cmd(checkpoint, steps, runs, sigma2, grid_points, block, **opts):
    """Eigenvalue spectral density of the Hessian (or Gauss-Newton, empirical Fisher) by stochastic
    Lanczos quadrature (`landscape plot` draws it)."""
    from landscape.curvature.density import spectral_density

    def compute(model, split):
        return spectral_density(
            model,
            split,
            steps=steps,
            runs=runs,
            batch_size=opts["batch_size"],
            seed=opts["seed"],
            grid_points=grid_points,
            sigma2=sigma2,
            block=block,
            criterion=opts["loss"],
            curvature=opts["curvature"],
        )

    def describe(r) -> str:
        return (
            f"{checkpoint}: spectral density from {r.runs} run(s) x {r.steps} Lanczos steps, Ritz "
            "values in "
            f"[{r.nodes.min():.4g}, {r.nodes.max():.4g}], kernel variance {r.sigma2:.3g}\n"
            f"  {r.hvps} {_products(r.curvature)} ({r.hvp_path}), {r.seconds:.2f} s"
            + (
                ""
                if opts["out"]
                else "; give --out FILE.h5 to keep the density for `landscape plot`"
            )
        )

    _run(checkpoint, "esd", opts, compute, describe, omit_from_json=("grid", "density"))


def _per_layer_eig(checkpoint: str, which: str, tol: float, max_hvps: int, opts: dict) -> None:
    """`eig --per-layer`: each block's top eigenvalue, stored as `block_eigenvalues`."""
    from landscape.curvature.blocks import block_eigenvalues

    def compute(model, split):
        return block_eigenvalues(
            model,
            split,
            opts["batch_size"],
            tol,
            max_hvps,
            opts["seed"],
            which,
            criterion=opts["loss"],
            curvature=opts["curvature"],
        )

    def describe(r) -> str:
        width = max(map(len, r.blocks))
        lines = [
            f"{checkpoint}: top {CURVATURE_LABELS[r.curvature]} eigenvalue of each parameter "
            f"block's diagonal block on {r.n_examples} examples"
        ]
        lines += [
            f"  {name:<{width}}  {size:>9}  {v: .6g}  +- {b:.1e}"
            + ("" if ok else "  (NOT converged)")
            for name, size, v, b, ok in zip(r.blocks, r.sizes, r.eigenvalues, r.bounds, r.converged)
        ]
        lines.append(f"  {r.hvps} products with the whole matrix, {r.seconds:.2f} s")
        return "\n".join(lines)

    _run(checkpoint, "block_eigenvalues", opts, compute, describe)


def _per_layer_trace(checkpoint: str, max_hvps: int, block: int, opts: dict) -> None:
    """`trace --per-layer`: each block's trace, stored as `block_trace`."""
    from landscape.curvature.blocks import block_traces

    def compute(model, split):
        return block_traces(
            model,
            split,
            opts["batch_size"],
            max_hvps,
            opts["seed"],
            block,
            criterion=opts["loss"],
            curvature=opts["curvature"],
        )

    def describe(r) -> str:
        width = max(map(len, r.blocks))
        lines = [
            f"{checkpoint}: {CURVATURE_LABELS[r.curvature]} trace of each parameter block's "
            "diagonal block "
            f"on {r.n_examples} examples (exact up to {r.max_hvps} parameters, else Hutch++)"
        ]
        lines += [
            f"  {name:<{width}}  {size:>9}  {t: .6g}" + ("  (exact)" if ok else f"  +- {e:.3g}")
            for name, size, t, e, ok in zip(r.blocks, r.sizes, r.trace, r.stderr, r.exact)
        ]
        lines.append(
            f"  sum {float(r.trace.sum()):.6g}; {r.hvps} products with the whole matrix, "
            f"{r.seconds:.2f} s"
        )
        return "\n".join(lines)

    _run(checkpoint, "block_trace", opts, compute, describe)


@click.command("curvature")
@CURVATURE
@click.option("-k", "k", type=int, default=1, show_default=True, help="Number of top eigenvalues.")
@click.option(
    "--which",
    type=click.Choice(WHICH),
    default="algebraic",
    show_default=True,
    help="Largest algebraic or largest magnitude eigenvalues.",
)
@click.option(
    "--tol",
    type=float,
    default=1e-3,
    show_default=True,
    help="Every eigenvalue's relative error bound <= tol (as `eig`); the run goes on until it "
    "holds.",
)
@click.option(
    "--steps",
    type=int,
    default=None,
    help="Block Lanczos steps at least: the density is exact for moments of degree < 2*steps [20].",
)
@click.option(
    "--block",
    type=int,
    default=None,
    help="Start vectors advanced together (the density's runs; clusters of this many resolved) "
    "[4].",
)
@click.option(
    "--trace-rse",
    type=float,
    default=None,
    help="Draw trace probes until the relative standard error is at most this (after 10 probes) "
    "[0.01].",
)
@click.option(
    "--max-hvps",
    type=int,
    default=None,
    help="Budget of Hessian-vector products in all [steps*block + 100*k + 100].",
)
@click.option(
    "--sigma2",
    type=float,
    default=None,
    help="Gaussian kernel variance of the density [1e-5 * max(1, eigenvalue range)].",
)
def curvature_cmd(checkpoint, k, which, tol, steps, block, trace_rse, max_hvps, sigma2, **opts):
    """Top-k eigenvalues, trace and spectral density of the Hessian (or --curvature) from one block
    Lanczos run (stored as the groups eig, trace and esd write)."""
    from landscape.curvature.suite import curvature_suite

    given = {
        key: v
        for key, v in {"steps": steps, "block": block, "trace_rse": trace_rse}.items()
        if v is not None
    }

    def compute(model, split):
        return curvature_suite(
            model,
            split,
            k=k,
            tol=tol,
            max_hvps=max_hvps,
            batch_size=opts["batch_size"],
            seed=opts["seed"],
            which=which,
            sigma2=sigma2,
            criterion=opts["loss"],
            curvature=opts["curvature"],
            **given,
        )

    def describe(r) -> str:
        t, d = r.trace, r.esd
        lines = _eig_lines(checkpoint, r.eigenvalues)
        lines.append(
            f"  trace {t.trace:.6g} +- {t.stderr:.3g} (relative standard error "
            f"{t.rel_stderr:.2%}): exact "
            f"on the {t.sketch}-vector Krylov basis, {t.probes} probes of the rest"
            + (f"\n  note: {t.note}" if t.note else "")
        )
        lines.append(
            f"  spectral density: {d.runs} start vector(s) x {d.steps} block steps, Ritz values in "
            f"[{d.nodes.min():.4g}, {d.nodes.max():.4g}], kernel variance {d.sigma2:.3g}"
        )
        lines.append(
            f"  in all {r.hvps} {_products(opts['curvature'])}, {r.seconds:.2f} s"
            + (
                ""
                if opts["out"]
                else "; give --out FILE.h5 to keep the density for `landscape plot`"
            )
        )
        return "\n".join(lines)

    _run(checkpoint, None, opts, compute, describe, omit_from_json=("grid", "density"))


COMMANDS = [eig_cmd, trace_cmd, esd_cmd, curvature_cmd]
