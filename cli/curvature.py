"""`landscape eig`, `trace` and `esd`: curvature of a checkpoint's loss (eval mode, mean loss over the examples)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from landscape.choices import BACKENDS, EIG_METHODS, TRACE_METHODS, WHICH

from .options import NAME, compose, measure

CURVATURE = compose(click.argument("checkpoint", type=click.Path(dir_okay=False)), measure(), NAME)


def _run(checkpoint: str, what: str, opts: dict, compute: Callable, describe: Callable[[Any], str],
         omit_from_json: tuple[str, ...] = ()) -> None:
    """Load the model and data, compute, print, and store `/models/<name>/<what>` when --out is given."""
    from landscape.curvature.stationarity import FAR_FROM_STATIONARY, point_state
    from landscape.data.split import subsample
    from landscape.errors import warn
    from landscape.io.store import result_arrays, write_result

    from .session import Session, stem, stored

    session = Session(opts["device"], opts["quiet"], opts["as_json"])
    model = session.load(checkpoint)[0]
    data = session.data(opts["data_spec"], [model], opts["normalize"])
    split = subsample(data.split(opts["split"]), opts["samples"], opts["seed"], of=f"of the {opts['split']} split")
    result = compute(model, split)
    point = point_state(model, split, opts["batch_size"], opts["loss"])
    if point.far:
        warn(f"{checkpoint} is far from a stationary point of the measured loss: gradient norm "
             f"{point.grad_norm:.3g}, {point.rel_grad_norm:.3g} of the weights' norm (above "
             f"{FAR_FROM_STATIONARY:g}); its curvature does not describe a minimum")
    arrays, attrs = result_arrays(result)
    attrs = {**attrs, **point.attrs()}
    settings = session.settings(data, split=opts["split"], samples=opts["samples"], batch_size=opts["batch_size"],
                                seed=opts["seed"], criterion=opts["loss"])
    if opts["out"]:
        write_result(opts["out"], f"/models/{opts['name'] or stem(checkpoint)}/{what}", arrays,
                     {**attrs, **stored(settings)})
    shown = {k: v for k, v in {**arrays, **attrs}.items() if k not in omit_from_json}
    session.emit({**settings, **shown}, f"{describe(result)}\n  {point.text()}")


def _method(method: str | None, backend: str, default: str, pyhessian: str) -> str:
    """The method to run: the default of the backend, and only `pyhessian`'s own one with --backend pyhessian."""
    from landscape.errors import LandscapeError

    if backend == "pyhessian":
        if method not in (None, pyhessian):
            raise LandscapeError(f"--backend pyhessian has only --method {pyhessian}")
        return pyhessian
    return method or default


def _eig_text(checkpoint: str) -> Callable[[Any], str]:
    def describe(r) -> str:
        kind = "largest algebraic" if r.which == "algebraic" else "largest magnitude"
        lines = [(f"{checkpoint}: top-{r.k} Hessian eigenvalues ({r.backend} {r.method}, {kind}) "
                  f"on {r.n_examples} examples, {r.n_params} parameters")]
        lines += [f"  {i + 1:>3}  {v: .6g}  +- {bound:.1e}  (residual {res:.1e})" for i, (v, bound, res) in
                  enumerate(zip(r.eigenvalues, r.bounds, r.residuals))]
        state = {True: "converged", False: "NOT converged: raise --max-hvps or --tol", None: ""}[r.converged]
        rule = {"bound": "error bounds", "residual": "residuals", "change": "relative change"}[r.rule]
        lines.append(f"  {r.hvps} Hessian-vector products ({r.hvp_path}"
                     + (f", blocks of {r.block}" if r.block > 1 else "") + f"), {r.seconds:.2f} s, "
                     f"stop on {rule} <= tol {r.tol:g}" + (f": {state}" if state else ""))
        return "\n".join(lines)
    return describe


@click.command("eig")
@CURVATURE
@click.option("-k", "k", type=int, default=1, show_default=True, help="Number of top eigenvalues.")
@click.option("--method", type=click.Choice(EIG_METHODS), default=None,
              help="lanczos (default), or PyHessian-style power iteration (the only one --backend pyhessian has).")
@click.option("--which", type=click.Choice(WHICH), default=None,
              help="Largest algebraic (Lanczos default) or largest magnitude (what power iteration finds).")
@click.option("--tol", type=float, default=1e-3, show_default=True,
              help="Lanczos: every eigenvalue's relative error bound <= tol; power: relative change between "
                   "iterations.")
@click.option("--strict", is_flag=True, help="Lanczos: stop on residual <= tol*|lambda| instead (costlier).")
@click.option("--block", type=int, default=1, show_default=True,
              help="Lanczos: start vectors per product (block Lanczos; resolves clusters of up to this many "
                   "eigenvalues).")
@click.option("--max-hvps", type=int, default=None, help="Budget of Hessian-vector products [100 per eigenvalue].")
@click.option("--eigenvectors", is_flag=True, help="Store the eigenvectors in --out.")
@click.option("--backend", type=click.Choice(BACKENDS), default="landscape", show_default=True,
              help="pyhessian: PyHessian 0.1's own power iteration.")
def eig_cmd(checkpoint, k, method, which, tol, strict, block, max_hvps, eigenvectors, backend, **opts):
    """Top-k eigenvalues of the Hessian of the loss."""
    from landscape.curvature.eigen import top_eigenvalues
    from landscape.errors import LandscapeError

    if eigenvectors and not opts["out"]:
        raise LandscapeError("--eigenvectors are stored in the HDF5 file: give --out FILE.h5")
    method = _method(method, backend, "lanczos", "power")

    def compute(model, split):
        return top_eigenvalues(model, split, k=k, batch_size=opts["batch_size"], method=method, tol=tol,
                               max_hvps=max_hvps, seed=opts["seed"], which=which, eigenvectors=eigenvectors,
                               backend=backend, criterion=opts["loss"], block=block, strict=strict)
    _run(checkpoint, "eigenvalues", opts, compute, _eig_text(checkpoint), omit_from_json=("eigenvectors",))


@click.command("trace")
@CURVATURE
@click.option("--method", type=click.Choice(TRACE_METHODS), default=None,
              help="hutch++ (default) or hutchinson (the only one --backend pyhessian has).")
@click.option("--max-hvps", type=int, default=100, show_default=True, help="Budget of Hessian-vector products.")
@click.option("--target-rse", type=float, default=None,
              help="Stop once the relative standard error is at most this (after 10 probes).")
@click.option("--block", type=int, default=8, show_default=True, help="Probes per batched product.")
@click.option("--backend", type=click.Choice(BACKENDS), default="landscape", show_default=True,
              help="pyhessian: PyHessian 0.1's own Hutchinson loop and stopping rule.")
def trace_cmd(checkpoint, method, max_hvps, target_rse, block, backend, **opts):
    """Trace of the Hessian of the loss (Hutch++ or Hutchinson), with a standard error."""
    from landscape.curvature.trace import hessian_trace

    method = _method(method, backend, "hutch++", "hutchinson")

    def compute(model, split):
        return hessian_trace(model, split, method=method, batch_size=opts["batch_size"], max_hvps=max_hvps,
                             target_rse=target_rse, seed=opts["seed"], block=block, backend=backend,
                             criterion=opts["loss"])

    def describe(r) -> str:
        text = (f"{checkpoint}: Hessian trace {r.trace:.6g} +- {r.stderr:.3g} (relative standard error "
                f"{r.rel_stderr:.2%}) by {r.backend} {r.method}\n  {r.probes} probes"
                + (f" after a sketch of {r.sketch}" if r.sketch else "")
                + f", {r.hvps} Hessian-vector products, {r.seconds:.2f} s, {r.n_examples} examples")
        return text + (f"\n  note: {r.note}" if r.note else "")
    _run(checkpoint, "trace", opts, compute, describe)


@click.command("esd")
@CURVATURE
@click.option("--steps", type=int, default=90, show_default=True, help="Lanczos steps per run (m).")
@click.option("--runs", type=int, default=1, show_default=True, help="Random start vectors (n_v).")
@click.option("--sigma2", type=float, default=None,
              help="Gaussian kernel variance [1e-5 * max(1, eigenvalue range)].")
@click.option("--grid-points", type=int, default=None, help="Points of the density grid [>= 10000, auto].")
@click.option("--block", type=int, default=8, show_default=True, help="Runs advanced together per product.")
def esd_cmd(checkpoint, steps, runs, sigma2, grid_points, block, **opts):
    """Eigenvalue spectral density of the Hessian by stochastic Lanczos quadrature (`landscape plot` draws it)."""
    from landscape.curvature.density import spectral_density

    def compute(model, split):
        return spectral_density(model, split, steps=steps, runs=runs, batch_size=opts["batch_size"],
                                seed=opts["seed"], grid_points=grid_points, sigma2=sigma2, block=block,
                                criterion=opts["loss"])

    def describe(r) -> str:
        return (f"{checkpoint}: spectral density from {r.runs} run(s) x {r.steps} Lanczos steps, Ritz values in "
                f"[{r.nodes.min():.4g}, {r.nodes.max():.4g}], kernel variance {r.sigma2:.3g}\n"
                f"  {r.hvps} Hessian-vector products ({r.hvp_path}), {r.seconds:.2f} s"
                + ("" if opts["out"] else "; give --out FILE.h5 to keep the density for `landscape plot`"))
    _run(checkpoint, "esd", opts, compute, describe, omit_from_json=("grid", "density"))


COMMANDS = [eig_cmd, trace_cmd, esd_cmd]
