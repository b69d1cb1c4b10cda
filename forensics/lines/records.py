"""Printed metrics dicts of one block, found and read in bulk.

HF Trainer, TRL and axolotl print `{'loss': 1.23, ..., 'epoch': 0.5}` at every logging
step, behind a redraw of the training bar; with `logging_steps=1` an 8 MiB block holds
~50,000 of them. Here a block's dicts are found with byte comparisons over the whole block
(each line's first `{'`), and those of a key sequence the table has met as a training
record, whose values are all plain finite numbers, are *regular*: one RE2 pass per known
key sequence tells them apart. A run of regular records is read at once: the table says
which of them it keeps (past `MAX_ROWS` only every k-th training record) and reads the
steps of those from the bars before them; the table keeps their text and extracts their
values in one call once the source is read (`MetricsTable.settle`), of those still kept.
Every other dict (an evaluation, a NaN, a None, a new key sequence, a dict spread over
lines) is read one at a time as before (`_LineReader._dict_at`), so both ways give the same
table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from forensics.inputs.bytesearch import positions, view
from forensics.lines.blocks import METRICS_KEYS
from forensics.metrics.printed import bulk_pattern
from forensics.metrics.progress import ProgressTracker
from forensics.metrics.spans import matching
from forensics.metrics.table import TAIL, MetricsTable

_OPEN, _QUOTE = ord("{"), ord("'")
BULK_MIN = 1024  # dicts left in a block for them to be read in bulk


@functools.lru_cache(maxsize=64)
def _found_like_a_record(keys: tuple[str, ...]) -> bool:
    """Whether a dict of `keys` alone holds what the record search looks for (the dict's
    line is then a record whatever else it holds)."""
    return METRICS_KEYS.search(("{" + ", ".join(f"'{k}': 0" for k in keys) + "}")
                               .encode("utf-8")) is not None


@dataclass
class BlockDicts:
    """Each line's first `{'` in one block, in order, and how far they were read."""

    braces: np.ndarray  # offsets in the block
    #: their lines: indexes in the block until `number_lines` makes them the source's numbers
    lines: np.ndarray
    ends: np.ndarray  # where their lines end (the offset of the newline, or the block's end)
    #: the bulk shape of each regular record, -1 for the others
    shape: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    changes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    read_to: int = 0  # dicts before this index were read
    classified_with: int = -1  # how many bulk shapes the table had then

    def number_lines(self, first_line: int) -> None:
        """Number the dicts' lines in the source, the block's first line being
        `first_line` (known once the blocks before were counted)."""
        self.lines += first_line

    def end_of_run(self, start: int, stop: int) -> int:
        """Where the run of dicts of `start`'s shape (or of irregular ones) ends, at most
        at `stop`."""
        after = np.searchsorted(self.changes, start, side="right")
        return min(stop, int(self.changes[after])) if after < len(self.changes) else stop


def locate(block: bytes, newlines: np.ndarray | None = None) -> BlockDicts | None:
    """The block's candidate dicts: the first `{'` of each line, with the index of its line
    in the block (None when there is none); `newlines`: where the block's line ends are, if
    known."""
    if block.find(b"{") < 0:
        return None
    data = view(block)
    braces = positions(block, _OPEN)
    braces = braces[braces + 1 < len(data)]
    braces = braces[data[braces + 1] == _QUOTE]
    if not len(braces):
        return None
    if newlines is None:
        newlines = positions(block, ord("\n"))
    line_index = np.searchsorted(newlines, braces)
    first = np.ones(len(braces), dtype=bool)
    first[1:] = line_index[1:] != line_index[:-1]
    line_index = line_index[first]
    ends = np.append(newlines, len(block))[line_index]
    return BlockDicts(braces[first], line_index, ends)


def classify(block: bytes, dicts: BlockDicts, start: int, table: MetricsTable) -> None:
    """Mark which dicts from `start` on are regular records, and of which bulk shape."""
    if len(dicts.shape) != len(dicts.braces):
        dicts.shape = np.full(len(dicts.braces), -1, dtype=np.int16)
    dicts.classified_with = len(table.bulk_shapes)
    dicts.shape[start:] = -1
    braces = dicts.braces[start:]
    if len(braces) >= BULK_MIN:  # fewer are read one at a time: Arrow's kernels not loaded
        _mark_regular(block, braces, dicts.shape[start:], table)
    dicts.changes = np.flatnonzero(np.diff(dicts.shape) != 0) + 1


def _mark_regular(block: bytes, braces: np.ndarray, shape: np.ndarray,
                  table: MetricsTable) -> None:
    """Set `shape` (a view) to the bulk shape of each dict at `braces` that is regular."""
    for index, bulk in enumerate(table.bulk_shapes):
        if not _found_like_a_record(bulk.keys):
            continue
        open_ = np.flatnonzero(shape < 0)
        shape[open_[matching(block, braces[open_], bulk_pattern(bulk.keys))]] = index


def read_run(block: bytes, dicts: BlockDicts, start: int, stop: int, table: MetricsTable,
             bars: ProgressTracker, total: int) -> None:
    """Add the regular records `start:stop`, all of one shape and read against one bar
    (`total`; each after a `%`), to the table, in slices it decides on at once: their
    steps now, their values when the table is settled (its thinning drops most of them
    first on a long log). Of each slice's last TAIL records, those the table leaves out
    are held for its tail."""
    shape = int(dicts.shape[start])
    while start < stop:
        kept, used = table.training_slots(stop - start)
        last = np.arange(max(used - TAIL, 0), used)
        left_out = last[~np.isin(last, kept)]
        asked = np.union1d(kept, left_out)  # ends with the slice's last record, for `bars`
        steps = bars.training_steps(block, dicts.braces[start + asked], total, used)
        if len(kept):
            table.append_training(dicts.lines[start + kept], steps[np.searchsorted(asked, kept)],
                                  _texts(block, dicts, start + kept), shape)
        if len(left_out):
            table.hold(table.offered - used + 1 + left_out, dicts.lines[start + left_out],
                       steps[np.searchsorted(asked, left_out)],
                       _texts(block, dicts, start + left_out), shape)
        start += used


def _texts(block: bytes, dicts: BlockDicts, chosen: np.ndarray) -> list[bytes]:
    """The texts of the dicts at `chosen`, each from its `{` to its line's end."""
    return [block[brace:end] for brace, end in
            zip(dicts.braces[chosen].tolist(), dicts.ends[chosen].tolist(), strict=True)]
