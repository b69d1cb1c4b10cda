"""`forensics checkpoint`, `memory` and `flight`: PyTorch artifacts read on their own."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from forensics.cli_common import existing, exit_codes, fail, warn, write
from forensics.errors import ExitCode, ForensicsError, InputError
from forensics.redact import redact
from forensics.text import scrub


def _finish(problems: list[str], failed: bool) -> None:
    """One stderr line per input that could not be read, then the exit code: 3 when there
    was one, else 1 when a failure was found."""
    for problem in problems:
        warn(problem)
    if problems:
        sys.exit(int(ExitCode.INPUT))
    sys.exit(int(ExitCode.FAILURE_FOUND if failed else ExitCode.OK))


@click.command(epilog=exit_codes(
    ok="every tensor is finite", failure="a tensor holds NaN/Inf",
    input="a file could not be read (the others are still reported)"))
@click.argument("first")
@click.argument("second", required=False)
@click.option("--device", default="cpu", show_default=True,
              help="Where to reduce tensors (cuda needs PyTorch and a GPU).")
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md",
              show_default=True)
def checkpoint(first: str, second: str | None, device: str, fmt: str) -> None:
    """Check a checkpoint (safetensors, pytorch_model*.bin, .pt, a sharded index or a
    folder) for NaN/Inf, tensor by tensor in model order; with SECOND, which tensors changed
    most between the two. Exit 1 when a tensor holds NaN/Inf, 3 when a file is unreadable
    (the others are still reported)."""
    from forensics.artifacts.checkpoint import read_checkpoint, relative_changes
    from forensics.report.artifacts import checkpoint_json, render_changes, render_checkpoint

    existing([first, *([second] if second else [])])

    try:
        stats, problems = read_checkpoint(Path(first), device)
    except ForensicsError as err:
        fail(err)
        return
    changes = None
    if second:
        try:
            changes = relative_changes(Path(first), Path(second))
        except ForensicsError as err:
            problems.append(str(err))
    stats, changes = scrub(redact(stats)), scrub(redact(changes))
    if fmt == "json":
        write(checkpoint_json(stats, changes))
    elif stats or not problems:
        text = render_checkpoint(first, stats)
        if changes is not None:
            text += "\n" + render_changes(first, second, changes)
        write(text)
    _finish(problems, any(not s.finite for s in stats))


@click.command(epilog=exit_codes(ok="read", input="the snapshot could not be read"))
@click.argument("snapshot")
def memory(snapshot: str) -> None:
    """Read a CUDA allocator snapshot (torch.cuda.memory._dump_snapshot): reserved vs
    allocated, fragmentation, the largest live allocations by Python stack, the failed
    request. Plain-data unpickling only; PyTorch is not needed."""
    from forensics.artifacts.memory import read_snapshot
    from forensics.report.artifacts import render_memory

    existing([snapshot])

    try:
        write(render_memory(scrub(redact(read_snapshot(snapshot)))))
    except ForensicsError as err:
        fail(err)


@click.command(epilog=exit_codes(
    ok="the ranks agree", failure="a collective where ranks disagree or never arrived",
    input="no dump, or a dump could not be read (the others are still compared)"))
@click.argument("paths", nargs=-1, required=True)
def flight(paths: tuple[str, ...]) -> None:
    """Read NCCL Flight Recorder dumps (one file per rank, or their folder): the first
    collective where ranks disagree or never arrived. Exit 1 when one is found, 3 when a
    dump is unreadable (the others are still compared)."""
    from forensics.artifacts.flight import dump_files, flight_record, read_dumps
    from forensics.report.artifacts import render_flight

    existing(paths)

    files = dump_files(paths)
    if not files:
        fail(InputError(f"{', '.join(paths)}: no Flight Recorder dumps (files named like "
                        "nccl_trace_rank_0)"))
        return
    dumps, problems = read_dumps(files)
    record = flight_record(dumps) if dumps else None
    if record is not None:
        write(render_flight(scrub(redact(record))))
    _finish(problems, record is not None and record.mismatch is not None)
