"""`landscape barrier`, `contour` and `plot`: linear mode connectivity, loss surfaces and their figures."""
from __future__ import annotations

import click

from fusion.choices import MODES
from landscape.choices import SURFACE_KINDS

from .fusion import SOLVER
from .options import BATCHING_OPTION, JSON, NAME, PARALLEL_OPTION, QUIET, compose, figures, measure, writable_folder

ALIGN = ("none", "ot", "both")
POINTS = compose(PARALLEL_OPTION, BATCHING_OPTION)


@click.command("barrier")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--align", type=click.Choice(ALIGN), default="none", show_default=True,
              help="Interpolate A as it is, aligned to B with OT fusion, or both (pre and post in one go).")
@click.option("--points", type=int, default=21, show_default=True, help="Values of a in [0, 1], both ends included.")
@click.option("--reset-bn", is_flag=True, help="Recompute BatchNorm statistics on the train split at every point.")
@click.option("--mode", type=click.Choice(MODES), default="acts", show_default=True,
              help="OT ground metric: activations or incoming weights.")
@click.option("--align-samples", type=int, default=200, show_default=True,
              help="Training examples whose activations align A to B (seeded by --seed).")
@SOLVER
@measure(split=False)
@POINTS
def barrier_cmd(a, b, align, points, reset_bn, mode, align_samples, solver, reg, strict, parallel, batching, **o):
    """Loss and accuracy on the straight line from A (a=0) to B (a=1), and the LMC barrier (train and test)."""
    import fusion
    from landscape.data.split import subsample
    from landscape.geometry.barrier import interpolation_curve
    from landscape.io.store import result_arrays, write_results

    from .fusion import check_function, resolve_solver
    from .session import Session, stem, stored

    session = Session(o["device"], o["quiet"], o["as_json"])
    model_a, model_b = session.load(a)[0], session.load(b)[0]
    data = session.data(o["data_spec"], [model_a, model_b], o["normalize"])
    splits = {s: subsample(data.split(s), o["samples"], o["seed"], of=f"of the {s} split") for s in ("train", "test")}
    aligns = ("none", "ot") if align == "both" else (align,)
    solver, reg = resolve_solver(solver, reg)
    settings = session.settings(data, samples=o["samples"], seed=o["seed"], batch_size=o["batch_size"],
                                points=points, criterion=o["loss"], reset_bn=reset_bn)
    results, groups, lines = {}, {}, []
    for which in aligns:
        source, extra = model_a, {}
        if which == "ot":
            count = align_samples if mode == "acts" else 2   # weight mode: two examples to trace the models
            x = subsample(data.train, count, o["seed"], "--align-samples").x
            source = fusion.align(model_a, model_b, mode=mode, x=x, solver=solver, reg=reg, strict=strict)
            extra = {"mode": mode, "align_samples": align_samples if mode == "acts" else None,
                     "solver": solver, "reg": reg if solver == "sinkhorn" else None,
                     **check_function(model_a, source, data, x, o["batch_size"], f"{a} aligned to {b}")}
        curve = interpolation_curve(source, model_b, splits, points, o["batch_size"], reset_bn=reset_bn,
                                    batching=batching, parallel=parallel, criterion=o["loss"])
        arrays, attrs = result_arrays(curve)
        groups[f"/barriers/{stem(a)}~{stem(b)}/{which}"] = (arrays, {**attrs, **stored(settings), **extra})
        results[which] = {**arrays, **attrs, **extra}
        lines.append(f"  {which:>4}: barrier train {curve.barrier_train:.6g} (at a={curve.argmax_train:.3g}), "
                     f"test {curve.barrier_test:.6g} (at a={curve.argmax_test:.3g}); loss at a=0.5: "
                     f"train {curve.train_loss[len(curve.alphas) // 2]:.4g}")
    if o["out"]:
        write_results(o["out"], groups)
    text = f"{a} -> {b}: {points} points" + (", BatchNorm reset at each point" if reset_bn else "")
    session.emit({**settings, **results}, "\n".join([text, *lines]))


@click.command("contour")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--kind", type=click.Choice(SURFACE_KINDS), default=None,
              help="2d/1d random directions around one model [2d], plane through three models [with 3], path "
                   "through the models in order [with 2 or more than 3].")
@click.option("--range", "span", default="-1:1", show_default=True, help="lo:hi of each random-direction axis.")
@click.option("--steps", type=int, default=25, show_default=True,
              help="Points per axis (random directions and plane) or per segment (path).")
@click.option("--margin", type=float, default=0.25, show_default=True,
              help="Plane: padding around the three models, as a fraction of their extent.")
@click.option("--include-bias-bn", is_flag=True, help="Move biases and BatchNorm parameters too (Li et al. zero them).")
@NAME
@click.option("--chunk", type=int, default=None,
              help="Points per batched pass (vmap), or walked between saves (loop) [auto].")
@measure()
@POINTS
def contour_cmd(checkpoints, kind, span, steps, margin, include_bias_bn, name, chunk, parallel, batching, **o):
    """Loss surface: random-direction contours (Li et al. 2018), the plane through three models, or a path.

    With --out the grid is written as it fills; rerunning the same command continues a killed run.
    """
    from landscape.data.split import subsample
    from landscape.errors import LandscapeError
    from landscape.geometry.points import layout_difference
    from landscape.geometry.surface import compute_surface, path_surface, plane_surface, random_surface

    from .session import Session, parse_range, stem, stored

    kind = kind or {1: "2d", 3: "plane"}.get(len(checkpoints), "path")
    needed = {"1d": 1, "2d": 1, "plane": 3}.get(kind)
    if needed and len(checkpoints) != needed:
        raise LandscapeError(f"--kind {kind} needs exactly {'one' if needed == 1 else 'three'} checkpoint(s), "
                             f"got {len(checkpoints)}")
    if kind == "path" and len(checkpoints) < 2:
        raise LandscapeError("--kind path needs at least two checkpoints")
    session = Session(o["device"], o["quiet"], o["as_json"])
    models = [session.load(c)[0] for c in checkpoints]
    data = session.data(o["data_spec"], models, o["normalize"])
    difference = layout_difference([m.state_dict() for m in models], "landscape align")
    if difference:
        raise LandscapeError(difference)
    split = subsample(data.split(o["split"]), o["samples"], o["seed"], of=f"of the {o['split']} split")
    names = [stem(c) for c in checkpoints]
    lo, hi = parse_range(span)
    if kind in ("1d", "2d"):
        surface = random_surface(models[0], int(kind[0]), lo, hi, steps, o["seed"], include_bias_bn, names[0])
    elif kind == "plane":
        surface = plane_surface(models, steps, margin, names)
    else:
        surface = path_surface(models, steps, names)
    settings = session.settings(data, split=o["split"], samples=o["samples"], seed=o["seed"], steps=steps,
                                range=span if kind in ("1d", "2d") else None,
                                margin=margin if kind == "plane" else None, include_bias_bn=include_bias_bn,
                                criterion=o["loss"])
    group = f"/surfaces/{name or '+'.join(names)}/{kind}"
    arrays, attrs = compute_surface(models[0], surface, split, o["batch_size"], stored(settings), out=o["out"],
                                    group=group, batching=batching, parallel=parallel, chunk=chunk,
                                    criterion=o["loss"])
    loss = arrays["loss"]
    centre = float(loss[tuple(s // 2 for s in loss.shape)])
    text = (f"{kind} surface of {', '.join(checkpoints)}: {'x'.join(map(str, loss.shape))} points on {len(split)} "
            f"{o['split']} examples; loss min {loss.min():.4g}, max {loss.max():.4g}, at the centre {centre:.4g}"
            + (f"\n  stored in {o['out']}:{group}" if o["out"] else ""))
    shown = {k: v for k, v in arrays.items() if k != "done"}
    extra = {k: v for k, v in attrs.items() if k not in ("key", "models", "sha256", "normalize")}
    session.emit({**settings, **extra, **shown, "group": group}, text)


@click.command("plot")
@click.argument("store", type=click.Path(dir_okay=False))
@click.option("--out-dir", type=click.Path(file_okay=False), default=None, callback=writable_folder,
              help="Where to write the figures [FILE's folder / FILE stem + _plots].")
@figures("png")
@click.option("--levels", type=int, default=24, show_default=True, help="Colour levels of 2-D loss surfaces.")
@click.option("--vmin", type=float, default=None, help="Lowest loss of the colour scale [the smallest drawn].")
@click.option("--vmax", type=float, default=None, help="Highest loss of the colour scale [the largest drawn].")
@JSON
@QUIET
def plot_cmd(store, out_dir, formats, dpi, levels, vmin, vmax, as_json, quiet):
    """Draw what an HDF5 result file holds: spectral densities, interpolation curves, loss surfaces (all 2-D
    surfaces on one colour scale; fix --vmin/--vmax to compare the figures of several files)."""
    from pathlib import Path

    from landscape.plots.figure import parse_formats
    from landscape.plots.files import plot_file

    from .session import Session

    session = Session(quiet=quiet, as_json=as_json)
    out_dir = Path(out_dir) if out_dir else Path(store).with_name(Path(store).stem + "_plots")
    written = plot_file(store, out_dir, parse_formats(formats), dpi, levels, vmin, vmax)
    session.emit({"figures": [str(p) for p in written]}, "\n".join(str(p) for p in written))


COMMANDS = [barrier_cmd, contour_cmd, plot_cmd]
