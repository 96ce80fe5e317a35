"""`landscape study` and `landscape report`: the batch-size comparison study and the OT-fusion
experiments, end to end."""

from __future__ import annotations

import click

from landscape.study import presets

from .options import DEVICE, JSON, QUIET, figures, writable_folder


@click.command("study")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--preset",
    default=None,
    help=f"A bundled config instead of a file: {', '.join(presets.names())}.",
)
@click.option("--data", "data_spec", default=None, help="Override the config's dataset.")
@click.option(
    "--replicates",
    type=click.IntRange(min=1),
    default=None,
    help="Override the config's [study] replicates (replicate r shifts every seed by 1000·r).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    callback=writable_folder,
    help="Checkpoints and study.h5 go here (default runs/<name>).",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False),
    default=None,
    callback=writable_folder,
    help="Where report.md and figures go (default <workdir>/report).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the job list and its work (examples trained, forward passes, Hessian-vector "
    "products, what is cached already); run nothing.",
)
@click.option(
    "--calibrate",
    is_flag=True,
    help="With --dry-run: time a training step, a forward pass and an HVP of the model on --device "
    "and estimate how long the jobs left take.",
)
@figures("png,pdf")
@DEVICE
@QUIET
@JSON
def study_cmd(
    config,
    preset,
    data_spec,
    replicates,
    workdir,
    report_dir,
    dry_run,
    calibrate,
    formats,
    dpi,
    device,
    quiet,
    as_json,
):
    """Train, fuse, fine-tune and measure as the config's experiments say (the batch-size study, or
    the OT-fusion paper's skill transfer, widths, ensemble and ablations); cached and resumable;
    ends with the report."""
    from dataclasses import replace
    from pathlib import Path

    import fusion
    from landscape import dist
    from landscape.data.datasets import data_shape
    from landscape.errors import LandscapeError
    from landscape.plots.figure import parse_formats
    from landscape.study.config import load_config
    from landscape.study.execute import StudyRunner, todo
    from landscape.study.otfusion.config import experiments_of, read_toml
    from landscape.study.plan import plan_study
    from landscape.study.report import write_report

    from .session import Session

    if bool(config) == bool(preset):
        raise LandscapeError(
            "give a CONFIG file or --preset NAME (e.g. --preset quick), not both"
            if config
            else "give a CONFIG file or --preset NAME, e.g. --preset quick"
        )
    if calibrate and not dry_run:
        raise LandscapeError("--calibrate goes with --dry-run")
    formats = parse_formats(formats)
    session = Session(device, quiet, as_json)
    path = config or presets.path(preset)
    if experiments_of(read_toml(path)) != ("batch-size",):
        _ot_study(
            session,
            path,
            data_spec,
            replicates,
            workdir,
            report_dir,
            dry_run,
            calibrate,
            formats,
            dpi,
        )
        return
    cfg = load_config(path, data=data_spec)
    if cfg.fusion.method not in fusion.ALIGNERS:
        raise LandscapeError(
            f"config [fusion] method must be one of {', '.join(fusion.ALIGNERS)}, got "
            f"{cfg.fusion.method!r}"
        )
    if replicates is not None:
        cfg = replace(cfg, replicates=replicates)
    workdir = Path(workdir or Path("runs") / cfg.name)
    planned = plan_study(cfg, workdir, data_shape(cfg.data))
    if dry_run:
        _dry_run(session, todo(planned), cfg.arch, planned.arch_kwargs, calibrate)
        return
    StudyRunner(planned, fusion, session.device).run()
    report = None
    if dist.launched_rank() == 0:
        report = write_report(planned.store, report_dir or workdir / "report", formats, dpi)
    session.emit(
        {"store": str(planned.store), "report": str(report)},
        f"store {planned.store}\nreport {report}",
    )


def _ot_study(
    session, path, data_spec, replicates, workdir, report_dir, dry_run, calibrate, formats, dpi
) -> None:
    """An OT-fusion study (skill transfer, widths, ensemble, ablation): plan, then dry run or run
    and report."""
    from dataclasses import replace
    from pathlib import Path

    import fusion
    from landscape.study.otfusion.config import load_ot_config
    from landscape.study.otfusion.execute import Runner, todo
    from landscape.study.otfusion.plan import plan
    from landscape.study.otfusion.report import write_ot_report

    cfg = load_ot_config(path, data=data_spec)
    if replicates is not None:
        cfg = replace(cfg, study=replace(cfg.study, replicates=replicates))
    workdir = Path(workdir or Path("runs") / cfg.name)
    planned = plan(cfg, workdir)
    if dry_run:
        _dry_run(session, todo(planned), cfg.study.arch, planned.arch_kwargs, calibrate)
        return
    Runner(planned, fusion, session.device).run()
    report = write_ot_report(planned.store, report_dir or workdir / "report", formats, dpi)
    session.emit(
        {"store": str(planned.store), "report": str(report)},
        f"store {planned.store}\nreport {report}",
    )


def _dry_run(session, stages, arch: str, arch_kwargs: dict, calibrate: bool) -> None:
    """Print the job list, its work and (calibrated) its time; nothing is written."""
    from landscape.study.cost import calibrate as measure_rates
    from landscape.study.cost import plan_text, seconds, work

    rates = None
    if calibrate:
        keys = [key for _, _, todo in stages for key in work(todo)]
        rates = measure_rates(arch, arch_kwargs, keys, session.device)
    result = {
        "stages": [
            {
                "stage": stage,
                "jobs": len(jobs),
                "todo": len(todo),
                "work": [
                    {"unit": u, "batch_size": b, "examples": n} for (u, b), n in work(todo).items()
                ],
                **({"seconds": seconds(work(todo), rates)} if rates else {}),
            }
            for stage, jobs, todo in stages
        ],
        "device": str(session.device),
    }
    session.emit(result, plan_text(stages, rates, str(session.device)))


@click.command("report")
@click.argument("store", type=click.Path(dir_okay=False))
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default=None,
    callback=writable_folder,
    help="Where report.md and figures go (default: beside the store, in report/).",
)
@figures("png,pdf")
@QUIET
def report_cmd(store, out_dir, formats, dpi, quiet):
    """Write the Markdown report (tables and figures) of a study from its HDF5 store alone."""
    from pathlib import Path

    from landscape import progress
    from landscape.io.store import open_store
    from landscape.plots.figure import parse_formats
    from landscape.study.otfusion.report import write_ot_report
    from landscape.study.otfusion.view import is_ot_study
    from landscape.study.report import write_report

    progress.set_quiet(quiet)
    with open_store(store) as reader:
        writer = write_ot_report if is_ot_study(reader) else write_report
    report = writer(store, out_dir or Path(store).parent / "report", parse_formats(formats), dpi)
    click.echo(str(report))


COMMANDS = [study_cmd, report_cmd]
