"""tqdm progress bars, counted per block without parsing each redraw.

A log written by a trainer whose stdout goes to a file holds a bar redraw on nearly every
line; parsing each one in Python made such logs 15-70x slower than grep. Instead, each block
is counted with byte searches: `%|` finds every bar, `/{total} [` counts the redraws of each
bar already known. Only when those two counts disagree (a bar with a new total appeared) is
the block parsed bar by bar, and only bars that decide something are ever parsed alone: the
last one before a metrics record (its step) and the last one of each total (where it got to).

A bar with a description (`Map: 40%|...`, `Loading checkpoint shards: ...`) is not the
trainer's own bar and counts for nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from forensics.inputs.bytesearch import count_byte, count_occurrences
from forensics.metrics.spans import numbers

#: a bar from its segment's start: its description, then `40%|█...| n/total [`
_BAR = re.compile(rb"([^\r\n|]*?)\d+%\|[^|\r\n]*\|[ \t]*(\d+)/(\d+) \[")
_MARK = b"%|"
_PERCENT = ord("%")
_TOTAL = re.compile(rb"%\|[^|\r\n]*\|[ \t]*\d+/(\d+) \[")  # starts with the mark: found fast
_LOOK_BACK = 32  # bars with a description skipped while looking for the trainer's own
MAX_TOTALS = 64  # totals tracked per source; each costs a byte search per block
#: a bar's count and total from its `%` on (RE2, for bars read in bulk)
_PLAIN_BAR = r"^%\|[^|\r\n]*\|[ \t]*(?P<g0>[0-9]{1,18})/(?P<g1>[0-9]{1,18}) \["
_PERCENT_DIGITS = 8  # the most digits a plain bar's percentage is read back over
_PAD = 64  # the most blanks before a plain bar's percentage
#: bytes a numpy search covers in the time of one `rfind` call (~250 ns against ~0.19 ns)
_RFIND_BYTES = 1300


def _byte_class(members: bytes) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[list(members)] = True
    return table


_DIGIT = _byte_class(b"0123456789")
_BLANK = _byte_class(b" \t\x0b\x0c")  # what `strip()` removes from a description
_SEGMENT_START = _byte_class(b"\r\n|")  # what a bar's segment begins after


def _redraws(block: bytes, total: int) -> int:
    """How many bars of `total` the block draws (`/5000 [` after each count)."""
    return count_occurrences(block, b"/%d [" % total)


def block_redraws(block: bytes, totals: tuple[int, ...]) -> tuple[int, dict[int, int]]:
    """How many `%` the block holds, and how many redraws of each of `totals` (for
    `ProgressTracker.begin_block`; byte searches that can run on another thread)."""
    percents = count_byte(block, _PERCENT)
    return percents, ({total: _redraws(block, total) for total in totals} if percents else {})


def _walk_back(data: np.ndarray, back: np.ndarray, live: np.ndarray, byte_class: np.ndarray,
               most: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From each offset in `back` (where `live`), step back over bytes of `byte_class`, at
    most `most` of them: where each stopped, which moved, and which had more to go."""
    moved = np.zeros(len(back), dtype=bool)
    for _ in range(most + 1):
        live = live & (back >= 0) & byte_class[data[np.maximum(back, 0)]]
        if not live.any() or _ == most:
            break
        back = back - live
        moved |= live
    return back, moved, live


def percent_before(block: bytes, positions: np.ndarray) -> np.ndarray:
    """The offset of the last `%` before each of `positions` (sorted), -1 where there is
    none: one `rfind` each, or, where they are dense (a record every line, all of them
    kept), one numpy search up to the last of them."""
    end = int(positions[-1]) if len(positions) else 0
    if len(positions) * _RFIND_BYTES < end:
        return np.array([block.rfind(b"%", 0, int(at)) for at in positions], dtype=np.int64)
    percents = np.flatnonzero(np.frombuffer(block, dtype=np.uint8, count=end) == _PERCENT)
    index = np.searchsorted(percents, positions) - 1
    return np.where(index >= 0, percents[np.maximum(index, 0)], -1) if len(percents) \
        else np.full(len(positions), -1, dtype=np.int64)


@dataclass
class ProgressTracker:
    """The trainer's progress bars of one source: per total, the last n and how many redraws
    were seen; the step a record at a given offset belongs to; the line of the last bar."""

    bars: dict[int, tuple[int, int]] = field(default_factory=dict)  # total -> (last n, seen)
    last_line: int = 0  # line number of the last undescribed bar
    _described: dict[int, bool] = field(default_factory=dict)  # every total met -> described
    _totals: tuple[int, ...] = ()  # the keys of `_described`, in the order met
    #: total -> how many training records were read against a bar of that total: the
    #: training bar is the one they use, whatever eval bars are redrawn more often
    trained_on: dict[int, int] = field(default_factory=dict)
    _last_by_total: dict[int, int] = field(default_factory=dict)  # the last n parsed per total
    _carried: tuple[int | None, int | None] = (None, None)  # (step, total) ending the last block
    # (offset of the last bar, its step, its total) so far
    _cached: tuple[int, int | None, int | None] = (-1, None, None)
    _looked_to: int = 0  # offset up to which this block was searched for bars
    _block_counts: tuple[int, dict[int, int]] | None = None  # this block's `%`, redraws
    #: this block's `%` and redraws of the totals met before it, counted when it was prepared
    _counted: tuple[int, dict[int, int]] | None = None
    _discovering: bool = True

    def known_totals(self) -> tuple[int, ...]:
        """Every total met so far (safe to ask from another thread: a tuple replaced, never
        changed, as totals are met)."""
        return self._totals

    def _meet(self, total: int, described: bool) -> None:
        self._described[total] = described
        self._totals = (*self._totals, total)

    def begin_block(self, percents: int, counted: dict[int, int]) -> None:
        """Take the next block's count of `%` and the redraws of the totals met before it
        (`block_redraws`, counted while it was prepared); totals met since are counted here
        when asked."""
        self._counted = (percents, counted)

    def printed(self, step: int, total: int) -> None:
        """A step a metrics line printed with its total (`iteration 120/ 5000 |`), counted
        like a bar's redraw."""
        last, seen = self.bars.get(total, (0, 0))
        self.bars[total] = (max(last, step), seen + 1)

    def step_at(self, block: bytes, pos: int, evaluation: bool = False) -> int | None:
        """The step shown by the last undescribed bar before `pos` (earlier blocks included);
        for an evaluation record, the step the training bar had reached (the bar just before
        it is the evaluation's own, `75/75`). Records come in order, so only the bytes since
        the last question are searched."""
        self._last_bar(block, pos)
        _, step, total = self._cached
        if total is None:
            return step
        if not evaluation:
            self.trained_on[total] = self.trained_on.get(total, 0) + 1
            return step
        training = max(self.trained_on, key=self.trained_on.__getitem__, default=total)
        return step if training == total else self._last_by_total.get(training, step)

    def _last_bar(self, block: bytes, pos: int) -> None:
        """Find the last undescribed bar before `pos` (kept in `_cached`)."""
        if pos < self._looked_to:  # out of order: start over from the block's start
            self._looked_to, self._cached = 0, (-1, *self._carried)
        end = pos
        for _ in range(_LOOK_BACK):
            mark = block.rfind(_MARK, self._looked_to, end)
            if mark < 0:
                break
            bar = self._parse(block, mark)
            if bar is not None and not bar[0]:
                self._cached = (mark, bar[1], bar[2])
                self._last_by_total[bar[2]] = bar[1]
                break
            end = mark
        self._looked_to = pos

    def single_total(self, block: bytes) -> int | None:
        """The total of every bar in this block when all of them are redraws of one
        undescribed bar already met (its training records then take their steps in bulk:
        `training_steps`), else None. The block's counts are kept for `finish_block`."""
        if self._block_counts is None:
            self._block_counts = self._redraws_by_total(block)
        percents, counts = self._block_counts
        drawn = [total for total, seen in counts.items() if seen]
        if len(drawn) != 1 or counts[drawn[0]] != percents or self._described[drawn[0]]:
            return None
        return drawn[0]

    def training_steps(self, block: bytes, positions: np.ndarray, total: int,
                       records: int) -> np.ndarray:
        """The steps of training records at `positions` (offsets in this block, in order,
        each after a `%`) in a block of one bar (`single_total`): each record's step is its
        last bar's, as `step_at` reads it. A `%` that is not a plain redraw of that bar (a
        description before it, another total, no bar at all) is looked at again the slow
        way. `records` training records were read against the bar (those whose steps were
        not needed included)."""
        before = percent_before(block, positions)
        at, where = np.unique(before, return_inverse=True)
        steps, plain = self._plain_bars(block, at, total)
        steps, plain = steps[where], plain[where]
        for index in np.flatnonzero(~plain):
            self._looked_to, self._cached = 0, (-1, *self._carried)
            self._last_bar(block, int(positions[index]))
            steps[index] = np.nan if self._cached[1] is None else self._cached[1]
        self.trained_on[total] = self.trained_on.get(total, 0) + records
        if plain[-1]:  # where `_last_bar` would have left off
            self._cached = (int(before[-1]), int(steps[-1]), total)
            self._last_by_total[total] = int(steps[-1])
        self._looked_to = int(positions[-1])
        return steps

    @staticmethod
    def _plain_bars(block: bytes, at: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
        """The count of each bar whose `%` is at `at`, and whether it is a plain redraw of
        the bar of `total`: blanks and digits from its segment's start to the `%`, then
        `|...| n/total [`."""
        found, matched = numbers(block, at, _PLAIN_BAR, 2)
        data = np.frombuffer(block, dtype=np.uint8)
        everywhere = np.ones(len(at), dtype=bool)
        back, digits, long_number = _walk_back(data, at - 1, everywhere, _DIGIT, _PERCENT_DIGITS)
        back, _, long_pad = _walk_back(data, back, digits, _BLANK, _PAD)
        starts = (back < 0) | _SEGMENT_START[data[np.maximum(back, 0)]]
        plain = matched & digits & starts & ~long_number & ~long_pad & (found[:, 1] == total)
        return found[:, 0], plain

    def finish_block(self, block: bytes, first_line: int, newlines: int) -> None:
        """Count this block's redraws per total and carry its last step to the next block
        (`newlines`: how many the block holds, for the line of its last bar)."""
        if self._block_counts is None:
            percents, counts = self._redraws_by_total(block)
        else:
            (percents, counted), self._block_counts = self._block_counts, None
            # totals parsed since the block's counts were taken are counted too
            counts = self._counts(block, counted) if percents else {}
        if percents:
            for total, seen in counts.items():
                if seen and not self._described[total]:
                    needle = b"/%d [" % total
                    bar = self._parse(block, block.rfind(_MARK, 0, block.rfind(needle)))
                    last, before = self.bars.get(total, (0, 0))
                    self.bars[total] = (bar[1] if bar else last, before + seen)
                    if bar:
                        self._last_by_total[total] = bar[1]
            self._last_bar(block, len(block))
            if self._cached[0] >= 0:
                self.last_line = first_line + newlines - block.count(b"\n", self._cached[0])
            self._carried = self._cached[1:]
        self._looked_to, self._cached = 0, (-1, *self._carried)
        self._counted = None

    def _redraws_by_total(self, block: bytes) -> tuple[int, dict[int, int]]:
        """How many `%` the block holds, and how many redraws of each total met so far (the
        block's new totals met first, when its `%` are more than known bars)."""
        percents, counted = self._counted if self._counted is not None else \
            (count_byte(block, _PERCENT), {})
        if not percents:
            return 0, {}
        counts = self._counts(block, counted)
        known = sum(counts.values())
        # every `%` a known total's redraw: no new bar; else count the marks themselves
        if self._discovering and percents != known and \
                count_occurrences(block, _MARK) != known:
            self._discover(block)
            counts = self._counts(block, counted)
        return percents, counts

    def _counts(self, block: bytes, counted: dict[int, int]) -> dict[int, int]:
        """Redraws in the block of each total met so far (those `counted` already taken)."""
        return {total: counted[total] if total in counted else _redraws(block, total)
                for total in self._described}

    def _discover(self, block: bytes) -> None:
        """Meet the totals of a block that holds one not met before (each new total's first
        bar says whether it has a description). When the block holds no new total after all
        (bars in a shape that is not counted), stop doing this and rely on the bars parsed
        alone to meet new totals."""
        new = {int(total) for total in set(_TOTAL.findall(block))} - self._described.keys()
        room = MAX_TOTALS - len(self._described)
        if len(new) > room:  # bars whose total changes every line: not a trainer's
            new = set(sorted(new)[:max(room, 0)])
        for total in new:
            first = block.find(b"/%d [" % total)
            if self._parse(block, block.rfind(_MARK, 0, first)) is None:
                self._meet(total, True)  # not a bar the trainer draws: ignored
        self._discovering = bool(new)

    def _parse(self, block: bytes, mark: int) -> tuple[bool, int, int] | None:
        """(described, n, total) of the bar whose `%|` is at `mark`: its description is the
        text between the segment's start (or the last `|` before the bar) and the
        percentage."""
        if mark < 0:
            return None
        start = max(block.rfind(b"\r", 0, mark), block.rfind(b"\n", 0, mark),
                    block.rfind(b"|", 0, mark)) + 1
        found = _BAR.match(block, start)  # no `|` between start and mark: its `%|` is mark's
        if found is None:
            return None
        total = int(found[3])
        described = bool(found[1].strip())
        if total not in self._described:
            if len(self._described) >= MAX_TOTALS:
                return None
            self._meet(total, described)
        return described, int(found[2]), total
