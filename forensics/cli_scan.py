"""`forensics scan`: many job folders into a Parquet dataset and a fleet summary."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from forensics.cli_common import (
    exists_as_folders,
    exit_codes,
    fail,
    limits_options,
    patterns_option,
    read_limits,
    warn,
    write,
)
from forensics.errors import ExitCode, ForensicsError


@click.command(epilog=exit_codes(
    ok="no job failed", failure="some job failed",
    usage="usage error (an unreachable --scheduler too)",
    input="a root could not be read; Ctrl-C (130) keeps the finished rows"))
@click.argument("roots", nargs=-1, required=True, type=click.Path(file_okay=False))
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
@limits_options
def scan(roots: tuple[str, ...], out: str, workers: int | None, scheduler: str | None,
         fmt: str | None, full: bool, pattern_dirs: tuple[str, ...], max_gib: float,
         max_ratio: float) -> None:
    """Analyze every job folder under ROOT (SLURM outputs, torchrun --log-dir runs, axolotl
    output folders, wandb runs) into a Parquet dataset, and summarize the fleet."""
    from forensics.fleet.run import ScanInterrupted, scan_fleet

    exists_as_folders(roots)
    try:
        text, failed, problems = scan_fleet(list(roots), Path(out), workers or os.cpu_count()
                                            or 1, scheduler, full, pattern_dirs,
                                            fmt or ("text" if sys.stdout.isatty() else "md"),
                                            show_progress=sys.stderr.isatty(),
                                            limits=read_limits(max_gib, max_ratio))
    except ScanInterrupted as err:
        warn(str(err))
        sys.exit(130)
    except ForensicsError as err:
        fail(err)
        return
    write(text)
    for problem in problems:
        warn(problem)
    sys.exit(int(ExitCode.FAILURE_FOUND if failed else ExitCode.OK))
