"""Blocks read and prepared ahead of the line pass, on other threads.

What a block needs before the line pass walks it — reading (and decompressing) it, paste
repair, counting its lines, the keyword engine's pass, finding its printed metrics dicts and
telling the regular ones apart, counting its `%` and bar redraws — depends on nothing the
walk decides except the engine's keywords, the key sequences and the bar totals met so far,
and runs in C that mostly lets go of the GIL (file reads, zlib, Hyperscan, numpy, Arrow;
StringZilla's count of a bar's redraws, ~1 ms a block, holds it). So while
the line pass walks block N in Python, blocks N+1 to N+3 are prepared on other threads,
across the boundary between files: the next file's first block is prepared while the last
one of the file before is walked (a `torchrun --log-dir` tree of 64 files of two blocks each
would otherwise be read one file at a time). A job whose files hold more than a block is
prepared on the threads from its first block on, so the first three are prepared at once; a
job of one block, as most are, is read without a thread (where the sizes do not tell, as
for a compressed file, whether a second block follows is known by reading it after the
first is prepared); a block that flags many lines is followed by one in preparation, not
three.
Three threads for two cores: each numpy or Arrow call lets go of the GIL and must take it
back, and while the walk runs Python a preparing thread waits for it (up to the interpreter's
switch interval); a third thread keeps a core busy meanwhile (3-16% faster than two on the
profiles of `bench/throughput.py`, one more block in memory).
The walk corrects for what changed meanwhile: keywords muted since are dropped from the
engine's hits, dicts are classified again when a key sequence was learnt since, and bars of
a total met since are counted then.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from forensics.inputs.bytesearch import count_byte, positions
from forensics.inputs.sources import (
    BLOCK_SIZE,
    ReadStatus,
    Source,
    read_blocks,
    stored_size,
)
from forensics.lines.engine import Engine, LineHit
from forensics.lines.paste import PASTE_BYTES, normalize
from forensics.lines.records import BlockDicts, classify, locate
from forensics.metrics.progress import ProgressTracker, block_redraws
from forensics.metrics.table import MetricsTable

NEWLINE = ord("\n")
AHEAD = 3  # blocks prepared at once, each on its own thread
#: a block that flags more lines is followed by one block in preparation, not `AHEAD` (each
#: flagged line is a Python object: a log whose every line holds a keyword would otherwise
#: hold three blocks of them)
MANY_HITS = 16_384


@dataclass(frozen=True)
class Prepared:
    """One block and what was found in it before the line pass reached it."""

    raw: bytes  # as read
    block: bytes  # paste damage repaired (the same bytes for a log a program wrote)
    newlines: int  # in `raw`
    hits: list[LineHit]  # the engine's flagged lines of `block`
    dicts: BlockDicts | None  # its candidate metrics dicts, classified
    redraws: tuple[int, dict[int, int]]  # its `%` and bars' redraws (`block_redraws`)


@dataclass(frozen=True)
class Reading:
    """One source to read, and what of its walk preparing a block depends on."""

    source: Source
    report: ReadStatus  # filled in as its blocks are read
    engine: Callable[[], Engine]  # the walk's engine at the time (keywords muted so far)
    table: MetricsTable  # whose key sequences classify dicts
    bars: ProgressTracker  # whose totals are counted


#: a prepared block with its source's index, in its turn (None past the last block)
Turn = tuple[int, tuple[int, Prepared] | None]


class _Cursor:
    """Where the reading of a list of sources has got to. Reading a block and numbering its
    turn happen in order, under a lock; the rest of preparing it does not, so that blocks
    can be prepared at once (and finish in any order): counting its lines too (the walk,
    which takes the blocks in order, numbers them)."""

    def __init__(self, readings: Sequence[Reading]) -> None:
        self.readings: list[Reading | None] = list(readings)  # None once being read
        self.index = -1
        self.reading: Reading | None = None  # the one being read (let go of once past it)
        self.blocks: Iterator[bytes] = iter(())
        self.bytes_read = 0
        self.turns = 0
        self.lock = threading.Lock()
        self._ahead: bytes | None = None  # a block read by `more`, prepared in its turn

    def more(self) -> bool:
        """Whether another block follows (read now: it is prepared in its turn)."""
        with self.lock:
            if self._ahead is None:
                self._ahead = self._next_raw()
            return self._ahead is not None

    def _next_raw(self) -> bytes | None:
        """The next block of the current source, moving on to the next source at the end
        of one (None after the last)."""
        if self._ahead is not None:
            raw, self._ahead = self._ahead, None
            return raw
        while (raw := next(self.blocks, None)) is None:
            self.index += 1
            if self.index >= len(self.readings):
                self.reading = None
                return None
            self.reading, self.readings[self.index] = self.readings[self.index], None
            self.blocks = read_blocks(self.reading.source, self.reading.report)
            self.bytes_read = 0
        return raw

    def prepare(self) -> Turn:
        """The next block, prepared, with the index of its source, and its turn."""
        with self.lock:
            turn, self.turns = self.turns, self.turns + 1
            raw = self._next_raw()
            if raw is None:
                return turn, None
            index, reading = self.index, self.reading
            self.bytes_read += len(raw)
            small = self.bytes_read < PASTE_BYTES
        # lines are counted here, not under the lock: the walk numbers them, in order
        block = normalize(raw, small=small)
        # where dicts may be, their line numbers come from the pass that counts lines
        ends = positions(raw, NEWLINE) if block is raw and raw.find(b"{") >= 0 else None
        newlines = count_byte(raw, NEWLINE) if ends is None else len(ends)
        # a log read as it is holds dicts only where `{` was found above: not searched again
        dicts = locate(block, ends) if ends is not None or block is not raw else None
        if dicts is not None:
            classify(block, dicts, 0, reading.table)
        redraws = block_redraws(block, reading.bars.known_totals())
        return turn, (index, Prepared(raw, block, newlines, reading.engine().scan(block),
                                      dicts, redraws))


def _ahead_of(prepared: Prepared) -> int:
    """How many blocks to prepare ahead of this one (`MANY_HITS`)."""
    return AHEAD if len(prepared.hits) <= MANY_HITS else 1


def _stored_bytes(readings: Sequence[Reading]) -> int:
    """The bytes the sources hold where that is known before reading them (`stored_size`)."""
    return sum(stored_size(reading.source) or 0 for reading in readings)


def prepared_blocks(readings: Sequence[Reading]) -> Iterator[tuple[int, Prepared]]:
    """Every source's blocks in turn, each with its source's index, prepared ahead of the
    walk (`AHEAD` at once)."""
    several = _stored_bytes(readings) > BLOCK_SIZE
    cursor = _Cursor(readings)
    del readings  # the cursor lets go of each source once past it
    done: dict[int, tuple[int, Prepared] | None] = {}  # prepared before their turn
    ahead = AHEAD
    if not several:
        first = cursor.prepare()[1]
        if first is None:
            return
        if not cursor.more():  # a job of one block (most of them) starts no thread
            yield first
            return
        done[0], ahead = first, _ahead_of(first[1])
        del first
    with ThreadPoolExecutor(max_workers=AHEAD, thread_name_prefix="forensics-read") as pool:
        running = deque(pool.submit(cursor.prepare) for _ in range(ahead))
        turn = 0
        while True:
            while turn not in done:  # it is running: every turn before it was walked
                done.update([running.popleft().result()])
            prepared = done.pop(turn)
            if prepared is None:
                return
            turn += 1
            while len(running) + len(done) < _ahead_of(prepared[1]):
                running.append(pool.submit(cursor.prepare))
            yield prepared
