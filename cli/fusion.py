"""`landscape fuse` and `landscape align`: OT fusion / vanilla averaging of checkpoints, and "A aligned to B"."""
from __future__ import annotations

import time
from collections.abc import Callable

import click

import fusion
from fusion.checks import check_specs, fusion_weights
from landscape.bn import has_batchnorm, reset_bn
from landscape.checkpoint import file_hash, save_checkpoint
from landscape.data import subsample
from landscape.evaluate import evaluate

from .common import data_for, emit, load_model, parse_floats, start

SOLVER_OPTIONS = [
    click.option("--solver", type=click.Choice(fusion.SOLVERS), default=None,
                 help="Exact EMD (default) or entropic Sinkhorn (the default once --reg is given)."),
    click.option("--reg", type=float, default=None, help="Sinkhorn regularisation, relative to the largest "
                                                         "cost of a layer [default: 0.01]."),
]


def _ot_options(f: Callable) -> Callable:
    for opt in reversed([
        click.option("--mode", type=click.Choice(fusion.MODES), default="acts", show_default=True,
                     help="Ground metric: activations on --samples training examples, or incoming weights."),
        *SOLVER_OPTIONS,
        click.option("--marginals", type=click.Choice(fusion.MARGINALS), default="uniform", show_default=True,
                     help="Mass of each unit: uniform, or |mean| x std of its activations (paper S1.2)."),
        click.option("--samples", type=int, default=200, show_default=True,
                     help="Training examples whose activations align the models (seeded by --seed)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for drawing the examples."),
        click.option("--data", "data_spec", default="digits", show_default=True,
                     help="digits, a .npz file, or mnist:DIR / cifar10:DIR / cifar100:DIR"),
        click.option("--batch-size", type=int, default=100, show_default=True,
                     help="Examples per forward pass for activations and BatchNorm statistics."),
        click.option("--eval/--no-eval", "do_eval", default=True, show_default=True,
                     help="Report test loss and accuracy of the result and its parents."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto."),
        click.option("--out", type=click.Path(dir_okay=False), required=True, help="Checkpoint to write (.pt)."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout, nothing else."),
    ]):
        f = opt(f)
    return f


def _inputs(models, o: dict, need_x: bool, need_data: bool, dev):
    """The dataset (when needed) and the alignment examples (when needed)."""
    check_specs(models)   # a clearer message than the data's label check for models with other classes
    data = None
    if need_x or need_data:
        data = data_for(models[0], o["data_spec"], dev)
        for m in models[1:]:
            data_for(m, o["data_spec"], dev)
    x = subsample(data.train, o["samples"], o["seed"]).x if need_x else None
    return data, x


def resolve_solver(solver: str | None, reg: float | None) -> tuple[str, float]:
    """The OT solver and regularisation from the options: EMD unless Sinkhorn is named or --reg given."""
    return solver or ("sinkhorn" if reg is not None else "emd"), 0.01 if reg is None else reg


def _settings(o: dict, need_x: bool) -> dict:
    solver, reg = resolve_solver(o["solver"], o["reg"])
    return {"mode": o["mode"], "solver": solver, "reg": reg, "marginals": o["marginals"],
            "samples": o["samples"] if need_x else None, "seed": o["seed"], "data": o["data_spec"] if need_x else None}


def _parents(paths) -> list[dict]:
    return [{"path": str(p), "sha256": file_hash(p)} for p in paths]


def _evaluate(result, models, paths, data) -> dict:
    if data is None:
        return {}
    return {"result": evaluate(result, data.test).__dict__,
            "parents": [{"path": str(p), **evaluate(m, data.test).__dict__} for p, m in zip(paths, models)]}


def _acc_text(test: dict) -> str:
    if not test:
        return ""
    parents = ", ".join(f"{r['acc']:.4f}" for r in test["parents"])
    return f"; test acc {test['result']['acc']:.4f} (parents {parents})"


@click.command("fuse")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--align", "method", type=click.Choice(fusion.METHODS), default="ot", show_default=True,
              help="OT fusion (align, then average) or vanilla parameter averaging.")
@click.option("--weights", default=None, help="Comma-separated fusion weights, e.g. 0.7,0.1,0.2 (normalised).")
@click.option("--anchor", type=int, default=-1, show_default=True,
              help="Index of the model that is the initial estimate; the result has its widths.")
@click.option("--iterations", type=int, default=1, show_default=True,
              help="Feed the fused model back as the new estimate this many times in all (ResNets: 2-3).")
@click.option("--reset-bn-samples", type=int, default=0, show_default=True,
              help="Recompute BatchNorm statistics on N training examples after fusion (0: keep fused ones).")
@_ot_options
def fuse_cmd(checkpoints, method, weights, anchor, iterations, reset_bn_samples, device, quiet, as_json, out, **o):
    """Fuse two or more checkpoints into one (Algorithm 1 of Singh & Jaggi, or vanilla averaging)."""
    dev = start(device, quiet, as_json)
    if len(checkpoints) < 2:
        raise click.UsageError("fuse needs at least two checkpoints")
    if reset_bn_samples < 0:
        raise click.UsageError("--reset-bn-samples must be >= 0")
    models = [load_model(p, dev)[0] for p in checkpoints]
    w = fusion_weights(parse_floats(weights, "--weights") if weights else None, len(models))
    need_x = method == "ot" and (o["mode"] == "acts" or o["marginals"] == "importance")
    data, x = _inputs(models, o, need_x, o["do_eval"] or reset_bn_samples > 0, dev)
    settings = _settings(o, need_x)
    start_time = time.perf_counter()
    fused = fusion.fuse(models, method=method, weights=w, x=x, anchor=anchor, iterations=iterations,
                        batch_size=o["batch_size"], **{k: settings[k] for k in ("mode", "solver", "reg", "marginals")})
    reset = reset_bn_samples if reset_bn_samples and has_batchnorm(fused) else 0
    if reset:
        reset_bn(fused, subsample(data.train, reset, o["seed"]), o["batch_size"])
    seconds = time.perf_counter() - start_time
    test = _evaluate(fused, models, checkpoints, data) if o["do_eval"] else {}
    meta = {"role": "fused", "parents": _parents(checkpoints), "method": method, **settings, "weights": w,
            "anchor": anchor % len(models), "iterations": iterations, "reset_bn_samples": reset, "seconds": seconds,
            **({"test_acc": test["result"]["acc"], "test_loss": test["result"]["loss"]} if test else {})}
    save_checkpoint(fused, out, meta=meta)
    what = f"{method}, {settings['mode']}, {settings['solver']}" if method == "ot" else method
    emit({"out": out, **meta, "test": test}, as_json,
         f"saved {out}: {what} fusion of {len(models)} models in {seconds:.2f} s{_acc_text(test)}")


@click.command("align")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("anchor", type=click.Path(dir_okay=False))
@_ot_options
def align_cmd(model, anchor, device, quiet, as_json, out, **o):
    """Align MODEL to ANCHOR ("A aligned to B"): MODEL's units transported onto ANCHOR's (with exact OT and
    equal widths a permutation: the same function)."""
    dev = start(device, quiet, as_json)
    models = [load_model(p, dev)[0] for p in (model, anchor)]
    need_x = o["mode"] == "acts" or o["marginals"] == "importance"
    data, x = _inputs(models, o, need_x, o["do_eval"], dev)
    settings = _settings(o, need_x)
    start_time = time.perf_counter()
    aligned = fusion.align(models[0], models[1], x=x, batch_size=o["batch_size"],
                           **{k: settings[k] for k in ("mode", "solver", "reg", "marginals")})
    seconds = time.perf_counter() - start_time
    test = _evaluate(aligned, models, (model, anchor), data) if o["do_eval"] else {}
    meta = {"role": "aligned", "parents": _parents((model, anchor)), "method": "align", "aligned_to": str(anchor),
            **settings, "seconds": seconds,
            **({"test_acc": test["result"]["acc"], "test_loss": test["result"]["loss"]} if test else {})}
    save_checkpoint(aligned, out, meta=meta)
    emit({"out": out, **meta, "test": test}, as_json,
         f"saved {out}: {model} aligned to {anchor} ({settings['mode']}, {settings['solver']}) in {seconds:.2f} s"
         f"{_acc_text(test)}")


COMMANDS = [fuse_cmd, align_cmd]
