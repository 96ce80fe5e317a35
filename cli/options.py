"""Every option the commands share, declared once (click only: importing this loads no torch)."""
from __future__ import annotations

from collections.abc import Callable

import click

from landscape.choices import BATCHING, FIGURE_FORMATS, LOSSES, PARALLEL, SPLITS

Decorator = Callable[[Callable], Callable]


SUFFIXES = {"checkpoint": (".pt", ".pth"), "result": (".h5", ".hdf5")}


def _writable(kind: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """A callback refusing, at once and before any work, an output file of `kind` that could not be written:
    a suffix that names another format, a folder that does not exist (nothing is created for it), a file in
    the way of its folder, no permission."""
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        import os

        from landscape.errors import LandscapeError
        from landscape.io.atomic import check_writable

        if value is None:
            return value
        suffix = os.path.splitext(value)[1].lower()
        if suffix not in SUFFIXES[kind]:
            raise LandscapeError(f"--out {value}: a {kind} is written as {' or '.join(SUFFIXES[kind])}, "
                                 f"not {suffix or 'a file without suffix'}")
        check_writable(value)
        folder = os.path.dirname(os.path.abspath(os.path.expanduser(value)))
        if not os.path.isdir(folder):
            raise LandscapeError(f"--out {value}: the folder {folder} does not exist (create it first)")
        return value
    return check


def writable_folder(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The check of `_writable` for an output folder (created later when missing)."""
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


DATA = click.option("--data", "data_spec", default=None,
                    help="digits, a .npz file, or mnist:DIR / cifar10:DIR / cifar100:DIR [the data the checkpoints "
                         "record; digits for a new model].")
NORMALIZE = click.option("--normalize", default="auto", show_default=True,
                         help="Input standardisation: auto (the checkpoint's own, else the training split's "
                              "per-channel statistics), none, MEAN,STD or MEAN,STD;MEAN,STD;... per channel.")
DEVICE = click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
SEED = click.option("--seed", type=int, default=0, show_default=True,
                    help="Seed of the example subsample and of every random vector or direction.")
SAMPLES = click.option("--samples", type=int, default=None, help="Use N examples drawn with --seed [all].")
SPLIT = click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True,
                     help="The examples measured.")
LOSS = click.option("--loss", type=click.Choice(LOSSES), default="ce", show_default=True,
                    help="ce: cross-entropy on logits; nll: for models that end in log_softmax.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout, nothing else.")
QUIET = click.option("--quiet", is_flag=True, help="No progress bars or progress lines.")
RESULT_OUT = click.option("--out", type=click.Path(dir_okay=False), default=None, callback=_writable("result"),
                          help="Store the result in this HDF5 file.")
CHECKPOINT_OUT = click.option("--out", type=click.Path(dir_okay=False), required=True,
                              callback=_writable("checkpoint"),
                              help="Checkpoint to write (.pt).")
NAME = click.option("--name", default=None, help="The NAME of the stored group [the checkpoint's file stem].")
PARALLEL_OPTION = click.option("--parallel", type=click.Choice(PARALLEL), default="data", show_default=True,
                               help="Under torchrun: shard the examples, or give each rank a block of points.")
BATCHING_OPTION = click.option("--batching", type=click.Choice(BATCHING), default="auto", show_default=True,
                               help="Batch grid points with torch.func.vmap, evaluate them one by one (loop), "
                                    "or choose by device (auto).")


def figures(default_formats: str) -> Decorator:
    """--format (comma-separated figure formats) and --dpi (of raster formats), for commands that draw."""
    return compose(
        click.option("--format", "formats", default=default_formats, show_default=True,
                     help=f"Figure formats, comma-separated: {', '.join(FIGURE_FORMATS)}."),
        click.option("--dpi", type=click.IntRange(min=30), default=150, show_default=True,
                     help="Resolution of PNG figures (vector formats ignore it)."))


def batch_size(default: int, what: str = "Examples per forward (and backward) pass; a memory knob only.") -> Decorator:
    """--batch-size with the command's default."""
    return click.option("--batch-size", type=int, default=default, show_default=True, help=what)


def measure(split: bool = True) -> Decorator:
    """What every measuring command takes: data, examples, loss, device and output."""
    return compose(DATA, NORMALIZE, *([SPLIT] if split else []), SAMPLES, batch_size(256), SEED, LOSS, DEVICE,
                   JSON, RESULT_OUT, QUIET)
