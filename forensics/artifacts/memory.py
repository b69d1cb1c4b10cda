"""A CUDA allocator snapshot (`torch.cuda.memory._dump_snapshot`): what held the memory
when the run hit an OOM, and whether fragmentation was to blame."""

from __future__ import annotations

from collections import defaultdict

from forensics.errors import InputError
from forensics.model import MemoryHolder, MemorySummary

TOP = 10


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


def analyze_snapshot(data: object) -> MemorySummary:
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
    return MemorySummary(reserved, allocated, largest_free, failed,
                        int(device_free) if isinstance(device_free, int) else None,
                        tuple(MemoryHolder(w, b, c) for w, (b, c) in ranked), len(segments),
                        tuple(notes))
