"""PyTorch artifacts found in a job folder, read for `forensics analyze` and `scan`."""

from __future__ import annotations

from pathlib import Path

from forensics.artifacts.flight import Mismatch, first_mismatch, load_dumps, render_flight
from forensics.artifacts.memory import analyze_snapshot, render_memory
from forensics.artifacts.restricted import load_plain
from forensics.errors import ForensicsError
from forensics.inputs.sources import Source


def read_artifacts(sources: list[Source]) -> tuple[list[tuple[str, str]], Mismatch | None,
                                                   list[str]]:
    """(kind, Markdown) sections, the Flight Recorder's first mismatch, and problems."""
    sections: list[tuple[str, str]] = []
    problems: list[str] = []
    mismatch = None
    dumps = [Path(s.path) for s in sources if s.kind == "flight-dump" and s.path]
    if dumps:
        try:
            loaded = load_dumps(dumps)
            mismatch = first_mismatch(loaded)
            sections.append(("flight-recorder", render_flight(loaded, mismatch)))
        except ForensicsError as err:
            problems.append(str(err))
    for source in sources:
        if source.kind != "memory-snapshot" or source.path is None:
            continue
        try:
            report = analyze_snapshot(load_plain(source.path))
            sections.append(("memory-snapshot", render_memory(report)
                             .replace("## CUDA memory snapshot",
                                      f"## CUDA memory snapshot `{source.name}`", 1)))
        except ForensicsError as err:
            problems.append(str(err))
    return sections, mismatch, problems
