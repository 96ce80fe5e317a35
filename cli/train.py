"""`landscape train`, `finetune`, `eval` and `wrap`."""

from __future__ import annotations

import click

from landscape.choices import KEEP, MONITORS, SCHEDULES

from .options import (
    CHECKPOINT_OUT,
    DATA,
    DEVICE,
    JSON,
    NORMALIZE,
    QUIET,
    RESULT_OUT,
    batch_size,
    compose,
)

LOOP = compose(
    DATA,
    NORMALIZE,
    batch_size(128, "Examples per SGD step."),
    click.option("--lr", type=float, default=0.05, show_default=True),
    click.option("--momentum", type=float, default=0.9, show_default=True),
    click.option("--weight-decay", type=float, default=5e-4, show_default=True),
    click.option("--epochs", type=int, default=20, show_default=True),
    click.option("--schedule", type=click.Choice(SCHEDULES), default="cosine", show_default=True),
    click.option(
        "--step-size",
        type=int,
        default=10,
        show_default=True,
        help="Epochs per step (step schedule).",
    ),
    click.option(
        "--gamma", type=float, default=0.1, show_default=True, help="Decay factor (step schedule)."
    ),
    click.option("--plateau-factor", type=float, default=0.1, show_default=True),
    click.option("--plateau-patience", type=int, default=5, show_default=True),
    click.option(
        "--patience",
        type=int,
        default=0,
        show_default=True,
        help="Early stopping after N epochs without a better --monitor value (0: off).",
    ),
    click.option(
        "--min-epochs",
        type=int,
        default=0,
        show_default=True,
        help="Early stopping waits this long.",
    ),
    click.option(
        "--monitor",
        type=click.Choice(MONITORS),
        default="val_acc",
        show_default=True,
        help="What the plateau schedule and early stopping watch.",
    ),
    click.option(
        "--keep",
        type=click.Choice(KEEP),
        default="last",
        show_default=True,
        help="Keep the weights of the last epoch run, or of the best validation accuracy.",
    ),
    click.option(
        "--data-seed",
        type=int,
        default=0,
        show_default=True,
        help="Seed of data order/augmentation.",
    ),
    click.option(
        "--augment/--no-augment",
        default=True,
        show_default=True,
        help="Crop+flip augmentation (CIFAR data only).",
    ),
    DEVICE,
    CHECKPOINT_OUT,
    QUIET,
    JSON,
)


def _config(kw: dict):
    from landscape.training.loop import TrainConfig

    return TrainConfig(**{k: kw[k] for k in TrainConfig.__dataclass_fields__ if k in kw})


def _finish(session, result, data, cfg, out, extra) -> None:
    from landscape.io.checkpoint import save_checkpoint
    from landscape.training.loop import train_meta
    from landscape.training.metrics import evaluate

    from .session import with_warnings

    test = evaluate(result.model, data.test)
    meta = with_warnings(
        train_meta(cfg, result, data, test_acc=test.acc, test_loss=test.loss, **extra)
    )
    save_checkpoint(result.model, out, meta=meta)
    summary = {
        "out": out,
        "models": session.models,
        "keep": cfg.keep,
        "kept_epoch": result.kept_epoch,
        "val_acc": meta["kept_val_acc"],
        "best_epoch": result.best_epoch,
        "best_val_acc": result.best_val_acc,
        "test_acc": test.acc,
        "test_loss": test.loss,
        "seconds": result.seconds,
    }
    session.emit(
        summary,
        f"saved {out}: kept epoch {result.kept_epoch} of {meta['epochs_run']} ({cfg.keep}), "
        f"val acc {meta['kept_val_acc']:.4f} (best {result.best_val_acc:.4f} at epoch "
        f"{result.best_epoch}), test acc {test.acc:.4f}, test loss {test.loss:.4f}",
    )


def _json_object(text: str | None, what: str) -> dict:
    """A JSON object given on the command line ({} when absent)."""
    import json

    from landscape.errors import LandscapeError

    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise LandscapeError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise LandscapeError(f"{what} must be a JSON object, got {text!r}")
    return value


@click.command("train")
@click.option(
    "--arch",
    default="mlp",
    show_default=True,
    help="mlp, vgg11, resnet18 or package.module:factory.",
)
@click.option("--hidden", default=None, help="MLP hidden widths, e.g. 400,200,100.")
@click.option("--width", type=float, default=None, help="Width multiplier.")
@click.option("--bn/--no-bn", default=None, help="BatchNorm (default: the arch's).")
@click.option("--bias/--no-bias", default=None, help="Biases (default: the arch's).")
@click.option("--arch-kwargs", default=None, help="Extra JSON keyword arguments for the factory.")
@click.option(
    "--init-seed", type=int, default=0, show_default=True, help="Seed of the initial weights."
)
@click.option(
    "--save-every",
    type=int,
    default=None,
    help="Also save the weights every N epochs (and at epochs 0 and last) in OUT_STEM_trajectory/, "
    "for `contour --directions pca`.",
)
@LOOP
def train_cmd(
    arch,
    hidden,
    width,
    bn,
    bias,
    arch_kwargs,
    init_seed,
    save_every,
    data_spec,
    normalize,
    out,
    device,
    quiet,
    as_json,
    **kw,
):
    """Train a model from scratch with SGD; keeps the last epoch's weights (or, with --keep best,
    the best validation accuracy's)."""
    from landscape.data.datasets import load_data
    from landscape.data.split import check_labels
    from landscape.errors import LandscapeError
    from landscape.models.zoo import arch_kwargs_for
    from landscape.training.loop import init_model, train
    from landscape.training.trajectory import TrajectoryWriter, trajectory_folder

    from .session import Session

    session = Session(device, quiet, as_json)
    data = load_data(data_spec.with_default("digits"), device=session.device, normalize=normalize)
    extra = _json_object(arch_kwargs, "--arch-kwargs")
    if hidden is not None:
        try:
            extra["hidden"] = [int(h) for h in hidden.split(",") if h.strip()]
        except ValueError:
            raise LandscapeError(
                f"--hidden: expected comma-separated integers, got {hidden!r}"
            ) from None
    kwargs = arch_kwargs_for(
        arch,
        data.input_shape,
        data.num_classes,
        **{"width": width, "bn": bn, "bias": bias, **extra},
    )
    model = init_model(arch, kwargs, init_seed).to(session.device)
    check_labels(data.train, kwargs["num_classes"])
    cfg = _config(kw)
    record = {"init_seed": init_seed, "arch": arch}
    if save_every is None:
        _finish(session, train(model, data, cfg, desc=f"train {out}"), data, cfg, out, record)
        return
    writer = TrajectoryWriter(
        trajectory_folder(out),
        save_every,
        cfg.epochs,
        {"dataset": data.name, "normalize": [list(p) for p in data.normalize], **record},
    )
    try:  # a failed run leaves no trajectory behind
        writer.start(model)
        result = train(model, data, cfg, desc=f"train {out}", on_epoch=writer.on_epoch)
        _finish(session, result, data, cfg, out, {**record, "trajectory": writer.record()})
    except BaseException:
        writer.discard()
        raise


@click.command("finetune")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@LOOP
def finetune_cmd(checkpoint, data_spec, normalize, out, device, quiet, as_json, **kw):
    """Continue training a checkpoint (e.g. a fused model) with the same loop as `train`."""
    import json

    from landscape.training.loop import train

    from .session import Session

    session = Session(device, quiet, as_json)
    model, meta = session.load(checkpoint)
    data = session.data(data_spec, [model], normalize)
    cfg = _config(kw)
    result = train(model, data, cfg, desc=f"finetune {out}")
    _finish(
        session,
        result,
        data,
        cfg,
        out,
        {"finetuned_from": checkpoint, "parent_meta": json.dumps(meta, default=str)},
    )


@click.command("eval")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@compose(DATA, NORMALIZE, batch_size(1024), DEVICE, JSON, RESULT_OUT, QUIET)
def eval_cmd(checkpoints, data_spec, normalize, batch_size, device, as_json, out, quiet):
    """Loss and accuracy on train and test; with several models also their prediction ensemble."""
    from landscape.io.store import write_results
    from landscape.training.metrics import evaluate, evaluate_ensemble

    from .session import Session, stem, stored

    session = Session(device, quiet, as_json)
    models = [session.load(c)[0] for c in checkpoints]
    data = session.data(data_spec, models, normalize)
    rows = [
        {**ref, **{s: evaluate(m, data.split(s), batch_size).__dict__ for s in ("train", "test")}}
        for ref, m in zip(session.models, models)
    ]
    ensemble = (
        {
            s: evaluate_ensemble(models, data.split(s), batch_size).__dict__
            for s in ("train", "test")
        }
        if len(models) > 1
        else None
    )
    settings = session.settings(data, batch_size=batch_size)
    if out:
        groups = {
            f"/models/{stem(r['path'])}/metrics": (
                {},
                {**_flat(r), **stored({**settings, "models": [r]})},
            )
            for r in rows
        }
        if ensemble:
            groups["/models/ensemble/metrics"] = ({}, {**_flat(ensemble), **stored(settings)})
        write_results(out, groups)
    lines = [f"{'model':<40} {'train loss':>10} {'train acc':>9} {'test loss':>10} {'test acc':>9}"]
    for name, r in [(r["path"], r) for r in rows] + ([("ensemble", ensemble)] if ensemble else []):
        lines.append(
            f"{name:<40} {r['train']['loss']:>10.4f} {r['train']['acc']:>9.4f} "
            f"{r['test']['loss']:>10.4f} {r['test']['acc']:>9.4f}"
        )
    session.emit({**settings, "models": rows, "ensemble": ensemble}, "\n".join(lines))


def _flat(row: dict) -> dict:
    """`{"train": {"loss": ...}, ...}` as `{"train_loss": ...}` attributes."""
    return {f"{s}_{k}": v for s in ("train", "test") for k, v in row[s].items()}


@click.command("wrap")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option(
    "--arch",
    required=True,
    help="mlp, vgg11, resnet18, package.module:factory, or a library model: torchvision:NAME, "
    "timm:NAME, hf:DIR (a transformers config.json); docs/models.md.",
)
@click.option(
    "--arch-kwargs",
    default="{}",
    help="JSON keyword arguments, e.g. '{\"hidden\": [400, 200, 100]}'.",
)
@click.option(
    "--data", "data_spec", default=None, help="Dataset whose input shape and classes to use."
)
@click.option(
    "--key-map",
    default=None,
    help="JSON renaming of the file's tensors: exact names, or prefixes ending in '.', e.g. "
    '\'{"fc1.": "features.0."}\'.',
)
@click.option(
    "--strip-prefix", default=None, help="Remove this prefix from the file's tensor names first."
)
@click.option(
    "--normalize",
    default=None,
    help="The input statistics the model was trained with (MEAN,STD or MEAN,STD;... per channel, "
    "or none), recorded so that every command uses them.",
)
@CHECKPOINT_OUT
@JSON
@QUIET
def wrap_cmd(
    source, arch, arch_kwargs, data_spec, key_map, strip_prefix, normalize, out, as_json, quiet
):
    """Turn a state_dict, an OT-fusion reference checkpoint or a Lightning .ckpt into a checkpoint;
    tensors whose names differ are matched by order when their shapes agree (the mapping is printed
    and kept in meta)."""
    from landscape.data.datasets import load_data, parse_normalize
    from landscape.errors import LandscapeError
    from landscape.io.foreign import wrap
    from landscape.models.zoo import arch_kwargs_for

    from .session import Session

    session = Session(quiet=quiet, as_json=as_json)
    kwargs = _json_object(arch_kwargs, "--arch-kwargs")
    mapping_arg = _json_object(key_map, "--key-map")
    if not all(isinstance(v, str) for v in mapping_arg.values()):
        raise LandscapeError('--key-map maps names to names, e.g. \'{"fc1.": "features.0."}\'')
    meta = {}
    shape = None  # the input shape, where known (a library model's arch_kwargs need not hold it)
    if data_spec is not None:
        data = load_data(data_spec, normalize="none")
        kwargs = arch_kwargs_for(arch, data.input_shape, data.num_classes, **kwargs)
        shape = data.input_shape
    for key in ("input_shape", "num_classes"):
        if key not in kwargs and ":" not in arch:
            raise LandscapeError(f"wrap needs {key}: pass --data or put it in --arch-kwargs")
    if normalize is not None:
        shape = kwargs.get("input_shape", shape)
        channels = (
            int(shape[0]) if shape else max(1, len([p for p in normalize.split(";") if p.strip()]))
        )
        how = parse_normalize(normalize, channels)
        meta["normalize"] = [] if how == "none" else [list(pair) for pair in how]
    model, mapping = wrap(
        source, out, arch, kwargs, meta=meta, key_map=mapping_arg, strip_prefix=strip_prefix
    )
    params = sum(p.numel() for p in model.parameters())
    lines = [f"saved {out} ({arch}, {params} parameters)"]
    if mapping:
        lines.insert(
            0,
            f"names differ: {len(mapping)} tensors matched by order (shapes agree), kept in meta "
            "key_map:",
        )
        lines[1:1] = [f"  {a} -> {b}" for a, b in mapping.items()]
    session.emit(
        {
            "out": out,
            "arch": arch,
            "arch_kwargs": kwargs,
            "n_params": params,
            "key_map": mapping,
            "normalize": meta.get("normalize"),
        },
        "\n".join(lines),
    )


COMMANDS = [train_cmd, finetune_cmd, eval_cmd, wrap_cmd]
