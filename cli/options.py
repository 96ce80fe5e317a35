"""Every option the commands share, declared once (click only: importing this loads no torch)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click

from landscape.choices import BATCHING, FIGURE_FORMATS, LOSSES, PARALLEL, SPLITS

Decorator = Callable[[Callable], Callable]


SUFFIXES = {"checkpoint": (".pt", ".pth"), "result": (".h5", ".hdf5")}


def writable(kind: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """A callback refusing, at once and before any work, an output file of `kind` that could not be
    written: a suffix that names another format, a folder that does not exist (nothing is created
    for it), a file in the way of its folder, no permission."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        import os

        from landscape.errors import LandscapeError
        from landscape.io.atomic import check_writable

        if value is None:
            return value
        flag = param.opts[0] if param is not None and param.opts else "--out"
        suffix = os.path.splitext(value)[1].lower()
        if suffix not in SUFFIXES[kind]:
            raise LandscapeError(
                f"{flag} {value}: a {kind} is written as {' or '.join(SUFFIXES[kind])}, "
                f"not {suffix or 'a file without suffix'}"
            )
        check_writable(value)
        folder = os.path.dirname(os.path.abspath(os.path.expanduser(value)))
        if not os.path.isdir(folder):
            raise LandscapeError(
                f"{flag} {value}: the folder {folder} does not exist (create it first)"
            )
        return value

    return check


def writable_folder(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The check of `writable` for an output folder (created later when missing)."""
    from landscape.io.atomic import check_writable

    if value is not None:
        check_writable(value, folder=True)
    return value


def compose(*decorators: Decorator) -> Decorator:
    """Apply `decorators` so that the options appear in `--help` in the order given."""

    def apply(f: Callable) -> Callable:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def _labels(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated class indices, got {value!r}") from None


def _select(f: Callable) -> Callable:
    """Fold the selection options into `data_spec`, a `DataSpec` (its source and the examples
    kept)."""

    @functools.wraps(f)
    def command(
        *args, data_spec, labels, exclude_labels, fraction, fraction_seed, skill_transfer, **kw
    ):
        from landscape.data.selection import DataSpec, Selection, parse_skill_transfer
        from landscape.errors import LandscapeError

        if skill_transfer is not None:
            if labels is not None or exclude_labels or fraction is not None:
                raise LandscapeError(
                    "--skill-transfer chooses the labels and the fraction itself: drop --labels, "
                    "--exclude-labels and --fraction"
                )
            selection = parse_skill_transfer(skill_transfer, fraction_seed)
        else:
            selection = Selection(
                labels, exclude_labels or (), 1.0 if fraction is None else fraction, fraction_seed
            )
        return f(*args, data_spec=DataSpec(data_spec, selection), **kw)

    return command


DATA = compose(
    click.option(
        "--data",
        "data_spec",
        default=None,
        help="digits, a .npz file, or mnist:DIR / cifar10:DIR / cifar100:DIR [the data the "
        "checkpoints record; digits for a new model].",
    ),
    click.option(
        "--labels",
        default=None,
        callback=_labels,
        help="Train/validation examples of these labels only (comma-separated) [all]; test stays "
        "whole.",
    ),
    click.option(
        "--exclude-labels",
        default=None,
        callback=_labels,
        help="Drop the train/validation examples of these labels (comma-separated).",
    ),
    click.option(
        "--fraction",
        type=float,
        default=None,
        help="Keep this fraction of the (label-selected) train/validation examples, drawn with "
        "--fraction-seed [1].",
    ),
    click.option(
        "--fraction-seed",
        type=int,
        default=0,
        show_default=True,
        help="Seed of the --fraction draw.",
    ),
    click.option(
        "--skill-transfer",
        default=None,
        metavar="PART[:LABEL[:SHARE]]",
        help="The skill-transfer split (Singh & Jaggi 2020, Sec. 5.1): A = every example of LABEL "
        "[4] plus SHARE [0.1] of the others, B = the other labels' remaining examples.",
    ),
    _select,
)
NORMALIZE = click.option(
    "--normalize",
    default="auto",
    show_default=True,
    help="Input standardisation: auto (the checkpoint's own, else the training split's "
    "per-channel statistics), none, MEAN,STD or MEAN,STD;MEAN,STD;... per channel.",
)
DEVICE = click.option(
    "--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto."
)
SEED = click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the example subsample and of every random vector or direction.",
)
SAMPLES = click.option(
    "--samples", type=int, default=None, help="Use N examples drawn with --seed [all]."
)
SPLIT = click.option(
    "--split",
    type=click.Choice(SPLITS),
    default="train",
    show_default=True,
    help="The examples measured.",
)
LOSS = click.option(
    "--loss",
    type=click.Choice(LOSSES),
    default="ce",
    show_default=True,
    help="ce: cross-entropy on logits; nll: for models that end in log_softmax; lm: a language "
    "model's next-token cross-entropy (docs/models.md).",
)
JSON = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout, nothing else."
)
QUIET = click.option("--quiet", is_flag=True, help="No progress bars or progress lines.")
RESULT_OUT = click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    callback=writable("result"),
    help="Store the result in this HDF5 file.",
)
CHECKPOINT_OUT = click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    callback=writable("checkpoint"),
    help="Checkpoint to write (.pt).",
)
NAME = click.option(
    "--name", default=None, help="The NAME of the stored group [the checkpoint's file stem]."
)
PARALLEL_OPTION = click.option(
    "--parallel",
    type=click.Choice(PARALLEL),
    default="data",
    show_default=True,
    help="Under torchrun: shard the examples, or give each rank a block of points.",
)
BATCHING_OPTION = click.option(
    "--batching",
    type=click.Choice(BATCHING),
    default="auto",
    show_default=True,
    help="Batch grid points with torch.func.vmap, evaluate them one by one (loop), "
    "or choose by device (auto).",
)


def figures(default_formats: str, more: str = "") -> Decorator:
    """--format (comma-separated figure formats, and what `more` describes) and --dpi (of raster
    formats), for commands that draw."""
    return compose(
        click.option(
            "--format",
            "formats",
            default=default_formats,
            show_default=True,
            help=f"Figure formats, comma-separated: {', '.join(FIGURE_FORMATS)}{more}.",
        ),
        click.option(
            "--dpi",
            type=click.IntRange(min=30),
            default=150,
            show_default=True,
            help="Resolution of PNG figures (vector formats ignore it).",
        ),
    )


def batch_size(
    default: int, what: str = "Examples per forward (and backward) pass; a memory knob only."
) -> Decorator:
    """--batch-size with the command's default."""
    return click.option("--batch-size", type=int, default=default, show_default=True, help=what)


def measure(split: bool = True) -> Decorator:
    """What every measuring command takes: data, examples, loss, device and output."""
    return compose(
        DATA,
        NORMALIZE,
        *([SPLIT] if split else []),
        SAMPLES,
        batch_size(256),
        SEED,
        LOSS,
        DEVICE,
        JSON,
        RESULT_OUT,
        QUIET,
    )
