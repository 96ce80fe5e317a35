"""`landscape barrier`, `contour` and `plot`: linear mode connectivity, loss surfaces and their figures."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

import fusion
from landscape.barrier import interpolation_curve
from landscape.checkpoint import file_hash
from landscape.data import subsample
from landscape.errors import LandscapeError
from landscape.multipoint import BATCHING, PARALLEL, same_layout
from landscape.plots import plot_file
from landscape.store import write_results
from landscape.study import result_arrays
from landscape.surface import KINDS, compute_surface, path_surface, plane_surface, random_surface

from .common import data_for, data_options, emit, load_model, output_options, parse_range, start
from .fusion import SOLVER_OPTIONS, resolve_solver

ALIGN = ("none", "ot", "both")


def _eval_options(f: Callable) -> Callable:
    f = output_options(data_options(f))
    f = click.option("--parallel", type=click.Choice(PARALLEL), default="data", show_default=True,
                     help="Under torchrun: shard the examples, or give each rank a block of points.")(f)
    return click.option("--batching", type=click.Choice(BATCHING), default="auto", show_default=True,
                        help="Batch points with torch.func.vmap, evaluate them one by one (loop), or choose by "
                             "device (auto: vmap on GPUs, loop on the CPU).")(f)


@click.command("barrier")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--align", type=click.Choice(ALIGN), default="none", show_default=True,
              help="Interpolate A as it is, aligned to B with OT fusion, or both (pre and post in one go).")
@click.option("--points", type=int, default=21, show_default=True, help="Values of a in [0, 1], both ends included.")
@click.option("--reset-bn", is_flag=True, help="Recompute BatchNorm statistics on the train split at every point.")
@click.option("--mode", type=click.Choice(fusion.MODES), default="acts", show_default=True,
              help="OT ground metric: activations or incoming weights.")
@click.option("--align-samples", type=int, default=200, show_default=True,
              help="Training examples whose activations align A to B (seeded by --seed).")
@SOLVER_OPTIONS[0]
@SOLVER_OPTIONS[1]
@_eval_options
def barrier_cmd(a, b, align, points, reset_bn, mode, align_samples, solver, reg, parallel, batching, **o):
    """Loss and accuracy on the straight line from A (a=0) to B (a=1), and the LMC barrier (train and test)."""
    dev = start(o["device"], o["quiet"], o["as_json"])
    model_a, model_b = load_model(a, dev)[0], load_model(b, dev)[0]
    data = data_for(model_a, o["data_spec"], dev)
    data_for(model_b, o["data_spec"], dev)
    splits = {s: subsample(data.split(s), o["samples"], o["seed"]) for s in ("train", "test")}
    aligns = ("none", "ot") if align == "both" else (align,)
    solver, reg = resolve_solver(solver, reg)
    name_a, name_b = Path(a).stem, Path(b).stem
    settings = {"a": a, "b": b, "sha256_a": file_hash(a), "sha256_b": file_hash(b), "data": o["data_spec"],
                "samples": o["samples"], "seed": o["seed"], "batch_size": o["batch_size"], "points": points}
    results, groups, lines = {}, {}, []
    for which in aligns:
        source, extra = model_a, {}
        if which == "ot":
            x = subsample(data.train, align_samples, o["seed"]).x if mode == "acts" else None
            source = fusion.align(model_a, model_b, mode=mode, x=x, solver=solver, reg=reg)
            extra = {"align_mode": mode, "align_samples": align_samples if mode == "acts" else None,
                     "solver": solver, "reg": reg if solver == "sinkhorn" else None}
        curve = interpolation_curve(source, model_b, splits, points, o["batch_size"], reset_bn=reset_bn,
                                    vectorize=BATCHING[batching], parallel=parallel)
        arrays, attrs = result_arrays(curve)
        groups[f"/barriers/{name_a}~{name_b}/{which}"] = (arrays, {**attrs, **settings, **extra})
        results[which] = {**arrays, **attrs, **extra}
        lines.append(f"  {which:>4}: barrier train {curve.barrier_train:.6g} (at a={curve.argmax_train:.3g}), "
                     f"test {curve.barrier_test:.6g} (at a={curve.argmax_test:.3g}); loss at a=0.5: "
                     f"train {curve.train_loss[len(curve.alphas) // 2]:.4g}")
    if o["out"]:
        write_results(o["out"], groups)
    text = f"{a} -> {b}: {points} points" + (", BatchNorm reset at each point" if reset_bn else "")
    emit({**settings, "reset_bn": reset_bn, **results}, o["as_json"], "\n".join([text, *lines]))


@click.command("contour")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--kind", type=click.Choice(KINDS), default=None,
              help="2d/1d random directions around one model [2d], plane through three models [with 3], path "
                   "through the models in order [with 2 or more than 3].")
@click.option("--range", "span", default="-1:1", show_default=True, help="lo:hi of each random-direction axis.")
@click.option("--steps", type=int, default=25, show_default=True,
              help="Points per axis (random directions and plane) or per segment (path).")
@click.option("--margin", type=float, default=0.25, show_default=True,
              help="Plane: padding around the three models, as a fraction of their extent.")
@click.option("--include-bias-bn", is_flag=True, help="Move biases and BatchNorm parameters too (Li et al. zero them).")
@click.option("--name", default=None, help="Store under /surfaces/NAME/KIND (default: the checkpoint stems).")
@click.option("--chunk", type=int, default=None, help="Points per batched pass [auto].")
@_eval_options
def contour_cmd(checkpoints, kind, span, steps, margin, include_bias_bn, name, chunk, parallel, batching, **o):
    """Loss surface: random-direction contours (Li et al. 2018), the plane through three models, or a path.

    With --out the grid is written as it fills; rerunning the same command continues a killed run.
    """
    kind = kind or {1: "2d", 3: "plane"}.get(len(checkpoints), "path")
    needed = {"1d": "exactly one", "2d": "exactly one", "plane": "exactly three"}.get(kind)
    if needed and len(checkpoints) != {"exactly one": 1, "exactly three": 3}[needed]:
        raise LandscapeError(f"--kind {kind} needs {needed} checkpoint(s), got {len(checkpoints)}")
    if kind == "path" and len(checkpoints) < 2:
        raise LandscapeError("--kind path needs at least two checkpoints")
    dev = start(o["device"], o["quiet"], o["as_json"])
    models = [load_model(c, dev)[0] for c in checkpoints]
    data = data_for(models[0], o["data_spec"], dev)
    for m in models[1:]:
        data_for(m, o["data_spec"], dev)
    if not same_layout([m.state_dict() for m in models]):
        raise LandscapeError("the models have different architectures or widths: align them first "
                             "(landscape align)")
    split = subsample(data.split(o["split"]), o["samples"], o["seed"])
    names = [Path(c).stem for c in checkpoints]
    lo, hi = parse_range(span)
    if kind in ("1d", "2d"):
        surface = random_surface(models[0], int(kind[0]), lo, hi, steps, o["seed"], include_bias_bn, names[0])
    elif kind == "plane":
        surface = plane_surface(models, steps, margin, names)
    else:
        surface = path_surface(models, steps, names)
    settings = {"checkpoints": list(checkpoints), "sha256": [file_hash(c) for c in checkpoints],
                "data": o["data_spec"], "split": o["split"], "samples": o["samples"], "seed": o["seed"],
                "steps": steps, "range": span if kind in ("1d", "2d") else None,
                "margin": margin if kind == "plane" else None, "include_bias_bn": include_bias_bn}
    group = f"/surfaces/{name or '+'.join(names)}/{kind}"
    arrays, attrs = compute_surface(models[0], surface, split, o["batch_size"], settings, out=o["out"], group=group,
                                    vectorize=BATCHING[batching], parallel=parallel, chunk=chunk)
    loss = arrays["loss"]
    centre = float(loss[tuple(s // 2 for s in loss.shape)])
    text = (f"{kind} surface of {', '.join(checkpoints)}: {'x'.join(map(str, loss.shape))} points on {len(split)} "
            f"{o['split']} examples; loss min {loss.min():.4g}, max {loss.max():.4g}, at the centre {centre:.4g}"
            + (f"\n  stored in {o['out']}:{group}" if o["out"] else ""))
    shown = {k: v for k, v in arrays.items() if k != "done"}
    emit({**shown, **{k: v for k, v in attrs.items() if k != "key"}, "group": group}, o["as_json"], text)


@click.command("plot")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the PNGs [FILE's folder / FILE stem + _plots].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout, nothing else.")
def plot_cmd(store, out_dir, as_json):
    """Draw what an HDF5 result file holds: spectral densities, interpolation curves, loss surfaces."""
    out_dir = Path(out_dir) if out_dir else Path(store).with_name(Path(store).stem + "_plots")
    try:
        written = plot_file(store, out_dir)
    except OSError as exc:
        raise LandscapeError(f"{store}: not an HDF5 result file ({exc.__class__.__name__})") from None
    emit({"figures": [str(p) for p in written]}, as_json, "\n".join(str(p) for p in written))


COMMANDS = [barrier_cmd, contour_cmd, plot_cmd]
