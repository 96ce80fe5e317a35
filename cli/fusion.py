"""`landscape fuse` and `landscape align`: OT fusion / vanilla averaging of checkpoints, and "A aligned to B"."""
from __future__ import annotations

import click

from fusion.choices import MARGINALS, METHODS, MODES, SOLVERS

from .options import CHECKPOINT_OUT, DATA, DEVICE, JSON, NORMALIZE, QUIET, batch_size, compose

MODE = click.option("--mode", type=click.Choice(MODES), default="acts", show_default=True,
                    help="Ground metric: activations on training examples, or incoming weights.")
SOLVER = compose(
    click.option("--solver", type=click.Choice(SOLVERS), default=None,
                 help="Exact EMD (default) or entropic Sinkhorn (the default once --reg is given)."),
    click.option("--reg", type=float, default=None,
                 help="Sinkhorn regularisation, relative to the largest cost of a layer [default: 0.01]."),
    click.option("--strict", is_flag=True,
                 help="Stop with an error where the alignment graph cannot follow an operation, instead of "
                      "leaving those units in place with a warning."))
OT = compose(
    MODE, SOLVER,
    click.option("--marginals", type=click.Choice(MARGINALS), default="uniform", show_default=True,
                 help="Mass of each unit: uniform, or |mean| x std of its activations (paper S1.2)."),
    click.option("--samples", type=int, default=200, show_default=True,
                 help="Training examples whose activations align the models (seeded by --seed)."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed for drawing the examples."),
    DATA, NORMALIZE, batch_size(100, "Examples per forward pass for activations and BatchNorm statistics."),
    click.option("--eval/--no-eval", "do_eval", default=True, show_default=True,
                 help="Report test loss and accuracy of the result and its parents."),
    DEVICE, CHECKPOINT_OUT, QUIET, JSON)


def resolve_solver(solver: str | None, reg: float | None) -> tuple[str, float]:
    """The OT solver and regularisation from the options: EMD unless Sinkhorn is named or --reg given."""
    return solver or ("sinkhorn" if reg is not None else "emd"), 0.01 if reg is None else reg


def _prepare(session, paths, o: dict, need_x: bool, need_data: bool):
    """The models, the dataset (when needed) and the inputs fusion sees: the alignment examples, or (weight
    mode) a few examples to trace a model whose checkpoint does not record its input shape."""
    from fusion.checks import check_specs
    from landscape.data.split import subsample

    models = [session.load(p)[0] for p in paths]
    check_specs(models)   # a clearer message than the data's label check for models with other classes
    shapeless = any("input_shape" not in getattr(m, "landscape_spec", {}).get("arch_kwargs", {}) for m in models)
    data = session.data(o["data_spec"], models, o["normalize"]) if need_x or need_data or shapeless else None
    x = subsample(data.train, o["samples"] if need_x else 2, o["seed"]).x if data is not None else None
    return models, data, x


def _settings(session, data, o: dict, need_x: bool) -> dict:
    solver, reg = resolve_solver(o["solver"], o["reg"])
    return {"models": list(session.models), "mode": o["mode"], "solver": solver, "reg": reg,
            "marginals": o["marginals"], "align_samples": o["samples"] if need_x else None, "seed": o["seed"],
            "data": data.name if data is not None else None,
            "normalize": [list(pair) for pair in data.normalize] if data is not None else None}


def _evaluate(result, models, data) -> dict:
    from landscape.training.metrics import evaluate

    if data is None:
        return {}
    return {"result": evaluate(result, data.test).__dict__,
            "models": [evaluate(m, data.test).__dict__ for m in models]}


def _acc_text(test: dict) -> str:
    if not test:
        return ""
    parents = ", ".join(f"{r['acc']:.4f}" for r in test["models"])
    return f"; test acc {test['result']['acc']:.4f} (parents {parents})"


def check_function(original, aligned, data, x, batch_size: int, name: str) -> dict:
    """Whether `aligned` still computes `original`'s function: their outputs on the test split (the alignment
    examples without data, random inputs without either) agree to float rounding. Only a permutation keeps it
    exactly (exact EMD, uniform marginals, equal widths); when it is lost a `warning:` line says so, with both
    test accuracies where there are labels. Returns what results record: `function_kept`, `agreement` (the
    fraction of examples with the same predicted class)."""
    import torch

    from landscape.errors import warn
    from landscape.training.metrics import compare_outputs, evaluate

    if data is not None:
        inputs, where = data.test.x, "test examples"
    elif x is not None:
        inputs, where = x, "alignment examples"
    else:
        shape = original.landscape_spec["arch_kwargs"]["input_shape"]
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(256, *shape, generator=generator).to(next(original.parameters()).device)
        where = "random inputs"
    kept, agreement = compare_outputs(original, aligned, inputs, batch_size)
    if not kept:
        accuracy = ""
        if data is not None:
            accuracy = (f": test accuracy {evaluate(aligned, data.test).acc:.4f} against "
                        f"{evaluate(original, data.test).acc:.4f}")
        warn(f"{name} does not compute the original model's function{accuracy}, the same prediction on "
             f"{agreement:.0%} of {len(inputs)} {where} (only exact EMD with uniform marginals and equal widths "
             "keeps it)")
    return {"function_kept": kept, "agreement": agreement}


def _save(model, out: str, record: dict, test: dict) -> None:
    """Write the checkpoint; its meta records the lineage (`parents`: the input checkpoints), every setting,
    the test metrics and the warnings printed."""
    from landscape.io.checkpoint import save_checkpoint

    from .session import with_warnings

    meta = with_warnings({"parents": record["models"], **{k: v for k, v in record.items() if k != "models"}})
    metrics = {"test_acc": test["result"]["acc"], "test_loss": test["result"]["loss"]} if test else {}
    save_checkpoint(model, out, meta={**meta, **metrics})


@click.command("fuse")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--align", "method", type=click.Choice(METHODS), default="ot", show_default=True,
              help="OT fusion (align, then average) or vanilla parameter averaging.")
@click.option("--weights", default=None, help="Comma-separated fusion weights, e.g. 0.7,0.1,0.2 (normalised).")
@click.option("--anchor", type=int, default=-1, show_default=True,
              help="Index of the model that is the initial estimate; the result has its widths.")
@click.option("--iterations", type=int, default=1, show_default=True,
              help="Feed the fused model back as the new estimate this many times in all (ResNets: 2-3).")
@click.option("--reset-bn-samples", type=int, default=0, show_default=True,
              help="Recompute BatchNorm statistics on N training examples after fusion (0: keep fused ones).")
@OT
def fuse_cmd(checkpoints, method, weights, anchor, iterations, reset_bn_samples, device, quiet, as_json, out, **o):
    """Fuse two or more checkpoints into one (Algorithm 1 of Singh & Jaggi, or vanilla averaging)."""
    import time

    import fusion
    from fusion.checks import fusion_weights
    from landscape.data.split import subsample
    from landscape.errors import warn
    from landscape.training.bn import has_batchnorm, reset_bn

    from .session import Session, parse_floats

    session = Session(device, quiet, as_json)
    if len(checkpoints) < 2:
        raise click.UsageError("fuse needs at least two checkpoints")
    if reset_bn_samples < 0:
        raise click.UsageError("--reset-bn-samples must be >= 0")
    need_x = method == "ot" and (o["mode"] == "acts" or o["marginals"] == "importance")
    models, data, x = _prepare(session, checkpoints, o, need_x, o["do_eval"] or reset_bn_samples > 0)
    w = fusion_weights(parse_floats(weights, "--weights") if weights else None, len(models))
    settings = _settings(session, data, o, need_x)
    start_time = time.perf_counter()
    fused = fusion.fuse(models, method=method, weights=w, x=x, anchor=anchor, iterations=iterations,
                        batch_size=o["batch_size"], strict=o["strict"],
                        **{k: settings[k] for k in ("mode", "solver", "reg", "marginals")})
    reset = reset_bn_samples if reset_bn_samples and has_batchnorm(fused) else 0
    if reset_bn_samples and not reset:
        warn(f"--reset-bn-samples {reset_bn_samples}: the fused model has no BatchNorm layer, nothing to reset")
    if reset:
        reset_bn(fused, subsample(data.train, reset, o["seed"], "--reset-bn-samples"), o["batch_size"])
    seconds = time.perf_counter() - start_time
    test = _evaluate(fused, models, data) if o["do_eval"] else {}
    record = {"role": "fused", **settings, "method": method, "weights": w, "anchor": anchor % len(models),
              "iterations": iterations, "reset_bn_samples": reset, "seconds": seconds}
    _save(fused, out, record, test)
    what = f"{method}, {settings['mode']}, {settings['solver']}" if method == "ot" else method
    session.emit({"out": out, **record, "test": test},
                 f"saved {out}: {what} fusion of {len(models)} models in {seconds:.2f} s{_acc_text(test)}")


@click.command("align")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("anchor", type=click.Path(dir_okay=False))
@OT
def align_cmd(model, anchor, device, quiet, as_json, out, **o):
    """Align MODEL to ANCHOR ("A aligned to B"): MODEL's units transported onto ANCHOR's (with exact OT and
    equal widths a permutation: the same function)."""
    import time

    import fusion

    from .session import Session

    session = Session(device, quiet, as_json)
    need_x = o["mode"] == "acts" or o["marginals"] == "importance"
    models, data, x = _prepare(session, (model, anchor), o, need_x, o["do_eval"])
    settings = _settings(session, data, o, need_x)
    start_time = time.perf_counter()
    aligned = fusion.align(models[0], models[1], x=x, batch_size=o["batch_size"], strict=o["strict"],
                           **{k: settings[k] for k in ("mode", "solver", "reg", "marginals")})
    seconds = time.perf_counter() - start_time
    function = check_function(models[0], aligned, data, x, o["batch_size"], f"{model} aligned to {anchor}")
    test = _evaluate(aligned, models, data) if o["do_eval"] else {}
    record = {"role": "aligned", **settings, "method": "align", "aligned_to": str(anchor), "seconds": seconds,
              **function}
    _save(aligned, out, record, test)
    session.emit({"out": out, **record, "test": test},
                 f"saved {out}: {model} aligned to {anchor} ({settings['mode']}, {settings['solver']}) in "
                 f"{seconds:.2f} s{_acc_text(test)}")


COMMANDS = [fuse_cmd, align_cmd]
