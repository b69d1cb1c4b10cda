"""Markdown sections for PyTorch artifacts: checkpoint health and differences, Flight
Recorder dumps, CUDA memory snapshots."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace

from forensics.artifacts.tensors import TensorStats
from forensics.model import FlightRecord, MemorySummary
from forensics.report.markdown import section_markdown
from forensics.report.sections_context import flight_section, memory_section
from forensics.text import md_code, md_text, scrub

OPTIMIZER_BLOWUP = 1e12  # an Adam second moment this large means the gradients exploded
TOP = 10


def render_checkpoint(path: str, stats: list[TensorStats]) -> str:
    """Which tensors hold non-finite values (in model order), and the extremes."""
    params = sum(math.prod(s.shape) for s in stats)
    bad = [s for s in stats if not s.finite]
    lines = [f"## Checkpoint {md_code(path)}", "",
             f"{len(stats)} tensors, {params:,} values; "
             f"{len(bad)} tensor(s) hold NaN or Inf."]
    if bad:
        lines += ["", f"First non-finite tensor in model order: {md_code(bad[0].name)}.", "",
                  "| tensor | dtype | shape | NaN | Inf |", "|---|---|---|---|---|"]
        lines += [f"| {md_code(s.name, in_table=True)} | {md_text(s.dtype)} | {list(s.shape)} "
                  f"| {s.nan:,} | {s.inf:,} |"
                  for s in bad[:50]]
    optimizer = [s for s in stats if "exp_avg_sq" in s.name
                 and (not s.finite or s.absmax > OPTIMIZER_BLOWUP)]
    if optimizer:
        lines += ["", f"Optimizer state blow-up: {len(optimizer)} `exp_avg_sq` tensor(s) are "
                  f"non-finite or above {OPTIMIZER_BLOWUP:g} "
                  f"(first: {md_code(optimizer[0].name)}); "
                  "resuming this optimizer state will diverge again."]
    partial = [s for s in stats if s.note]
    if partial:
        lines += ["", f"{len(partial)} tensor(s) not read whole:", "", "| tensor | why |",
                  "|---|---|"]
        lines += [f"| {md_code(s.name, in_table=True)} | {md_text(s.note)} |"
                  for s in partial[:50]]
    largest = sorted((s for s in stats if s.finite and not math.isnan(s.minimum)),
                     key=lambda s: -s.absmax)[:TOP]  # a skipped tensor has no magnitude
    if largest:
        lines += ["", "Largest magnitudes:", "", "| tensor | abs max | norm |", "|---|---|---|"]
        lines += [f"| {md_code(s.name, in_table=True)} | {s.absmax:.4g} | {s.norm:.4g} |"
                  for s in largest]
    return "\n".join(lines) + "\n"


def render_changes(first: str, second: str, changes: list[tuple[str, float]]) -> str:
    """Which tensors changed most between two checkpoints, and where the change started."""
    lines = [f"## Changes from {md_code(first)} to {md_code(second)}", "",
             f"{len(changes)} tensors compared (relative change ||b - a|| / ||a||)."]
    finite = [c for _, c in changes if math.isfinite(c)]
    if finite:
        median = statistics.median(finite)
        first_outlier = next((n for n, c in changes if not math.isfinite(c)
                              or (median > 0 and c > 10 * median)), None)
        lines += ["", f"Median change {median:.3g}."]
        if first_outlier:
            lines.append(f"First tensor in model order that changed over 10x the median: "
                         f"{md_code(first_outlier)} — where the divergence starts.")
    ranked = sorted(changes, key=lambda nc: -nc[1] if math.isfinite(nc[1]) else -math.inf)
    lines += ["", "| tensor | relative change |", "|---|---|"]
    lines += [f"| {md_code(n, in_table=True)} | {c:.4g} |" for n, c in ranked[:TOP]]
    return "\n".join(lines) + "\n"


def render_flight(record: FlightRecord) -> str:
    """`forensics flight`: the job report's Flight Recorder section, as its own report."""
    return section_markdown(replace(flight_section(record), headline=True)) + "\n"


def render_memory(report: MemorySummary) -> str:
    """`forensics memory`: the job report's memory snapshot section, as its own report."""
    return section_markdown(replace(memory_section(report), headline=True)) + "\n"


def checkpoint_json(stats: list[TensorStats], changes: list[tuple[str, float]] | None) -> str:
    """`forensics checkpoint --format json`: per-tensor statistics and, with two
    checkpoints, the relative change of each tensor (non-finite numbers as null)."""
    def finite(value: float) -> float | None:
        return value if math.isfinite(value) else None

    return json.dumps(scrub({
        "tensors": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "nan": s.nan,
                     "inf": s.inf, "min": finite(s.minimum), "max": finite(s.maximum),
                     "absmax": s.absmax, "norm": s.norm, "note": s.note or None}
                    for s in stats],
        "changes": None if changes is None else [
            {"name": n, "relative_change": finite(c)} for n, c in changes]}), indent=2) + "\n"
