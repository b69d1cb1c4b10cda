"""Blocks read and prepared one ahead, on a second thread.

What a block needs before the line pass walks it — reading (and decompressing) it, paste
repair, counting its lines, the keyword engine's pass, finding its printed metrics dicts and
telling the regular ones apart — depends on nothing the walk decides except the engine's
keywords and the key sequences met so far, and runs in C that lets go of the GIL (file
reads, zlib, Hyperscan, numpy, Arrow). So while the line pass walks block N in Python, block
N+1 is prepared on another core; at most two blocks are held at once (three at the start:
a log of one block, as most are, is read without a thread). The walk corrects
for what changed meanwhile: keywords muted since are dropped from the engine's hits, and
dicts are classified again when a key sequence was learnt since.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from forensics.inputs.bytesearch import count_byte, positions
from forensics.inputs.sources import ReadStatus, Source, read_blocks
from forensics.lines.engine import Engine, LineHit
from forensics.lines.paste import PASTE_BYTES, normalize
from forensics.lines.records import BlockDicts, classify, locate
from forensics.metrics.table import MetricsTable

NEWLINE = ord("\n")


@dataclass(frozen=True)
class Prepared:
    """One block and what was found in it before the line pass reached it."""

    raw: bytes  # as read
    block: bytes  # paste damage repaired (the same bytes for a log a program wrote)
    first_line: int
    newlines: int  # in `raw`
    hits: list[LineHit]  # the engine's flagged lines of `block`
    dicts: BlockDicts | None  # its candidate metrics dicts, classified


def prepared_blocks(source: Source, report: ReadStatus, engine: Callable[[], Engine],
                    table: MetricsTable) -> Iterator[Prepared]:
    """The source's blocks, each prepared while the one before is walked (`engine`: the
    line pass's engine at the time; `table`: the one whose key sequences classify dicts)."""
    blocks = read_blocks(source, report)
    bytes_read = lines_read = 0

    def prepare() -> Prepared | None:
        nonlocal bytes_read, lines_read
        raw = next(blocks, None)
        if raw is None:
            return None
        bytes_read += len(raw)
        block = normalize(raw, small=bytes_read < PASTE_BYTES)
        first_line = lines_read + 1
        # where dicts may be, their line numbers come from the same pass that counts lines
        ends = positions(raw, NEWLINE) if block is raw and raw.find(b"{") >= 0 else None
        newlines = count_byte(raw, NEWLINE) if ends is None else len(ends)
        lines_read += newlines
        dicts = locate(block, first_line, ends)
        if dicts is not None:
            classify(block, dicts, 0, table)
        return Prepared(raw, block, first_line, newlines, engine().scan(block), dicts)

    first, second = prepare(), None
    if first is not None:
        second = prepare()
    if second is None:  # a log of one block (most of them) starts no thread
        if first is not None:
            yield first
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="forensics-read") as pool:
        ahead = pool.submit(prepare)
        yield first
        yield second
        while (prepared := ahead.result()) is not None:
            ahead = pool.submit(prepare)
            yield prepared
