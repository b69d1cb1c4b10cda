"""`forensics checkpoint`, `memory` and `flight`: PyTorch artifacts read on their own."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from forensics.cli_common import fail
from forensics.errors import ExitCode, ForensicsError


@click.command()
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
    from forensics.report.artifacts import checkpoint_json, render_changes, render_checkpoint

    try:
        stats = list(tensor_stats(Path(first), device))
        changes = relative_changes(Path(first), Path(second)) if second else None
    except ForensicsError as err:
        fail(err)
        return
    if fmt == "json":
        click.echo(checkpoint_json(stats, changes), nl=False)
    else:
        click.echo(render_checkpoint(first, stats), nl=False)
        if changes is not None:
            click.echo("\n" + render_changes(first, second, changes), nl=False)
    bad = any(not s.finite for s in stats)
    sys.exit(int(ExitCode.FAILURE_FOUND if bad else ExitCode.OK))


@click.command()
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
        fail(err)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def flight(paths: tuple[str, ...]) -> None:
    """Read NCCL Flight Recorder dumps (one file per rank, or their folder): the first
    collective where ranks disagree or never arrived. Exit 1 when one is found."""
    from forensics.artifacts.flight import dump_files, flight_record, load_dumps
    from forensics.report.artifacts import render_flight

    try:
        record = flight_record(load_dumps(dump_files(paths)))
    except ForensicsError as err:
        fail(err)
        return
    click.echo(render_flight(record), nl=False)
    sys.exit(int(ExitCode.FAILURE_FOUND if record.mismatch else ExitCode.OK))
