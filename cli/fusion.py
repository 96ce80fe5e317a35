"""`landscape fuse` and `landscape align`: OT fusion / vanilla averaging of checkpoints, and "A
aligned to B"."""

from __future__ import annotations

import click

from fusion.choices import (
    ACTS_AT,
    ALIGNERS,
    COST_NORMS,
    GROUND_METRICS,
    MARGINALS,
    METHODS,
    MODES,
    SOLVERS,
)
from landscape.spec import spec_of

from .options import CHECKPOINT_OUT, DATA, DEVICE, JSON, NORMALIZE, QUIET, batch_size, compose

MODE = click.option(
    "--mode",
    type=click.Choice(MODES),
    default="acts",
    show_default=True,
    help="Ground metric: activations on training examples, or incoming weights.",
)
SOLVER = compose(
    click.option(
        "--solver",
        type=click.Choice(SOLVERS),
        default=None,
        help="Exact EMD (default) or entropic Sinkhorn (the default once --reg is given).",
    ),
    click.option(
        "--reg",
        type=float,
        default=None,
        help="Sinkhorn regularisation, relative to the largest cost of a layer [default: 0.01].",
    ),
    click.option(
        "--ground-metric",
        type=click.Choice(GROUND_METRICS),
        default="euclidean",
        show_default=True,
        help="OT cost between two units' activations or weight rows.",
    ),
    click.option(
        "--cost-norm",
        type=click.Choice(COST_NORMS),
        default="none",
        show_default=True,
        help="Rescale each layer's OT cost before solving: by its max or median, or log(1 + cost).",
    ),
    click.option(
        "--acts-at",
        type=click.Choice(ACTS_AT),
        default="pre",
        show_default=True,
        help="Read activations before the nonlinearity (a layer's output, after the norm that "
        "alone reads it) or after the elementwise nonlinearity that follows it.",
    ),
    click.option(
        "--strict",
        is_flag=True,
        help="Stop with an error where the alignment graph cannot follow an operation, instead of "
        "leaving those units in place with a warning.",
    ),
)
OT = compose(
    MODE,
    SOLVER,
    click.option(
        "--marginals",
        type=click.Choice(MARGINALS),
        default="uniform",
        show_default=True,
        help="Mass of each unit: uniform, or |mean| x std of its activations (paper S1.2).",
    ),
    click.option(
        "--samples",
        type=int,
        default=200,
        show_default=True,
        help="Training examples whose activations align the models (seeded by --seed).",
    ),
    click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Seed for drawing the examples (and of Re-Basin's random group order).",
    ),
    DATA,
    NORMALIZE,
    batch_size(100, "Examples per forward pass for activations and BatchNorm statistics."),
    click.option(
        "--eval/--no-eval",
        "do_eval",
        default=True,
        show_default=True,
        help="Report test loss and accuracy of the result and its parents.",
    ),
    DEVICE,
    CHECKPOINT_OUT,
    QUIET,
    JSON,
)
REPAIR = compose(
    click.option(
        "--repair",
        is_flag=True,
        help="REPAIR (Jordan et al. 2023): rescale every unit's pre-activation mean and std to the "
        "parents' average; for models without BatchNorm (those with it: --reset-bn-samples).",
    ),
    click.option(
        "--repair-samples",
        type=int,
        default=500,
        show_default=True,
        help="Training examples REPAIR measures the statistics on (seeded by --seed).",
    ),
)


def _prepare(session, paths, o: dict, need_x: bool, need_data: bool):
    """The models, the dataset (when needed) and the inputs fusion sees: the alignment examples, or
    (weight mode) a few examples to trace a model whose checkpoint does not record its input
    shape."""
    from fusion.checks import check_specs
    from landscape.data.split import subsample

    models = [session.load(p)[0] for p in paths]
    # a clearer message than the data's label check for models with other classes
    check_specs(models)
    shapeless = any(spec is None or spec.input_shape is None for spec in map(spec_of, models))
    data = (
        session.data(o["data_spec"], models, o["normalize"])
        if need_x or need_data or shapeless
        else None
    )
    x = (
        subsample(data.train, o["samples"] if need_x else 2, o["seed"]).x
        if data is not None
        else None
    )
    return models, data, x


def _settings(session, data, o: dict, need_x: bool, method: str = "ot") -> dict:
    from fusion.transport import resolve_solver

    solver, reg = resolve_solver(o["solver"], o["reg"])
    metric = {"ground_metric": o["ground_metric"], "cost_norm": o["cost_norm"]}
    acts_at = o["acts_at"] if need_x else None
    if method == "rebasin":
        solver, reg, metric = "assignment", None, {"ground_metric": None, "cost_norm": None}
    return {
        "models": list(session.models),
        "mode": o["mode"],
        "solver": solver,
        "reg": reg,
        **metric,
        "marginals": o["marginals"],
        "acts_at": acts_at,
        "align_samples": o["samples"] if need_x else None,
        "seed": o["seed"],
        "data": data.name if data is not None else None,
        "normalize": [list(pair) for pair in data.normalize] if data is not None else None,
        **(
            {"selection": data.selection.record()}
            if data is not None and not data.selection.whole
            else {}
        ),
    }


def _evaluate(result, models, data) -> dict:
    from landscape.training.metrics import evaluate

    if data is None:
        return {}
    return {
        "result": evaluate(result, data.test).__dict__,
        "models": [evaluate(m, data.test).__dict__ for m in models],
    }


def _acc_text(test: dict) -> str:
    if not test:
        return ""
    parents = ", ".join(f"{r['acc']:.4f}" for r in test["models"])
    return f"; test acc {test['result']['acc']:.4f} (parents {parents})"


def _save(model, out: str, record: dict, test: dict) -> None:
    """Write the checkpoint; its meta records the lineage (`parents`: the input checkpoints), every
    setting, the test metrics and the warnings printed."""
    from landscape.io.checkpoint import save_checkpoint

    from .session import with_warnings

    meta = with_warnings(
        {"parents": record["models"], **{k: v for k, v in record.items() if k != "models"}}
    )
    metrics = (
        {"test_acc": test["result"]["acc"], "test_loss": test["result"]["loss"]} if test else {}
    )
    save_checkpoint(model, out, meta={**meta, **metrics})


def _repaired(fused, models, weights, method: str, options: dict, x, data, samples: int, o: dict):
    """REPAIR the fused model: every parent aligned to it (the same method; vanilla: as they are)
    gives the statistics its units should have."""
    import fusion
    from landscape.data.split import subsample
    from landscape.training.repair import repair

    parents = (
        models
        if method == "vanilla"
        else [
            fusion.align(
                m,
                fused,
                method=method,
                x=x,
                batch_size=o["batch_size"],
                strict=o["strict"],
                seed=o["seed"],
                **options,
            )
            for m in models
        ]
    )
    examples = subsample(data.train, samples, o["seed"], "--repair-samples")
    return repair(fused, parents, weights, examples, o["batch_size"])


@click.command("fuse")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--align",
    "method",
    type=click.Choice(METHODS),
    default="ot",
    show_default=True,
    help="OT fusion or Git Re-Basin (align, then average), or vanilla parameter averaging.",
)
@click.option(
    "--weights", default=None, help="Comma-separated fusion weights, e.g. 0.7,0.1,0.2 (normalised)."
)
@click.option(
    "--anchor",
    type=int,
    default=-1,
    show_default=True,
    help="Index of the model that is the initial estimate; the result has its widths.",
)
@click.option(
    "--iterations",
    type=int,
    default=1,
    show_default=True,
    help="Feed the fused model back as the new estimate this many times in all (ResNets: 2-3).",
)
@click.option(
    "--reset-bn-samples",
    type=int,
    default=0,
    show_default=True,
    help="Recompute BatchNorm statistics on N training examples after fusion (0: keep fused ones).",
)
@REPAIR
@OT
def fuse_cmd(
    checkpoints,
    method,
    weights,
    anchor,
    iterations,
    reset_bn_samples,
    repair,
    repair_samples,
    device,
    quiet,
    as_json,
    out,
    **o,
):
    """Fuse two or more checkpoints into one (Algorithm 1 of Singh & Jaggi, Git Re-Basin, or vanilla
    averaging)."""
    import time

    import fusion
    from fusion.checks import fusion_weights
    from fusion.transport import resolve_solver
    from landscape.data.split import subsample
    from landscape.errors import warn
    from landscape.training.bn import has_batchnorm, reset_bn

    from .session import Session, parse_floats

    session = Session(device, quiet, as_json)
    if len(checkpoints) < 2:
        raise click.UsageError("fuse needs at least two checkpoints")
    if reset_bn_samples < 0:
        raise click.UsageError("--reset-bn-samples must be >= 0")
    if repair and repair_samples < 1:
        raise click.UsageError("--repair-samples must be >= 1")
    need_x = method != "vanilla" and (o["mode"] == "acts" or o["marginals"] == "importance")
    models, data, x = _prepare(
        session, checkpoints, o, need_x, o["do_eval"] or reset_bn_samples > 0 or repair
    )
    w = fusion_weights(parse_floats(weights, "--weights") if weights else None, len(models))
    settings = _settings(session, data, o, need_x, method)
    start_time = time.perf_counter()
    options = {
        "mode": o["mode"],
        "marginals": o["marginals"],
        "ground_metric": o["ground_metric"],
        "cost_norm": o["cost_norm"],
        "acts_at": o["acts_at"],
        **dict(zip(("solver", "reg"), resolve_solver(o["solver"], o["reg"]))),
    }
    fused = fusion.fuse(
        models,
        method=method,
        weights=w,
        x=x,
        anchor=anchor,
        iterations=iterations,
        batch_size=o["batch_size"],
        strict=o["strict"],
        seed=o["seed"],
        **options,
    )
    if repair:
        fused = _repaired(fused, models, w, method, options, x, data, repair_samples, o)
    reset = reset_bn_samples if reset_bn_samples and has_batchnorm(fused) else 0
    if reset_bn_samples and not reset:
        warn(
            f"--reset-bn-samples {reset_bn_samples}: the fused model has no BatchNorm layer, "
            "nothing to reset"
        )
    if reset:
        reset_bn(
            fused, subsample(data.train, reset, o["seed"], "--reset-bn-samples"), o["batch_size"]
        )
    seconds = time.perf_counter() - start_time
    test = _evaluate(fused, models, data) if o["do_eval"] else {}
    record = {
        "role": "fused",
        **settings,
        "method": method,
        "weights": w,
        "anchor": anchor % len(models),
        "iterations": iterations,
        "reset_bn_samples": reset,
        "repair_samples": repair_samples if repair else 0,
        "seconds": seconds,
    }
    _save(fused, out, record, test)
    what = f"{method}, {settings['mode']}, {settings['solver']}" if method != "vanilla" else method
    what += ", REPAIR" if repair else ""
    session.emit(
        {"out": out, **record, "test": test},
        f"saved {out}: {what} fusion of {len(models)} models in {seconds:.2f} s{_acc_text(test)}",
    )


@click.command("align")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("anchor", type=click.Path(dir_okay=False))
@click.option(
    "--align",
    "method",
    type=click.Choice(ALIGNERS),
    default="ot",
    show_default=True,
    help="Optimal transport (Singh & Jaggi) or Git Re-Basin permutations (Ainsworth et al.; equal "
    "widths).",
)
@OT
def align_cmd(model, anchor, method, device, quiet, as_json, out, **o):
    """Align MODEL to ANCHOR ("A aligned to B"): MODEL's units transported onto ANCHOR's (with exact
    OT and equal widths, or Re-Basin, a permutation: the same function)."""
    import time

    import fusion
    from fusion.checks import check_function
    from fusion.transport import resolve_solver

    from .session import Session

    session = Session(device, quiet, as_json)
    need_x = o["mode"] == "acts" or o["marginals"] == "importance"
    models, data, x = _prepare(session, (model, anchor), o, need_x, o["do_eval"])
    settings = _settings(session, data, o, need_x, method)
    start_time = time.perf_counter()
    solver, reg = resolve_solver(o["solver"], o["reg"])
    aligned = fusion.align(
        models[0],
        models[1],
        x=x,
        batch_size=o["batch_size"],
        strict=o["strict"],
        method=method,
        mode=o["mode"],
        solver=solver,
        reg=reg,
        marginals=o["marginals"],
        seed=o["seed"],
        ground_metric=o["ground_metric"],
        cost_norm=o["cost_norm"],
        acts_at=o["acts_at"],
    )
    seconds = time.perf_counter() - start_time
    inputs, labels, where = (
        (data.test.x, data.test.y, "test examples")
        if data is not None
        else (x, None, "alignment examples")
    )
    function = check_function(
        models[0],
        aligned,
        inputs,
        labels,
        batch_size=o["batch_size"],
        name=f"{model} aligned to {anchor}",
        where=where,
    )
    test = _evaluate(aligned, models, data) if o["do_eval"] else {}
    record = {
        "role": "aligned",
        **settings,
        "method": "align",
        "align": method,
        "aligned_to": str(anchor),
        "seconds": seconds,
        **function,
    }
    _save(aligned, out, record, test)
    session.emit(
        {"out": out, **record, "test": test},
        f"saved {out}: {model} aligned to {anchor} ({method}, {settings['mode']}, "
        f"{settings['solver']}) in {seconds:.2f} s{_acc_text(test)}",
    )


COMMANDS = [fuse_cmd, align_cmd]
