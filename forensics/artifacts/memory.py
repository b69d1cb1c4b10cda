"""A CUDA allocator snapshot (`torch.cuda.memory._dump_snapshot`): what held the memory
when the run hit an OOM, and whether fragmentation was to blame."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from forensics.artifacts.plain import PlainReader, Where
from forensics.artifacts.restricted import load_plain
from forensics.errors import InputError
from forensics.model import MemoryHolder, MemorySummary

TOP = 10
#: segments, blocks and frames one snapshot walk reads, a shared one each time it is met
#: (a few seconds of reading; a large job's snapshot reads a few hundred thousand)
MEMORY_MAX_ELEMENTS = 4_000_000
#: allocation history entries searched for the failed request, from the newest back (the
#: history is unbounded by default; the OOM is among its last entries)
TRACE_SCAN_ENTRIES = 1_000_000
LABEL_CHARS = 300  # the longest frame label kept


def read_snapshot(path: str | Path) -> MemorySummary:
    """The summary of a snapshot file, or InputError naming the file."""
    return analyze_snapshot(load_plain(path), str(path))


def analyze_snapshot(data: object, source: str = "snapshot") -> MemorySummary:
    """Totals, fragmentation and the largest live allocations of a snapshot dict; a field
    of the wrong type is an InputError naming it."""
    if not isinstance(data, dict) or "segments" not in data:
        raise InputError(f"{source}: not a CUDA memory snapshot (no 'segments')")
    read = PlainReader(source, "CUDA memory snapshot", MEMORY_MAX_ELEMENTS)
    segments = read.items(data, "segments", ())
    reserved, allocated, largest_free, holders = _segments(read, segments)
    traces = read.items(data, "device_traces", ())
    failed, device_free, whole = _failed_request(read, traces)
    ranked = sorted(holders.items(), key=lambda kv: -kv[1][0])[:TOP]
    notes = []
    if not any(traces):
        notes.append("no allocation history: enable torch.cuda.memory._record_memory_history() "
                     "before the failing step to see the failed request")
    elif failed is None and not whole:
        notes.append(f"no failed request in the newest {TRACE_SCAN_ENTRIES:,} entries of the "
                     "allocation history (older ones were not searched)")
    return MemorySummary(reserved, allocated, largest_free, failed, device_free,
                         tuple(MemoryHolder(w, b, c) for w, (b, c) in ranked), len(segments),
                         tuple(notes))


def _segments(read: PlainReader, segments: Sequence
              ) -> tuple[int, int, int, dict[str, list[int]]]:
    """Reserved and allocated bytes, the largest free block, and bytes and allocation
    counts by the frame that made them."""
    reserved = allocated = largest_free = 0
    holders: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, raw in enumerate(segments):
        segment = read.mapping(raw, ("segments", i))
        reserved += read.integer(segment, "total_size", ("segments", i)) or 0
        for j, raw_block in enumerate(read.items(segment, "blocks", ("segments", i))):
            where: Where = ("segments", i, "blocks", j)
            block = read.mapping(raw_block, where)
            size = read.integer(block, "size", where) or 0
            state = read.text(block, "state", where)
            if state == "active_allocated":
                allocated += size
                frames, at = read.items(block, "frames", where, spend=False), (*where, "frames")
                if not frames:
                    frames = read.items(segment, "frames", ("segments", i), spend=False)
                    at = ("segments", i, "frames")
                label = _frame_label(read, frames, at)
                holders[label][0] += size
                holders[label][1] += 1
            elif state == "inactive":
                largest_free = max(largest_free, size)
    return reserved, allocated, largest_free, holders


def _frame_label(read: PlainReader, frames: Sequence, where: Where) -> str:
    """The first frame outside torch's own files, else the first frame, as `file:line
    (function)`."""
    first = None
    for k, raw in enumerate(frames):
        read.spend(1)
        frame = read.mapping(raw, (*where, k))
        name = read.text(frame, "filename", (*where, k), "?") or "?"
        line = read.integer(frame, "line", (*where, k), None)
        label = f"{name}:{'?' if line is None else line}"
        first = first or label
        if "torch/" in name and "site-packages" in name:
            continue  # the allocator's own frames say nothing about the model
        function = read.text(frame, "name", (*where, k), "?")
        return f"{label} ({function})"[:LABEL_CHARS]
    return (first or "<no stack>")[:LABEL_CHARS]


def _failed_request(read: PlainReader, traces: Sequence
                    ) -> tuple[int | None, int | None, bool]:
    """The size of the last allocation that hit an OOM, the device's free bytes then, and
    whether the history was searched whole (at most TRACE_SCAN_ENTRIES entries are, newest
    first)."""
    left, whole = TRACE_SCAN_ENTRIES, True
    failed = device_free = None
    for i, raw in enumerate(traces):
        if raw is None:
            continue
        if not isinstance(raw, list | tuple):
            raise read.malformed(("device_traces", i), raw, "a list")
        scanned = 0
        for j in range(len(raw) - 1, max(len(raw) - 1 - left, -1), -1):
            scanned += 1
            where: Where = ("device_traces", i, j)
            entry = read.mapping(raw[j], where)
            if read.text(entry, "action", where) == "oom":
                failed = read.integer(entry, "size", where)
                device_free = read.integer(entry, "device_free", where, None)
                break
        else:
            whole = whole and scanned == len(raw)
        left -= scanned
    return failed, device_free, whole
