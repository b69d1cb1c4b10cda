"""The `forensics` command: click only. Each command calls one stage and maps its result and
errors to an exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from forensics.cli_artifacts import checkpoint, flight, memory
from forensics.cli_common import fail, patterns_option, user_catalog, write
from forensics.cli_patterns import patterns
from forensics.errors import ExitCode, ForensicsError
from forensics.version import __version__

EXIT_CODES_HELP = """\b
Exit codes:
  0  no failure found
  1  a failure was diagnosed (known or unknown cause); --exit-zero turns it into 0
  2  usage error
  3  an input could not be read (fully), or a catalog did not load
"""
@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forensics")
def cli() -> None:
    """Post-mortem analyzer for ML training runs: what killed the run, what it was doing,
    and what to change."""


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["md", "json", "text"]),
              help="Report format (default: text on a terminal, md when piped).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the report to FILE instead of stdout.")
@patterns_option
@click.option("--no-redact", is_flag=True, help="Keep tokens, keys and passwords in the report.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when a failure is diagnosed.")
@click.option("--engine", type=click.Choice(["auto", "hyperscan", "python"]), default="auto",
              show_default=True, help="Keyword scanner to use.")
def analyze(paths: tuple[str, ...], fmt: str | None, output: str | None,
            pattern_dirs: tuple[str, ...], no_redact: bool, exit_zero: bool,
            engine: str) -> None:
    """Diagnose one job from its logs: PATH is a log file, a compressed log, a job folder or
    - for stdin. Several paths are one job (the ranks' files of one run)."""
    from forensics.inputs.sources import discover
    from forensics.pipeline import Analyzer
    from forensics.report import render

    catalog = user_catalog(pattern_dirs)
    try:
        sources, problems = discover(paths)
        analysis = Analyzer(catalog, engine).analyze_sources(sources, problems, not no_redact)
    except ForensicsError as err:
        fail(err)
        return
    on_terminal = output is None and sys.stdout.isatty()
    fmt = fmt or ("text" if on_terminal else "md")
    width = os.get_terminal_size().columns if on_terminal else 120
    write(render(analysis, fmt, width, color=on_terminal), output)
    problems = [p for source in analysis.sources for p in source.problems]
    for problem in problems:
        click.echo(f"forensics: {problem}", err=True)
    if problems:
        sys.exit(int(ExitCode.INPUT))
    sys.exit(int(ExitCode.FAILURE_FOUND if analysis.failed and not exit_zero else ExitCode.OK))


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "md"]), default="csv",
              show_default=True, help="Export format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to FILE (required for parquet).")
def timeline(paths: tuple[str, ...], fmt: str, output: str | None) -> None:
    """Export the run's metrics (one row per logged step, train and eval rows marked) from
    logs, job folders, trainer_state.json or W&B run folders."""
    from forensics.inputs.sources import discover
    from forensics.pipeline import export_timeline

    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet needs -o FILE")
    try:
        sources, problems = discover(paths)
        text = export_timeline(sources, fmt, output)
    except ForensicsError as err:
        fail(err)
        return
    for problem in problems:
        click.echo(f"forensics: {problem}", err=True)
    if text is None:
        click.echo("forensics: no metrics found in these inputs", err=True)
        sys.exit(int(ExitCode.INPUT))
    if output is None:
        click.echo(text, nl=False)
    sys.exit(int(ExitCode.INPUT if problems else ExitCode.OK))


@cli.command(epilog="""\b
Exit codes: 0 no job failed; 1 some job failed; 2 usage error; 3 a root could not be read;
130 interrupted (the finished rows are kept).""")
@click.argument("roots", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", default="forensics-scan", show_default=True,
              type=click.Path(file_okay=False),
              help="Folder for jobs.parquet and findings.parquet.")
@click.option("--jobs", "workers", type=click.IntRange(1), default=None,
              help="Worker processes (default: the machine's cores).")
@click.option("--scheduler", help="Address of a Dask distributed scheduler to run on.")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "text"]),
              help="Summary format (default: text on a terminal, md when piped).")
@click.option("--full", is_flag=True, help="Re-analyze every job, ignoring the cache.")
@patterns_option
def scan(roots: tuple[str, ...], out: str, workers: int | None, scheduler: str | None,
         fmt: str | None, full: bool, pattern_dirs: tuple[str, ...]) -> None:
    """Analyze every job folder under ROOT (SLURM outputs, torchrun --log-dir runs, axolotl
    output folders, wandb runs) into a Parquet dataset, and summarize the fleet."""
    from forensics.fleet.run import ScanInterrupted, scan_fleet

    try:
        text, failed, problems = scan_fleet(list(roots), Path(out), workers or os.cpu_count()
                                            or 1, scheduler, full, pattern_dirs,
                                            fmt or ("text" if sys.stdout.isatty() else "md"),
                                            show_progress=sys.stderr.isatty())
    except ScanInterrupted as err:
        click.echo(f"forensics: {err}", err=True)
        sys.exit(130)
    except ForensicsError as err:
        fail(err)
        return
    click.echo(text, nl=False)
    for problem in problems:
        click.echo(f"forensics: {problem}", err=True)
    sys.exit(int(ExitCode.FAILURE_FOUND if failed else ExitCode.OK))


cli.add_command(checkpoint)
cli.add_command(memory)
cli.add_command(flight)
cli.add_command(patterns)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="forensics")
