"""A CUDA allocator snapshot (`torch.cuda.memory._dump_snapshot`): what held the memory
when the run hit an OOM, and whether fragmentation was to blame."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from forensics.errors import InputError

TOP = 10


@dataclass(frozen=True)
class Holder:
    """Live allocations grouped by the Python frame that made them."""

    where: str
    bytes: int
    count: int


@dataclass(frozen=True)
class MemoryReport:
    """The snapshot's verdict."""

    reserved: int
    allocated: int
    largest_free_block: int
    failed_request: int | None
    device_free: int | None
    holders: tuple[Holder, ...] = ()
    segments: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def fragmented(self) -> bool:
        """Enough memory was free in total, but no free block was large enough."""
        if self.failed_request is None:
            return False
        free_in_pool = self.reserved - self.allocated
        return free_in_pool >= self.failed_request > self.largest_free_block


def _frame_label(frames: list) -> str:
    for frame in frames or []:
        if not isinstance(frame, dict):
            continue
        name = str(frame.get("filename", "?"))
        if "torch/" in name and "site-packages" in name:
            continue  # the allocator's own frames say nothing about the model
        return f"{name}:{frame.get('line', '?')} ({frame.get('name', '?')})"
    first = next((f for f in frames or [] if isinstance(f, dict)), None)
    return f"{first.get('filename', '?')}:{first.get('line', '?')}" if first else "<no stack>"


def analyze_snapshot(data: object) -> MemoryReport:
    """Totals, fragmentation and the largest live allocations of a snapshot dict."""
    if not isinstance(data, dict) or "segments" not in data:
        raise InputError("not a CUDA memory snapshot (no 'segments')")
    reserved = allocated = largest_free = 0
    holders: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    segments = data.get("segments") or []
    for segment in segments:
        if not isinstance(segment, dict):
            continue
        reserved += int(segment.get("total_size", 0))
        for block in segment.get("blocks") or []:
            size = int(block.get("size", 0))
            state = block.get("state")
            if state == "active_allocated":
                allocated += size
                where = _frame_label(block.get("frames") or segment.get("frames") or [])
                holders[where][0] += size
                holders[where][1] += 1
            elif state == "inactive":
                largest_free = max(largest_free, size)
    failed = device_free = None
    for trace in data.get("device_traces") or []:
        for entry in trace or []:
            if isinstance(entry, dict) and entry.get("action") == "oom":
                failed = int(entry.get("size", 0))
                device_free = entry.get("device_free")
    ranked = sorted(holders.items(), key=lambda kv: -kv[1][0])[:TOP]
    notes = []
    if not data.get("device_traces") or not any(data.get("device_traces")):
        notes.append("no allocation history: enable torch.cuda.memory._record_memory_history() "
                     "before the failing step to see the failed request")
    return MemoryReport(reserved, allocated, largest_free, failed,
                        int(device_free) if isinstance(device_free, int) else None,
                        tuple(Holder(w, b, c) for w, (b, c) in ranked), len(segments),
                        tuple(notes))


def size(value: int | None) -> str:
    """Bytes as the CUDA allocator prints them."""
    if value is None:
        return "-"
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.2f} {unit}"
    return f"{value} bytes"


def render_memory(report: MemoryReport) -> str:
    """The snapshot's report as Markdown."""
    lines = ["## CUDA memory snapshot", "",
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
        lines += [f"| {size(h.bytes)} | {h.count} | `{h.where}` |" for h in report.holders]
    lines += [f"\n_{note}_" for note in report.notes]
    return "\n".join(lines) + "\n"
