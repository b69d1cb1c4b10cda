"""Markdown sections for PyTorch artifacts: checkpoint health and differences, Flight
Recorder dumps, CUDA memory snapshots."""

from __future__ import annotations

import json
import math
import statistics

from forensics.artifacts.tensors import TensorStats
from forensics.model import FlightRecord, MemorySummary
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
    """The Flight Recorder report as Markdown."""
    mismatch = record.mismatch
    lines = ["## NCCL Flight Recorder", "", f"{len(record.ranks)} rank dump(s): "
             + ", ".join(str(r) for r in record.ranks) + "."]
    if mismatch is None:
        lines += ["", "Every recorded collective matches across ranks."]
    else:
        lines += ["", f"First disagreement: **{mismatch.disagreement}** at collective sequence "
                  f"number {mismatch.seq} of process group {md_text(mismatch.process_group)} "
                  f"({md_code(mismatch.op)}): {md_text(mismatch.detail)}.",
                  f"Suspect rank(s): {', '.join(str(r) for r in mismatch.ranks)} "
                  f"(of {len(mismatch.expected_ranks)} expected)."]
    return "\n".join(lines) + "\n"


def size(value: int | None) -> str:
    """Bytes as the CUDA allocator prints them."""
    if value is None:
        return "-"
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.2f} {unit}"
    return f"{value} bytes"


def render_memory(report: MemorySummary) -> str:
    """The snapshot's report as Markdown."""
    title = "## CUDA memory snapshot" + (f" {md_code(report.source)}" if report.source else "")
    lines = [title, "",
             f"Reserved by PyTorch: {size(report.reserved)} in {report.segments} segment(s); "
             f"allocated: {size(report.allocated)}; reserved but free: "
             f"{size(report.reserved - report.allocated)}; largest free block: "
             f"{size(report.largest_free_block)}."]
    if report.failed_request is not None:
        line = f"The failed allocation asked for {size(report.failed_request)}"
        if report.device_free is not None:
            line += f" with {size(report.device_free)} free on the device"
        lines += ["", line + "."]
        if report.fragmented:
            lines += ["", "**Fragmentation**: enough memory was reserved but free, yet no free "
                      "block was large enough. Set "
                      "`PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`."]
    if report.holders:
        lines += ["", "Largest live allocations by where they were made:", "",
                  "| bytes | allocations | where |", "|---|---|---|"]
        lines += [f"| {size(h.bytes)} | {h.count} | {md_code(h.where, in_table=True)} |"
                  for h in report.holders]
    lines += [f"\n_{md_text(note)}_" for note in report.notes]
    return "\n".join(lines) + "\n"


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
