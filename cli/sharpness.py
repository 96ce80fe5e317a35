"""`landscape sharpness`: worst-case and average-case sharpness of a checkpoint's loss, standard or
adaptive."""

from __future__ import annotations

import click

from landscape.choices import SHARPNESS_KINDS, SHARPNESS_NORMS

from .options import NAME, measure


@click.command("sharpness")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--kind",
    type=click.Choice(SHARPNESS_KINDS),
    default="adaptive",
    show_default=True,
    help="adaptive: perturbations scaled by |w| (invariant to rescalings that keep the function); "
    "standard: plain perturbations.",
)
@click.option(
    "--rho",
    type=float,
    default=0.05,
    show_default=True,
    help="Radius of the ball, and the standard deviation of the random perturbations (per |w| when "
    "adaptive).",
)
@click.option(
    "--norm",
    type=click.Choice(SHARPNESS_NORMS),
    default="l2",
    show_default=True,
    help="The ball of the worst case.",
)
@click.option(
    "--steps", type=int, default=10, show_default=True, help="Gradient ascent steps per restart."
)
@click.option(
    "--restarts", type=int, default=3, show_default=True, help="Random starts of the ascent."
)
@click.option(
    "--random-draws",
    type=int,
    default=10,
    show_default=True,
    help="Gaussian perturbations averaged for the average case (0: none).",
)
@click.option("--step-size", type=float, default=None, help="Ascent step [2.5 * rho / steps].")
@measure()
@NAME
def sharpness_cmd(checkpoint, kind, rho, norm, steps, restarts, random_draws, step_size, name, **o):
    """Worst-case sharpness (the largest loss increase in the ball, by projected gradient ascent
    with random restarts) and average-case sharpness (over Gaussian perturbations), Andriushchenko
    et al. 2023."""
    from landscape.data.split import subsample
    from landscape.geometry.sharpness import measure_sharpness
    from landscape.io.store import result_arrays, write_result

    from .session import Session, stem, stored

    session = Session(o["device"], o["quiet"], o["as_json"])
    model = session.load(checkpoint)[0]
    data = session.data(o["data_spec"], [model], o["normalize"])
    split = subsample(
        data.split(o["split"]), o["samples"], o["seed"], of=f"of the {o['split']} split"
    )
    r = measure_sharpness(
        model,
        split,
        kind,
        rho,
        norm,
        steps,
        restarts,
        random_draws,
        step_size,
        o["seed"],
        o["batch_size"],
        o["loss"],
    )
    arrays, attrs = result_arrays(r)
    settings = session.settings(
        data,
        split=o["split"],
        samples=o["samples"],
        batch_size=o["batch_size"],
        seed=o["seed"],
        criterion=o["loss"],
    )
    group = f"/models/{name or stem(checkpoint)}/sharpness/{kind}-{norm}-{rho:g}"
    if o["out"]:
        write_result(o["out"], group, arrays, {**attrs, **stored(settings)})
    average = (
        f"{r.average:.6g} +- {r.average_stderr:.2g} over {r.random_draws} Gaussian draws (std "
        f"{rho:g}{' x |w|' if kind == 'adaptive' else ''})"
        if random_draws
        else "not measured (--random-draws 0)"
    )
    text = (
        f"{checkpoint}: {kind} sharpness, {norm} ball of radius {rho:g}, loss {r.loss:.6g} on "
        f"{r.n_examples} "
        f"{o['split']} examples\n  worst case {r.worst:.6g} (best of {restarts} restart(s) x "
        f"{steps} steps of "
        f"{r.step_size:.3g}, seed {o['seed']})\n  average case {average}\n  {r.passes} passes over "
        "the data, "
        f"{r.seconds:.2f} s" + (f"\n  stored in {o['out']}:{group}" if o["out"] else "")
    )
    session.emit({**settings, **arrays, **attrs, "group": group}, text)


COMMANDS = [sharpness_cmd]
