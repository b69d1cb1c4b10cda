"""The `forensics` command: a thin click layer over the pipeline."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from forensics import __version__
from forensics.errors import CatalogError, ExitCode, ForensicsError

EXIT_CODES_HELP = """\b
Exit codes:
  0  no failure found
  1  a failure was diagnosed (known or unknown cause); --exit-zero turns it into 0
  2  usage error
  3  an input could not be read (fully), or a catalog did not load
"""


def _fail(err: ForensicsError) -> None:
    click.echo(f"forensics: error: {err}", err=True)
    if isinstance(err, CatalogError):
        for problem in err.problems:
            click.echo(problem, err=True)
    sys.exit(int(err.exit_code))


@click.group(epilog=EXIT_CODES_HELP)
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
@click.option("--patterns", "pattern_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Extra signature folder (repeatable); also FORENSICS_PATTERNS.")
@click.option("--no-redact", is_flag=True, help="Keep tokens, keys and passwords in the report.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when a failure is diagnosed.")
@click.option("--engine", type=click.Choice(["auto", "hyperscan", "python"]), default="auto",
              show_default=True, help="Keyword scanner to use.")
def analyze(paths: tuple[str, ...], fmt: str | None, output: str | None,
            pattern_dirs: tuple[str, ...], no_redact: bool, exit_zero: bool,
            engine: str) -> None:
    """Diagnose one job from its logs: PATH is a log file, a compressed log, a job folder or
    - for stdin. Several paths are one job (the ranks' files of one run)."""
    from forensics.catalog import load_catalog, user_dirs
    from forensics.inputs.sources import discover
    from forensics.pipeline import Analyzer

    try:
        catalog = load_catalog(*user_dirs(pattern_dirs))
        sources, problems = discover(paths)
        analysis = Analyzer(catalog, engine).analyze_sources(sources, problems,
                                                             redact_secrets=not no_redact)
    except ForensicsError as err:
        _fail(err)
        return
    _emit(analysis, fmt, output)
    problems = [p for source in analysis.sources for p in source.problems]
    for problem in problems:
        click.echo(f"forensics: {problem}", err=True)
    if problems:
        sys.exit(int(ExitCode.INPUT))
    if analysis.failed and not exit_zero:
        sys.exit(int(ExitCode.FAILURE_FOUND))
    sys.exit(int(ExitCode.OK))


def _emit(analysis, fmt: str | None, output: str | None) -> None:
    if fmt is None:
        fmt = "text" if output is None and sys.stdout.isatty() else "md"
    if fmt == "text":
        import io

        from rich.console import Console

        from forensics.report.terminal import render_terminal

        if output is None:
            render_terminal(analysis, Console())
            return
        buffer = io.StringIO()
        render_terminal(analysis, Console(file=buffer, width=120, color_system=None))
        text = buffer.getvalue()
    elif fmt == "json":
        from forensics.report.json import render_json

        text = render_json(analysis)
    else:
        from forensics.report.markdown import render_markdown

        text = render_markdown(analysis)
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")


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
        click.echo("forensics: error: --format parquet needs -o FILE", err=True)
        sys.exit(int(ExitCode.USAGE))
    try:
        sources, problems = discover(paths)
        text = export_timeline(sources, fmt, output)
    except ForensicsError as err:
        _fail(err)
        return
    for problem in problems:
        click.echo(f"forensics: {problem}", err=True)
    if text is None:
        click.echo("forensics: no metrics found in these inputs", err=True)
        sys.exit(int(ExitCode.INPUT))
    if output is None:
        click.echo(text, nl=False)
    sys.exit(int(ExitCode.INPUT) if problems else int(ExitCode.OK))


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
@click.option("--patterns", "pattern_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Extra signature folder (repeatable).")
def scan(roots: tuple[str, ...], out: str, workers: int | None, scheduler: str | None,
         fmt: str | None, full: bool, pattern_dirs: tuple[str, ...]) -> None:
    """Analyze every job folder under ROOT (SLURM outputs, torchrun --log-dir runs, axolotl
    output folders, wandb runs) into a Parquet dataset, and summarize the fleet."""
    import pyarrow.parquet as pq

    from forensics.fleet.run import JOBS_FILE, ScanInterrupted, run_scan
    from forensics.fleet.summary import render_markdown, summarize

    workers = workers or os.cpu_count() or 1
    on_terminal = sys.stderr.isatty()
    try:
        if on_terminal:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("scanning jobs", total=None)
                report = run_scan(list(roots), Path(out), workers, scheduler, full,
                                  pattern_dirs, lambda done, total: bar.update(
                                      task, completed=done, total=total))
        else:
            report = run_scan(list(roots), Path(out), workers, scheduler, full, pattern_dirs)
    except ScanInterrupted as err:
        click.echo(f"forensics: {err}", err=True)
        sys.exit(130)
    except ForensicsError as err:
        _fail(err)
        return
    rows = pq.read_table(Path(out) / JOBS_FILE).to_pylist()
    summary = summarize(rows)
    if fmt is None:
        fmt = "text" if sys.stdout.isatty() else "md"
    if fmt == "json":
        click.echo(json.dumps({**summary.to_dict(), "analyzed": report.analyzed,
                               "reused": report.reused, "out": out}, indent=2))
    else:
        text = render_markdown(summary, report.analyzed, report.reused, out)
        if fmt == "text":
            from rich.console import Console
            from rich.markdown import Markdown

            Console().print(Markdown(text))
        else:
            click.echo(text, nl=False)
    for problem in report.problems:
        click.echo(f"forensics: {problem}", err=True)
    sys.exit(int(ExitCode.FAILURE_FOUND) if summary.verdicts.get("failed") else int(ExitCode.OK))


@cli.command()
@click.argument("first", type=click.Path(exists=True))
@click.argument("second", required=False, type=click.Path(exists=True))
@click.option("--device", default="cpu", show_default=True,
              help="Where to reduce tensors (cuda needs PyTorch and a GPU).")
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md",
              show_default=True)
def checkpoint(first: str, second: str | None, device: str, fmt: str) -> None:
    """Check a checkpoint (safetensors, pytorch_model*.bin, .pt, a sharded index or a
    folder) for NaN/Inf, tensor by tensor in model order; with SECOND, which tensors changed
    most between the two. Exit 1 when a tensor holds NaN/Inf."""
    from forensics.artifacts.checkpoint import relative_changes, tensor_stats
    from forensics.report.artifacts import render_changes, render_checkpoint

    try:
        stats = list(tensor_stats(Path(first), device))
        changes = relative_changes(Path(first), Path(second)) if second else None
    except ForensicsError as err:
        _fail(err)
        return
    if fmt == "json":
        click.echo(json.dumps({
            "tensors": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "nan": s.nan,
                         "inf": s.inf, "min": _finite(s.minimum), "max": _finite(s.maximum),
                         "absmax": s.absmax, "norm": s.norm} for s in stats],
            "changes": None if changes is None else [
                {"name": n, "relative_change": _finite(c)} for n, c in changes]}, indent=2))
    else:
        click.echo(render_checkpoint(first, stats), nl=False)
        if changes is not None:
            click.echo("\n" + render_changes(first, second, changes), nl=False)
    bad = any(not s.finite for s in stats)
    sys.exit(int(ExitCode.FAILURE_FOUND) if bad else int(ExitCode.OK))


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


@cli.command()
@click.argument("snapshot", type=click.Path(exists=True, dir_okay=False))
def memory(snapshot: str) -> None:
    """Read a CUDA allocator snapshot (torch.cuda.memory._dump_snapshot): reserved vs
    allocated, fragmentation, the largest live allocations by Python stack, the failed
    request. Plain-data unpickling only; PyTorch is not needed."""
    from forensics.artifacts.memory import analyze_snapshot
    from forensics.artifacts.restricted import load_plain
    from forensics.report.artifacts import render_memory

    try:
        click.echo(render_memory(analyze_snapshot(load_plain(snapshot))), nl=False)
    except ForensicsError as err:
        _fail(err)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def flight(paths: tuple[str, ...]) -> None:
    """Read NCCL Flight Recorder dumps (one file per rank, or their folder): the first
    collective where ranks disagree or never arrived. Exit 1 when one is found."""
    from forensics.artifacts.flight import flight_record, load_dumps, rank_of
    from forensics.report.artifacts import render_flight

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        files += sorted(p for p in path.iterdir() if p.is_file() and rank_of(p) is not None) \
            if path.is_dir() else [path]
    try:
        dumps = load_dumps(files)
    except ForensicsError as err:
        _fail(err)
        return
    record = flight_record(dumps)
    click.echo(render_flight(record), nl=False)
    sys.exit(int(ExitCode.FAILURE_FOUND) if record.mismatch else int(ExitCode.OK))


@cli.group()
def patterns() -> None:
    """List, show and lint the signature catalog."""


_patterns_option = click.option("--patterns", "pattern_dirs", multiple=True,
                                type=click.Path(file_okay=False),
                                help="Extra signature folder (repeatable).")


def _catalog(pattern_dirs: tuple[str, ...]):
    from forensics.catalog import load_catalog, user_dirs

    try:
        return load_catalog(*user_dirs(pattern_dirs))
    except ForensicsError as err:
        _fail(err)


@patterns.command("list")
@_patterns_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def patterns_list(pattern_dirs: tuple[str, ...], fmt: str) -> None:
    """List every signature."""
    catalog = _catalog(pattern_dirs)
    if fmt == "json":
        rows = [{"id": s.id, "title": s.title, "category": s.category, "severity": s.severity,
                 "priority": s.priority, "symptom_of": list(s.symptom_of), "path": str(s.path)}
                for s in catalog.signatures]
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False)
    for column in ("id", "category", "severity", "priority", "title"):
        table.add_column(column)
    for s in catalog.signatures:
        table.add_row(s.id, s.category, s.severity, str(s.priority), Text(s.title))
    console = Console()
    console.print(table)
    console.print(f"{len(catalog.signatures)} signatures")


@patterns.command("show")
@click.argument("signature_id")
@_patterns_option
def patterns_show(signature_id: str, pattern_dirs: tuple[str, ...]) -> None:
    """Show one signature's documentation: cause, fix, examples."""
    catalog = _catalog(pattern_dirs)
    try:
        signature = catalog.get(signature_id)
    except KeyError:
        click.echo(f"forensics: error: no signature {signature_id!r} "
                   "(see `forensics patterns list`)", err=True)
        sys.exit(int(ExitCode.USAGE))
    from rich.console import Console
    from rich.markdown import Markdown

    from forensics.report.docs import signature_markdown

    Console().print(Markdown(signature_markdown(signature)))


@patterns.command("check")
@_patterns_option
def patterns_check(pattern_dirs: tuple[str, ...]) -> None:
    """Lint the catalog; prints `path: field: reason` lines and exits 3 on any problem."""
    from forensics.lint import check_catalog

    catalog = _catalog(pattern_dirs)
    problems = check_catalog(catalog)
    for problem in problems:
        click.echo(problem)
    examples = sum(len(s.examples) + len(s.counterexamples) for s in catalog.signatures)
    click.echo(f"{len(catalog.signatures)} signatures, {examples} examples checked, "
               f"{len(problems)} problem(s)")
    sys.exit(int(ExitCode.INPUT) if problems else int(ExitCode.OK))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="forensics")
