"""`landscape train`, `finetune`, `eval` and `wrap`."""
from __future__ import annotations

import json

import click

from landscape.checkpoint import file_hash, model_spec, save_checkpoint, wrap
from landscape.data import check_labels, load_data
from landscape.errors import LandscapeError
from landscape.evaluate import evaluate, evaluate_ensemble
from landscape.store import write_result
from landscape.train import SCHEDULES, TrainConfig, init_model, train, train_meta
from landscape.zoo import arch_kwargs_for

from .common import data_for, emit, load_model, output_options, start


def _loop_options(f):
    for opt in reversed([
        click.option("--data", "data_spec", default="digits", show_default=True,
                     help="digits, a .npz file, or mnist:DIR / cifar10:DIR / cifar100:DIR"),
        click.option("--batch-size", type=int, default=128, show_default=True),
        click.option("--lr", type=float, default=0.05, show_default=True),
        click.option("--momentum", type=float, default=0.9, show_default=True),
        click.option("--weight-decay", type=float, default=5e-4, show_default=True),
        click.option("--epochs", type=int, default=20, show_default=True),
        click.option("--schedule", type=click.Choice(SCHEDULES), default="cosine", show_default=True),
        click.option("--step-size", type=int, default=10, show_default=True, help="Epochs per step (step schedule)."),
        click.option("--gamma", type=float, default=0.1, show_default=True, help="Decay factor (step schedule)."),
        click.option("--plateau-factor", type=float, default=0.1, show_default=True),
        click.option("--plateau-patience", type=int, default=5, show_default=True),
        click.option("--patience", type=int, default=0, show_default=True,
                     help="Early stopping after N epochs without better validation accuracy (0: off)."),
        click.option("--data-seed", type=int, default=0, show_default=True, help="Seed of data order/augmentation."),
        click.option("--augment/--no-augment", default=True, show_default=True,
                     help="Crop+flip augmentation (CIFAR data only)."),
        click.option("--device", default="cpu", show_default=True),
        click.option("--out", type=click.Path(dir_okay=False), required=True, help="Checkpoint to write (.pt)."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout."),
    ]):
        f = opt(f)
    return f


def _config(kw: dict) -> TrainConfig:
    keys = TrainConfig.__dataclass_fields__.keys()
    return TrainConfig(**{k: kw[k] for k in keys if k in kw})


def _finish(result, data, cfg, out, as_json, extra) -> None:
    test = evaluate(result.model, data.test)
    meta = train_meta(cfg, result, data, test_acc=test.acc, test_loss=test.loss, **extra)
    save_checkpoint(result.model, out, meta=meta)
    summary = {"out": out, "best_epoch": result.best_epoch, "val_acc": result.best_val_acc,
               "test_acc": test.acc, "test_loss": test.loss, "seconds": result.seconds}
    emit(summary, as_json, f"saved {out}: best epoch {result.best_epoch + 1}, val acc {result.best_val_acc:.4f}, "
                           f"test acc {test.acc:.4f}, test loss {test.loss:.4f}")


@click.command("train")
@click.option("--arch", default="mlp", show_default=True, help="mlp, vgg11, resnet18 or package.module:factory.")
@click.option("--hidden", default=None, help="MLP hidden widths, e.g. 400,200,100.")
@click.option("--width", type=float, default=None, help="Width multiplier.")
@click.option("--bn/--no-bn", default=None, help="BatchNorm (default: the arch's).")
@click.option("--bias/--no-bias", default=None, help="Biases (default: the arch's).")
@click.option("--arch-kwargs", default=None, help="Extra JSON keyword arguments for the factory.")
@click.option("--init-seed", type=int, default=0, show_default=True, help="Seed of the initial weights.")
@_loop_options
def train_cmd(arch, hidden, width, bn, bias, arch_kwargs, init_seed, data_spec, out, device, quiet, as_json, **kw):
    """Train a model from scratch with SGD; keeps the best-validation checkpoint."""
    dev = start(device, quiet, as_json)
    data = load_data(data_spec, device=dev)
    try:
        extra = json.loads(arch_kwargs) if arch_kwargs else {}
    except json.JSONDecodeError as exc:
        raise LandscapeError(f"--arch-kwargs is not valid JSON: {exc}") from None
    if hidden is not None:
        try:
            extra["hidden"] = [int(h) for h in hidden.split(",") if h.strip()]
        except ValueError:
            raise LandscapeError(f"--hidden: expected comma-separated integers, got {hidden!r}") from None
    kwargs = arch_kwargs_for(arch, data.input_shape, data.num_classes,
                             **{"width": width, "bn": bn, "bias": bias, **extra})
    model = init_model(arch, kwargs, init_seed).to(dev)
    check_labels(data.train, kwargs["num_classes"])
    cfg = _config(kw)
    result = train(model, data, cfg, desc=f"train {out}")
    _finish(result, data, cfg, out, as_json, {"init_seed": init_seed, "arch": arch})


@click.command("finetune")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@_loop_options
def finetune_cmd(checkpoint, data_spec, out, device, quiet, as_json, **kw):
    """Continue training a checkpoint (e.g. a fused model) with the same loop as `train`."""
    dev = start(device, quiet, as_json)
    model, meta = load_model(checkpoint, dev)
    data = data_for(model, data_spec, dev)
    cfg = _config(kw)
    result = train(model, data, cfg, desc=f"finetune {out}")
    _finish(result, data, cfg, out, as_json,
            {"finetuned_from": checkpoint, "parent_meta": json.dumps(meta, default=str)})


@click.command("eval")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--data", "data_spec", default="digits", show_default=True)
@click.option("--batch-size", type=int, default=1024, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@output_options
def eval_cmd(checkpoints, data_spec, batch_size, device, as_json, out, quiet):
    """Loss and accuracy on train and test; with several models also their prediction ensemble."""
    dev = start(device, quiet, as_json)
    models = [load_model(c, dev)[0] for c in checkpoints]
    data = data_for(models[0], data_spec, dev)
    for m in models[1:]:
        data_for(m, data_spec, dev)
    rows = {}
    for path, model in zip(checkpoints, models):
        rows[path] = {s: evaluate(model, data.split(s), batch_size).__dict__ for s in ("train", "test")}
    if len(models) > 1:
        rows["ensemble"] = {s: evaluate_ensemble(models, data.split(s), batch_size).__dict__ for s in ("train", "test")}
    if out:
        for name, r in rows.items():
            write_result(out, f"/models/{_name(name)}/metrics", {},
                         {**{f"{s}_{k}": v for s, m in r.items() for k, v in m.items()}, "data": data_spec,
                          "checkpoint": name, **({"sha256": file_hash(name)} if name != "ensemble" else {})})
    lines = [f"{'model':<40} {'train loss':>10} {'train acc':>9} {'test loss':>10} {'test acc':>9}"]
    for name, r in rows.items():
        lines.append(f"{name:<40} {r['train']['loss']:>10.4f} {r['train']['acc']:>9.4f} "
                     f"{r['test']['loss']:>10.4f} {r['test']['acc']:>9.4f}")
    emit({"data": data_spec, "models": rows}, as_json, "\n".join(lines))


def _name(path: str) -> str:
    from pathlib import Path

    return Path(path).stem


@click.command("wrap")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--arch", required=True, help="mlp, vgg11, resnet18 or package.module:factory.")
@click.option("--arch-kwargs", default="{}", help="JSON keyword arguments, e.g. '{\"hidden\": [400, 200, 100]}'.")
@click.option("--data", "data_spec", default=None, help="Dataset whose input shape and classes to use.")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def wrap_cmd(source, arch, arch_kwargs, data_spec, out):
    """Turn a plain state_dict, {'model_state_dict': ...} or a Lightning .ckpt into a checkpoint."""
    start()
    try:
        kwargs = json.loads(arch_kwargs)
    except json.JSONDecodeError as exc:
        raise LandscapeError(f"--arch-kwargs is not valid JSON: {exc}") from None
    if data_spec is not None:
        data = load_data(data_spec)
        kwargs = arch_kwargs_for(arch, data.input_shape, data.num_classes, **kwargs)
    for key in ("input_shape", "num_classes"):
        if key not in kwargs and ":" not in arch:
            raise LandscapeError(f"wrap needs {key}: pass --data or put it in --arch-kwargs")
    model = wrap(source, out, arch, kwargs)
    click.echo(f"saved {out} ({model_spec(model)['arch']}, {sum(p.numel() for p in model.parameters())} parameters)")


COMMANDS = [train_cmd, finetune_cmd, eval_cmd, wrap_cmd]
