"""The measurement tasks of a planned batch-size study, per model and per pair.

Per model its metrics and curvature (and optionally other curvature matrices and sharpness), per
pair its prediction ensemble, barriers pre and post alignment and the loss contours around the
fine-tuned OT fusion.

Each task records the settings it was measured with; its key hashes them with the keys of the
models it reads, so changing one measurement setting recomputes only what depends on it.
"""

from __future__ import annotations

from typing import Any

from ..curvature.suite import BLOCK, TRACE_RSE
from ..io.store import content_key
from .sections import FUSED
from .settings import shifted
from .tasks import EVAL_BATCH, Cost, Pair, StudyPlan, Task


def _measure(
    p: StudyPlan,
    name: str,
    what: str,
    action: str,
    settings: dict[str, Any],
    cost: Cost,
    **params: Any,
) -> Task:
    """Measure `what` of model `name` with `action`.

    Returns:
        The task; its group records `settings`, its key hashes them with the model's key.
    """
    return Task(
        f"{what} {name}",
        content_key(what, p.models[name].key, settings),
        action,
        {"model": name, "settings": settings, **params},
        group=f"/models/{name}/{what}",
        cost=cost,
    )


def model_measures(p: StudyPlan, name: str) -> list[Task]:
    """The measurements of model `name`.

    They are its metrics, the curvature suite's groups, and the optional other curvature matrices
    and sharpness of `[measure]`.

    Args:
        p: the plan, with the model planned.
        name: the model.

    Returns:
        Its measurement tasks; the curvature tasks measure the subsample of the training split
        drawn with `[measure] seed` (shifted for the replicate) and record the loss, accuracy and
        gradient norm there.

    Examples:
        >>> from landscape.data.datasets import data_shape
        >>> from landscape.study import presets
        >>> from landscape.study.config import load_config
        >>> from landscape.study.plan import plan_study
        >>> cfg = load_config(presets.path("quick"))
        >>> plan = plan_study(cfg, "runs/quick", data_shape(cfg.data))
        >>> [t.group for t in model_measures(plan, "diff-bs32.ot")]
        ['/models/diff-bs32.ot/metrics', '/models/diff-bs32.ot/eigenvalues', ...]
    """
    m, replicate = p.cfg.measure, p.models[name].info["replicate"]
    seed, bs, samples, train = shifted(m.seed, replicate), m.batch_size, m.samples, p.sizes["train"]
    n = min(samples or train, train)
    metrics_cost = (("forward", EVAL_BATCH, train + p.sizes["test"]),)
    tasks = [_measure(p, name, "metrics", "metrics", {}, metrics_cost)]
    # One curvature suite per model gives all three groups (one budget, so each depends on every
    # setting): its block Lanczos run takes the products of the configured ESD (esd_steps x
    # esd_runs) and goes on until the top eigenvalues are certified (priced with the
    # eigenvalues); trace_hvps caps the trace's probes.
    suite = {
        "samples": samples,
        "batch_size": bs,
        "seed": seed,
        "k": m.eig_k,
        "tol": m.eig_tol,
        "min_steps": max(1, m.esd_steps * m.esd_runs // BLOCK),
        "block": BLOCK,
        "trace_hvps": m.trace_hvps,
        "trace_rse": TRACE_RSE,
    }
    budget = suite["min_steps"] * BLOCK + 100 * m.eig_k
    parts = [
        ("eigenvalues", (("hvp", bs, budget * n),)),
        ("trace", (("hvp", bs, m.trace_hvps * n),)),
    ]
    if m.esd and replicate == 0 and p.models[name].info["role"] in FUSED:
        parts.append(("esd", ()))
    for part, cost in parts:
        tasks.append(
            _measure(p, name, part, "suite", suite, cost, part=part, max_hvps=budget + m.trace_hvps)
        )
    curv = {"samples": samples, "batch_size": bs, "seed": seed}
    for c in m.curvatures:  # Gauss-Newton-vector products cost about what Hessian-vector ones do
        eig = {**curv, "k": m.eig_k, "tol": m.eig_tol}
        tasks.append(
            _measure(
                p,
                name,
                f"{c}/eigenvalues",
                "eigenvalues",
                eig,
                (("hvp", bs, 100 * m.eig_k * n),),
                curvature=c,
            )
        )
        trace = {**curv, "hvps": m.trace_hvps}
        tasks.append(
            _measure(
                p,
                name,
                f"{c}/trace",
                "trace",
                trace,
                (("hvp", bs, m.trace_hvps * n),),
                curvature=c,
            )
        )
    if m.sharpness:
        sharp = {
            "kind": m.sharpness_kind,
            "norm": m.sharpness_norm,
            "rho": m.sharpness_rho,
            "steps": m.sharpness_steps,
            "restarts": m.sharpness_restarts,
            "draws": m.sharpness_draws,
        }
        ascent = sharp["restarts"] * sharp["steps"]
        what = f"sharpness/{sharp['kind']}-{sharp['norm']}-{sharp['rho']:g}"
        cost = (
            ("train", bs, ascent * n),
            ("forward", bs, (sharp["restarts"] + sharp["draws"] + 1) * n),
        )
        tasks.append(_measure(p, name, what, "sharpness", {**curv, **sharp}, cost))
    return tasks


def pair_measures(p: StudyPlan, pair: Pair) -> list[Task]:
    """The measurements of `pair`.

    They are its prediction ensemble, its barriers before and after alignment, and (replicate 0 of
    different-init pairs, when `[measure] contours`) its contours.

    Args:
        p: the plan, with the pair's models planned.
        pair: the pair.

    Returns:
        Its measurement tasks.

    Examples:
        >>> from landscape.data.datasets import data_shape
        >>> from landscape.study import presets
        >>> from landscape.study.config import load_config
        >>> from landscape.study.plan import plan_study
        >>> cfg = load_config(presets.path("quick"))
        >>> plan = plan_study(cfg, "runs/quick", data_shape(cfg.data))
        >>> [t.name for t in pair_measures(plan, plan.pairs[0])]
        ['ensemble same-bs32', 'barrier none same-bs32', 'barrier ot same-bs32']
    """
    m = p.cfg.measure
    seed = shifted(m.seed, pair.replicate)
    keys = [p.models[n].key for n in (pair.a, pair.b)]
    n_eval = p.sizes["train"] + p.sizes["test"]
    tasks = [
        Task(
            f"ensemble {pair.name}",
            content_key("ensemble", keys),
            "ensemble",
            {"models": [pair.a, pair.b]},
            group=f"/pairs/{pair.name}/ensemble",
            cost=(("forward", EVAL_BATCH, 2 * n_eval),),
        )
    ]
    n_line = sum(min(m.barrier_samples or p.sizes[s], p.sizes[s]) for s in ("train", "test"))
    settings = {"points": m.barrier_points, "samples": m.barrier_samples, "seed": seed}
    for align, source in (("none", pair.a), ("ot", f"{pair.name}.aligned")):
        tasks.append(
            Task(
                f"barrier {align} {pair.name}",
                content_key("barrier", p.models[source].key, keys[1], settings),
                "barrier",
                {"a": source, "b": pair.b, "settings": settings},
                group=f"/barriers/{pair.a}~{pair.b}/{align}",
                cost=(("forward", m.batch_size, m.barrier_points * n_line),),
            )
        )
    # a plane needs a fine-tuned fusion: the fusion itself is A-B's midpoint
    if (
        m.contours
        and pair.init == "diff"
        and pair.batches == "corresponding"
        and pair.replicate == 0
        and (m.contour_kind != "plane" or _contour_fused(pair) != f"{pair.name}.ot")
    ):
        tasks.append(_contour_task(p, pair))
    return tasks


def _contour_fused(pair: Pair) -> str:
    """The OT fusion the contours are drawn around.

    Returns:
        The fusion fine-tuned at B's batch size if it was, else the first fine-tuned one, else the
        fusion itself.
    """
    tuned = [f for f in pair.finetuned if f["source"] == "ot"]
    best = [f for f in tuned if f["settings"]["batch_size"] == pair.bs_b] or tuned
    return best[0]["name"] if best else f"{pair.name}.ot"


def _contour_task(p: StudyPlan, pair: Pair) -> Task:
    """Train-loss contours of the seed study's figure 6.

    Returns:
        The task: the plane through A aligned to B, B and the (fine-tuned) OT fusion, or two random
        filter-normalised directions around the latter.
    """
    m = p.cfg.measure
    kind, steps = m.contour_kind, m.contour_steps
    fused = _contour_fused(pair)
    names = [f"{pair.name}.aligned", pair.b, fused] if kind == "plane" else [fused]
    settings = {
        "steps": steps,
        "samples": m.barrier_samples,
        "seed": m.seed,
        "split": "train",
        **({"margin": m.contour_margin} if kind == "plane" else {"range": m.contour_range}),
    }
    n_split = min(m.barrier_samples or p.sizes["train"], p.sizes["train"])
    return Task(
        f"contour {pair.name}",
        content_key(kind, [p.models[n].key for n in names], settings),
        "contour",
        {
            "models": names,
            "kind": kind,
            "label": "OT fusion FT" if "-ft" in fused else "OT fusion",
            "settings": settings,
        },
        group=f"/surfaces/{pair.name}/{kind}",
        cost=(("forward", m.batch_size, steps * steps * n_split),),
    )
