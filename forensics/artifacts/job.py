"""PyTorch artifacts found in a job folder, read as data for `forensics analyze` and `scan`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from forensics.artifacts.flight import flight_record, read_dumps
from forensics.artifacts.memory import read_snapshot
from forensics.errors import ForensicsError
from forensics.inputs.sources import Source
from forensics.model import FlightRecord, MemorySummary


def read_artifacts(sources: list[Source]) -> tuple[FlightRecord | None,
                                                   tuple[MemorySummary, ...], list[str]]:
    """The Flight Recorder record of the readable dumps, the memory snapshots' summaries,
    and one problem line per artifact that could not be read."""
    dumps, problems = read_dumps([Path(s.path) for s in sources
                                  if s.content == "flight-dump" and s.path])
    flight = flight_record(dumps) if dumps else None
    memory = []
    for source in sources:
        if source.content != "memory-snapshot" or source.path is None:
            continue
        try:
            memory.append(replace(read_snapshot(source.path), source=source.name))
        except ForensicsError as err:
            problems.append(str(err))
    return flight, tuple(memory), problems
