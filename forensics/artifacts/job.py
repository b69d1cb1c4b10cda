"""PyTorch artifacts found in a job folder, read as data for `forensics analyze` and `scan`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from forensics.artifacts.flight import flight_record, load_dumps
from forensics.artifacts.memory import analyze_snapshot
from forensics.artifacts.restricted import load_plain
from forensics.errors import ForensicsError
from forensics.inputs.sources import Source
from forensics.model import FlightRecord, MemorySummary


def read_artifacts(sources: list[Source]) -> tuple[FlightRecord | None,
                                                   tuple[MemorySummary, ...], list[str]]:
    """The Flight Recorder record, the memory snapshots' summaries, and problems."""
    problems: list[str] = []
    flight = None
    dumps = [Path(s.path) for s in sources if s.content == "flight-dump" and s.path]
    if dumps:
        try:
            flight = flight_record(load_dumps(dumps))
        except ForensicsError as err:
            problems.append(str(err))
    memory = []
    for source in sources:
        if source.content != "memory-snapshot" or source.path is None:
            continue
        try:
            summary = analyze_snapshot(load_plain(source.path))
            memory.append(replace(summary, source=source.name))
        except ForensicsError as err:
            problems.append(str(err))
    return flight, tuple(memory), problems
