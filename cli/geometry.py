"""`landscape barrier`, `contour` and `plot`: linear mode connectivity, loss surfaces and their
figures."""

from __future__ import annotations

import click

from fusion.choices import MODES
from landscape.choices import CURVE_KINDS, DIRECTION_NORMS, DIRECTIONS, SURFACE_KINDS

from .fusion import REPAIR, SOLVER
from .options import (
    BATCHING_OPTION,
    CHECKPOINT_OUT,
    DATA,
    DEVICE,
    JSON,
    LOSS,
    NAME,
    NORMALIZE,
    PARALLEL_OPTION,
    QUIET,
    SAMPLES,
    SEED,
    batch_size,
    compose,
    figures,
    measure,
    writable,
    writable_folder,
)

ALIGN = ("none", "ot", "rebasin", "both")
POINTS = compose(PARALLEL_OPTION, BATCHING_OPTION)


def _barrier_line(which: str, curve) -> str:
    """One line per alignment: loss barriers (clamped, signed, where) and error barriers in
    percentage points."""
    parts = []
    for what, scale, unit in (("", 1.0, ""), ("error_", 100.0, " points")):
        splits = []
        for split in ("train", "test"):
            value, signed = (
                getattr(curve, f"{what}barrier_{split}"),
                getattr(curve, f"signed_{what}barrier_{split}"),
            )
            at = getattr(curve, f"argmax_{what}{split}")
            splits.append(
                f"{split} {scale * value:.4g}{unit} (signed {scale * signed:.4g} at a={at:.3g})"
            )
        parts.append(f"{what.rstrip('_') or 'loss'} barrier " + ", ".join(splits))
    return f"  {which:>7}: " + "; ".join(parts)


@click.command("barrier")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option(
    "--align",
    type=click.Choice(ALIGN),
    default="none",
    show_default=True,
    help="Interpolate A as it is, aligned to B with OT or Git Re-Basin, or both none and ot in one "
    "go.",
)
@click.option(
    "--points",
    type=int,
    default=21,
    show_default=True,
    help="Values of a in [0, 1], both ends included.",
)
@click.option(
    "--reset-bn",
    is_flag=True,
    help="Recompute BatchNorm statistics on the train split at every point.",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="acts",
    show_default=True,
    help="OT ground metric: activations or incoming weights.",
)
@click.option(
    "--align-samples",
    type=int,
    default=200,
    show_default=True,
    help="Training examples whose activations align A to B (seeded by --seed).",
)
@SOLVER
@REPAIR
@measure(split=False)
@POINTS
def barrier_cmd(
    a,
    b,
    align,
    points,
    reset_bn,
    mode,
    align_samples,
    solver,
    reg,
    ground_metric,
    cost_norm,
    acts_at,
    strict,
    repair,
    repair_samples,
    parallel,
    batching,
    **o,
):
    """Loss and accuracy on the straight line from A (a=0) to B (a=1), and the LMC barriers of the
    loss and of the error (train and test; clamped at 0 and signed, with where they lie)."""
    import fusion
    from fusion.checks import check_function
    from fusion.transport import resolve_solver
    from landscape.data.split import subsample
    from landscape.errors import LandscapeError
    from landscape.geometry.barrier import interpolation_curve
    from landscape.io.store import result_arrays, write_results

    from .session import Session, stem, stored

    session = Session(o["device"], o["quiet"], o["as_json"])
    model_a, model_b = session.load(a)[0], session.load(b)[0]
    data = session.data(o["data_spec"], [model_a, model_b], o["normalize"])
    splits = {
        s: subsample(data.split(s), o["samples"], o["seed"], of=f"of the {s} split")
        for s in ("train", "test")
    }
    aligns = ("none", "ot") if align == "both" else (align,)
    if acts_at != "pre" and (align == "none" or mode != "acts"):
        raise LandscapeError(
            f"--acts-at {acts_at!r} has no effect: no activations are read (they are with --align "
            "ot, rebasin or both and --mode acts)"
        )
    solver, reg = resolve_solver(solver, reg)
    if repair and repair_samples < 1:
        raise LandscapeError(f"--repair-samples must be at least 1, got {repair_samples}")
    repair_on = (
        subsample(data.train, repair_samples, o["seed"], "--repair-samples") if repair else None
    )
    settings = session.settings(
        data,
        samples=o["samples"],
        seed=o["seed"],
        batch_size=o["batch_size"],
        points=points,
        criterion=o["loss"],
        reset_bn=reset_bn,
        repair_samples=repair_samples if repair else 0,
    )
    results, groups, lines = {}, {}, []
    for which in aligns:
        source, extra = model_a, {}
        if which != "none":
            # weight mode: two examples to trace the models
            count = align_samples if mode == "acts" else 2
            x = subsample(data.train, count, o["seed"], "--align-samples").x
            ot = {
                "solver": solver,
                "reg": reg,
                "ground_metric": ground_metric,
                "cost_norm": cost_norm,
            }
            options = ot if which == "ot" else {"seed": o["seed"]}
            source = fusion.align(
                model_a,
                model_b,
                method=which,
                mode=mode,
                x=x,
                strict=strict,
                acts_at=acts_at,
                **options,
            )
            extra = {
                "mode": mode,
                "align_samples": align_samples if mode == "acts" else None,
                "solver": solver if which == "ot" else "assignment",
                "reg": reg if which == "ot" and solver == "sinkhorn" else None,
                "ground_metric": ground_metric if which == "ot" else None,
                "cost_norm": cost_norm if which == "ot" else None,
                "acts_at": acts_at if mode == "acts" else None,
                **check_function(
                    model_a,
                    source,
                    data.test.x,
                    data.test.y,
                    batch_size=o["batch_size"],
                    name=f"{a} aligned to {b}",
                    where="test examples",
                ),
            }
        curve = interpolation_curve(
            source,
            model_b,
            splits,
            points,
            o["batch_size"],
            reset_bn=reset_bn,
            batching=batching,
            parallel=parallel,
            criterion=o["loss"],
            repair_on=repair_on,
        )
        arrays, attrs = result_arrays(curve)
        groups[f"/barriers/{stem(a)}~{stem(b)}/{which}"] = (
            arrays,
            {**attrs, **stored(settings), **extra},
        )
        results[which] = {**arrays, **attrs, **extra}
        lines.append(_barrier_line(which, curve))
    if o["out"]:
        write_results(o["out"], groups)
    text = (
        f"{a} -> {b}: {points} points"
        + (", BatchNorm reset at each point" if reset_bn else "")
        + (f", REPAIR on {len(repair_on)} examples at each point" if repair else "")
    )
    session.emit({**settings, **results}, "\n".join([text, *lines]))


@click.command("curve")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option(
    "--kind",
    type=click.Choice(CURVE_KINDS),
    default="bezier",
    show_default=True,
    help="Quadratic Bezier curve through the bend, or the broken line A -> bend -> B.",
)
@click.option(
    "--epochs", type=int, default=20, show_default=True, help="Passes over the training split."
)
@click.option(
    "--lr",
    type=float,
    default=0.05,
    show_default=True,
    help="SGD learning rate of the bend (momentum 0.9).",
)
@click.option(
    "--points", type=int, default=21, show_default=True, help="Values of t in [0, 1] measured."
)
@click.option(
    "--store",
    type=click.Path(dir_okay=False),
    default=None,
    callback=writable("result"),
    help="Store the curve and the straight line in this HDF5 file (`landscape plot` draws them).",
)
@compose(
    DATA,
    NORMALIZE,
    SAMPLES,
    batch_size(128, "Examples per training step and forward pass."),
    SEED,
    LOSS,
    DEVICE,
    CHECKPOINT_OUT,
    QUIET,
    JSON,
)
def curve_cmd(
    a,
    b,
    kind,
    epochs,
    lr,
    points,
    store,
    data_spec,
    normalize,
    samples,
    batch_size,
    seed,
    loss,
    device,
    out,
    quiet,
    as_json,
):
    """Train a mode-connecting curve from A to B (Garipov et al. 2018): the bend is written to
    --out; loss, error and barriers along the curve and along the straight line are reported
    (BatchNorm statistics reset at each point of a model with BatchNorm). Align A to B first
    (landscape align) to connect the aligned modes."""
    from landscape.data.split import subsample
    from landscape.geometry.barrier import interpolation_curve
    from landscape.geometry.curve import measure_curve, train_curve
    from landscape.io.checkpoint import save_checkpoint
    from landscape.io.store import result_arrays, write_results
    from landscape.training.bn import has_batchnorm

    from .session import Session, stem, stored

    session = Session(device, quiet, as_json)
    model_a, model_b = session.load(a)[0], session.load(b)[0]
    data = session.data(data_spec, [model_a, model_b], normalize)
    splits = {
        s: subsample(data.split(s), samples, seed, of=f"of the {s} split")
        for s in ("train", "test")
    }
    bend = train_curve(
        model_a,
        model_b,
        data.train,
        kind=kind,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        criterion=loss,
    )
    reset = has_batchnorm(model_a)
    curves = {
        "none": interpolation_curve(
            model_a, model_b, splits, points, batch_size, reset_bn=reset, criterion=loss
        ),
        kind: measure_curve(
            model_a, bend, model_b, kind, splits, points, batch_size, criterion=loss
        ),
    }
    settings = session.settings(
        data,
        samples=samples,
        seed=seed,
        batch_size=batch_size,
        points=points,
        criterion=loss,
        reset_bn=reset,
        kind=kind,
        epochs=epochs,
        lr=lr,
    )
    results = {which: result_arrays(c) for which, c in curves.items()}  # (arrays, attributes)
    save_checkpoint(
        bend,
        out,
        meta={
            "role": "curve bend",
            "parents": list(session.models),
            "kind": kind,
            "epochs": epochs,
            "lr": lr,
            "seed": seed,
            "batch_size": batch_size,
            "barrier_train": curves[kind].barrier_train,
            "barrier_test": curves[kind].barrier_test,
        },
    )
    if store:
        write_results(
            store,
            {
                f"/barriers/{stem(a)}~{stem(b)}/{which}": (arrays, {**attrs, **stored(settings)})
                for which, (arrays, attrs) in results.items()
            },
        )
    lines = [_barrier_line(which, c) for which, c in curves.items()]
    session.emit(
        {
            **settings,
            "out": out,
            **{w: {**arrays, **attrs} for w, (arrays, attrs) in results.items()},
        },
        "\n".join(
            [
                f"saved {out}: {kind} curve from {a} to {b}, {epochs} epochs; {points} points"
                + (", BatchNorm reset at each point" if reset else ""),
                *lines,
            ]
        ),
    )


@click.command("contour")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--kind",
    type=click.Choice(SURFACE_KINDS),
    default=None,
    help="2d/1d random directions around one model [2d], plane through three models [with 3], path "
    "through the models in order [with 2 or more than 3].",
)
@click.option(
    "--range",
    "span",
    default="-1:1",
    show_default=True,
    help="lo:hi of each random-direction axis.",
)
@click.option(
    "--steps",
    type=int,
    default=25,
    show_default=True,
    help="Points per axis (random directions and plane) or per segment (path).",
)
@click.option(
    "--margin",
    type=float,
    default=0.25,
    show_default=True,
    help="Plane and PCA: padding around the models (the trajectory), as a fraction of their "
    "extent.",
)
@click.option(
    "--include-bias-bn",
    is_flag=True,
    help="Move biases and BatchNorm parameters too (Li et al. zero them).",
)
@click.option(
    "--directions",
    type=click.Choice(DIRECTIONS),
    default="random",
    show_default=True,
    help="2d: random directions, or the two principal directions of the training trajectory (Li et "
    "al. 2018, sec. 7), which is drawn on the contour.",
)
@click.option(
    "--trajectory",
    multiple=True,
    type=click.Path(),
    help="With --directions pca: a trajectory checkpoint or a folder of them (repeatable) [the "
    "folder `train --save-every` recorded in the checkpoint].",
)
@click.option(
    "--direction-norm",
    type=click.Choice(DIRECTION_NORMS),
    default="filter",
    show_default=True,
    help="Random directions: rescaled per filter (Li et al.), per layer, per weight, or not at "
    "all.",
)
@NAME
@click.option(
    "--chunk",
    type=int,
    default=None,
    help="Points per batched pass (vmap), or walked between saves (loop) [auto].",
)
@REPAIR
@measure()
@POINTS
def contour_cmd(
    checkpoints,
    kind,
    span,
    steps,
    margin,
    include_bias_bn,
    directions,
    trajectory,
    direction_norm,
    name,
    chunk,
    repair,
    repair_samples,
    parallel,
    batching,
    **o,
):
    """Loss surface: random-direction contours (Li et al. 2018), the plane of a training
    trajectory's principal directions (--directions pca), the plane through three models, or a path.

    With --out the grid is written as it fills; rerunning the same command continues a killed run.
    """
    from landscape.data.split import subsample
    from landscape.errors import LandscapeError
    from landscape.geometry.points import layout_difference
    from landscape.geometry.surface import (
        compute_surface,
        path_surface,
        pca_surface,
        plane_surface,
        random_surface,
    )
    from landscape.io.checkpoint import file_hash, load_checkpoint
    from landscape.training.trajectory import trajectory_files

    from .session import Session, parse_range, stem, stored

    kind = kind or {1: "2d", 3: "plane"}.get(len(checkpoints), "path")
    if directions == "pca" and kind != "2d":
        raise LandscapeError(
            f"--directions pca draws a 2-D surface around one model, not --kind {kind}"
        )
    if trajectory and directions != "pca":
        raise LandscapeError("--trajectory is for --directions pca")
    needed = {"1d": 1, "2d": 1, "plane": 3}.get(kind)
    if needed and len(checkpoints) != needed:
        raise LandscapeError(
            f"--kind {kind} needs exactly {'one' if needed == 1 else 'three'} checkpoint(s), "
            f"got {len(checkpoints)}"
        )
    if kind == "path" and len(checkpoints) < 2:
        raise LandscapeError("--kind path needs at least two checkpoints")
    if repair and kind != "path":
        raise LandscapeError(
            f"--repair applies to points between models (--kind path), not to --kind {kind}"
        )
    if repair and repair_samples < 1:
        raise LandscapeError(f"--repair-samples must be at least 1, got {repair_samples}")
    session = Session(o["device"], o["quiet"], o["as_json"])
    models = [session.load(c)[0] for c in checkpoints]
    path = trajectory_files(list(trajectory), session.metas[0]) if directions == "pca" else []
    states = [load_checkpoint(c, session.device)[0].state_dict() for c in path]
    data = session.data(o["data_spec"], models, o["normalize"])
    difference = layout_difference([m.state_dict() for m in models] + states, "landscape align")
    if difference:
        raise LandscapeError(difference)
    split = subsample(
        data.split(o["split"]), o["samples"], o["seed"], of=f"of the {o['split']} split"
    )
    names = [stem(c) for c in checkpoints]
    lo, hi = parse_range(span)
    if directions == "pca":
        surface = pca_surface(models[0], states, steps, margin, include_bias_bn, names[0])
        kind = "pca"
    elif kind in ("1d", "2d"):
        surface = random_surface(
            models[0],
            int(kind[0]),
            lo,
            hi,
            steps,
            o["seed"],
            include_bias_bn,
            names[0],
            direction_norm,
        )
    elif kind == "plane":
        surface = plane_surface(models, steps, margin, names)
    else:
        surface = path_surface(models, steps, names)
    settings = session.settings(
        data,
        split=o["split"],
        samples=o["samples"],
        seed=o["seed"],
        steps=steps,
        range=span if kind in ("1d", "2d") else None,
        margin=margin if kind in ("plane", "pca") else None,
        include_bias_bn=include_bias_bn,
        criterion=o["loss"],
        directions=directions if kind in ("1d", "2d", "pca") else None,
        direction_norm=direction_norm if kind in ("1d", "2d") else None,
        trajectory=path or None,
        trajectory_sha256=[file_hash(c) for c in path] or None,
        **({"repair_samples": repair_samples} if repair else {}),
    )
    repair_on = (
        subsample(data.train, repair_samples, o["seed"], "--repair-samples") if repair else None
    )
    group = f"/surfaces/{name or '+'.join(names)}/{kind}"
    arrays, attrs = compute_surface(
        models[0],
        surface,
        split,
        o["batch_size"],
        stored(settings),
        out=o["out"],
        group=group,
        batching=batching,
        parallel=parallel,
        chunk=chunk,
        criterion=o["loss"],
        repair_on=repair_on,
    )
    loss = arrays["loss"]
    centre = float(loss[tuple(s // 2 for s in loss.shape)])
    text = (
        f"{kind} surface of {', '.join(checkpoints)}: {'x'.join(map(str, loss.shape))} points on "
        f"{len(split)} "
        f"{o['split']} examples; loss min {loss.min():.4g}, max {loss.max():.4g}, at the centre "
        f"{centre:.4g}" + (f"\n  stored in {o['out']}:{group}" if o["out"] else "")
    )
    shown = {k: v for k, v in arrays.items() if k != "done"}
    extra = {k: v for k, v in attrs.items() if k not in ("key", "models", "sha256", "normalize")}
    session.emit({**settings, **extra, **shown, "group": group}, text)


@click.command("plot")
@click.argument("store", type=click.Path(dir_okay=False))
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default=None,
    callback=writable_folder,
    help="Where to write the figures [FILE's folder / FILE stem + _plots].",
)
@figures("png", "; vtk: 2-D surfaces also as VTK structured grids (.vts) for ParaView")
@click.option(
    "--levels", type=int, default=24, show_default=True, help="Colour levels of 2-D loss surfaces."
)
@click.option(
    "--vmin", type=float, default=None, help="Lowest loss of the colour scale [the smallest drawn]."
)
@click.option(
    "--vmax", type=float, default=None, help="Highest loss of the colour scale [the largest drawn]."
)
@JSON
@QUIET
def plot_cmd(store, out_dir, formats, dpi, levels, vmin, vmax, as_json, quiet):
    """Draw what an HDF5 result file holds: eigenvalues and traces, spectral densities, per-block
    curvature, interpolation curves, loss surfaces (2-D ones also in 3-D, and as .vts files with
    --format vtk; all 2-D surfaces on one colour scale: fix --vmin/--vmax to compare the figures of
    several files)."""
    from pathlib import Path

    from landscape.choices import FIGURE_FORMATS
    from landscape.plots.figure import parse_formats
    from landscape.plots.files import plot_file

    from .session import Session

    session = Session(quiet=quiet, as_json=as_json)
    out_dir = Path(out_dir) if out_dir else Path(store).with_name(Path(store).stem + "_plots")
    written = plot_file(
        store, out_dir, parse_formats(formats, (*FIGURE_FORMATS, "vtk")), dpi, levels, vmin, vmax
    )
    session.emit({"figures": [str(p) for p in written]}, "\n".join(str(p) for p in written))


COMMANDS = [barrier_cmd, curve_cmd, contour_cmd, plot_cmd]
