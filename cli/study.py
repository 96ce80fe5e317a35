"""`landscape study` and `landscape report`: the batch-size comparison study, end to end."""
from __future__ import annotations

import click

from landscape.study import presets

from .options import DEVICE, JSON, QUIET, writable_folder


@click.command("study")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", default=None, help=f"A bundled config instead of a file: {', '.join(presets.names())}.")
@click.option("--data", "data_spec", default=None, help="Override the config's dataset.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, callback=writable_folder,
              help="Checkpoints and study.h5 go here (default runs/<name>).")
@click.option("--report-dir", type=click.Path(file_okay=False), default=None, callback=writable_folder,
              help="Where report.md and figures go (default <workdir>/report).")
@DEVICE
@QUIET
@JSON
def study_cmd(config, preset, data_spec, workdir, report_dir, device, quiet, as_json):
    """Train, fuse, fine-tune and measure as in the seed study; cached and resumable; ends with the report."""
    from pathlib import Path

    import fusion
    from landscape import dist
    from landscape.errors import LandscapeError
    from landscape.study.config import load_config
    from landscape.study.report import write_report
    from landscape.study.run import StudyRun

    from .session import Session

    if config and preset:
        raise LandscapeError("give a CONFIG file or --preset, not both")
    session = Session(device, quiet, as_json)
    cfg = load_config(config or presets.path(preset or "quick"), data=data_spec)
    workdir = Path(workdir or Path("runs") / cfg.name)
    run = StudyRun(cfg, workdir, fusion, session.device)
    run.run()
    report = None
    if dist.launched_rank() == 0:
        report = write_report(run.store, report_dir or workdir / "report")
    session.emit({"store": str(run.store), "report": str(report)}, f"store {run.store}\nreport {report}")


@click.command("report")
@click.argument("store", type=click.Path(dir_okay=False))
@click.option("--out-dir", type=click.Path(file_okay=False), default=None, callback=writable_folder,
              help="Where report.md and figures go (default: beside the store, in report/).")
def report_cmd(store, out_dir):
    """Write the Markdown report (tables and figures) of a study from its HDF5 store alone."""
    from pathlib import Path

    from landscape.study.report import write_report

    report = write_report(store, out_dir or Path(store).parent / "report")
    click.echo(str(report))


COMMANDS = [study_cmd, report_cmd]
