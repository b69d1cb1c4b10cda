"""The `forensics` command: click only. Each command calls one stage and maps its result and
errors to an exit code."""

from __future__ import annotations

import os
import sys

import click

from forensics.cli_artifacts import checkpoint, flight, memory
from forensics.cli_common import (
    check_output,
    exit_codes,
    fail,
    limits_options,
    patterns_option,
    read_limits,
    user_catalog,
    warn,
    write,
    write_file,
)
from forensics.cli_patterns import patterns
from forensics.cli_scan import scan
from forensics.errors import ExitCode, ForensicsError
from forensics.model import Verdict
from forensics.version import __version__

ANALYZE_EXIT_CODES = exit_codes(
    ok="the run completed, or nothing in it died",
    failure="the run failed or was interrupted (--exit-zero: 0)",
    input="an input could not be read (fully), or a catalog did not load")
TIMELINE_EXIT_CODES = exit_codes(
    ok="exported", input="no metrics in the inputs, or an input could not be read (fully)")


@click.group(epilog="Each command's --help lists its exit codes.",
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forensics")
def cli() -> None:
    """Post-mortem analyzer for ML training runs: what killed the run, what it was doing,
    and what to change."""


@cli.command(epilog=ANALYZE_EXIT_CODES)
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["md", "json", "text"]),
              help="Report format (default: text on a terminal, md when piped).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the report to FILE instead of stdout.")
@patterns_option
@click.option("--no-redact", is_flag=True, help="Keep tokens, keys and passwords in the report.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when a failure is diagnosed.")
@click.option("--title", "title_only", is_flag=True,
              help="Print only the report's first line, plain: an issue title "
                   "(`gh issue create --title`).")
@click.option("--engine", type=click.Choice(["auto", "hyperscan", "python"]), default="auto",
              show_default=True, help="Keyword scanner to use.")
@limits_options
def analyze(paths: tuple[str, ...], fmt: str | None, output: str | None,
            pattern_dirs: tuple[str, ...], no_redact: bool, exit_zero: bool, title_only: bool,
            engine: str, max_gib: float, max_ratio: float) -> None:
    """Diagnose one job from its logs: PATH is a log file, a compressed log, a job folder or
    - for stdin. Several paths are one job (the ranks' files of one run)."""
    from forensics.inputs.sources import discover
    from forensics.pipeline import Analyzer
    from forensics.report import render, report_title

    if title_only and fmt is not None:
        raise click.UsageError("--title prints the title alone; leave out --format")
    check_output(output)
    catalog = user_catalog(pattern_dirs)
    try:
        sources, problems = discover(paths, read_limits(max_gib, max_ratio))
        check_output(output, (source.path for source in sources))
        analysis = Analyzer(catalog, engine).analyze_sources(sources, problems, not no_redact)
    except ForensicsError as err:
        fail(err)
        return
    on_terminal = output is None and sys.stdout.isatty()
    fmt = fmt or ("text" if on_terminal else "md")
    width = os.get_terminal_size().columns if on_terminal else 120
    report = (report_title(analysis) + "\n" if title_only
              else render(analysis, fmt, width, color=on_terminal))
    write(report, output, keep_secrets=no_redact)
    problems = [p for source in analysis.sources for p in source.problems]
    for problem in problems:
        warn(problem)
    if problems:
        sys.exit(int(ExitCode.INPUT))
    finished = analysis.verdict not in (Verdict.FAILED, Verdict.INTERRUPTED)
    sys.exit(int(ExitCode.OK if finished or exit_zero else ExitCode.FAILURE_FOUND))


@cli.command(epilog=TIMELINE_EXIT_CODES)
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "md"]), default="csv",
              show_default=True, help="Export format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to FILE (required for parquet).")
@limits_options
def timeline(paths: tuple[str, ...], fmt: str, output: str | None, max_gib: float,
             max_ratio: float) -> None:
    """Export the run's metrics (one row per logged step, train and eval rows marked) from
    logs, job folders, trainer_state.json or W&B run folders."""
    from forensics.inputs.sources import discover
    from forensics.pipeline import export_timeline

    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet needs -o FILE")
    check_output(output)
    try:
        sources, problems = discover(paths, read_limits(max_gib, max_ratio))
        check_output(output, (source.path for source in sources))
        exported, unread = export_timeline(sources, fmt)
    except ForensicsError as err:
        fail(err)
        return
    problems += unread
    for problem in problems:
        warn(problem)
    if exported is None:
        warn("no metrics found in these inputs")
        sys.exit(int(ExitCode.INPUT))
    if isinstance(exported, bytes):
        write_file(exported, output)  # type: ignore[arg-type]
    else:
        write(exported, output)
    sys.exit(int(ExitCode.INPUT if problems else ExitCode.OK))


cli.add_command(scan)
cli.add_command(checkpoint)
cli.add_command(memory)
cli.add_command(flight)
cli.add_command(patterns)
