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

#: a bar from its segment's start: its description, then `40%|█...| n/total [`
_BAR = re.compile(rb"([^\r\n|]*?)\d+%\|[^|\r\n]*\|[ \t]*(\d+)/(\d+) \[")
_MARK = b"%|"
_TOTAL = re.compile(rb"%\|[^|\r\n]*\|[ \t]*\d+/(\d+) \[")  # starts with the mark: found fast
_LOOK_BACK = 32  # bars with a description skipped while looking for the trainer's own
MAX_TOTALS = 64  # totals tracked per source; each costs a byte search per block


@dataclass
class ProgressTracker:
    """The trainer's progress bars of one source: per total, the last n and how many redraws
    were seen; the step a record at a given offset belongs to; the line of the last bar."""

    bars: dict[int, tuple[int, int]] = field(default_factory=dict)  # total -> (last n, seen)
    last_line: int = 0  # line number of the last undescribed bar
    _described: dict[int, bool] = field(default_factory=dict)  # every total met -> described
    #: total -> how many training records were read against a bar of that total: the
    #: training bar is the one they use, whatever eval bars are redrawn more often
    trained_on: dict[int, int] = field(default_factory=dict)
    _last_by_total: dict[int, int] = field(default_factory=dict)  # the last n parsed per total
    _carried: tuple[int | None, int | None] = (None, None)  # (step, total) ending the last block
    # (offset of the last bar, its step, its total) so far
    _cached: tuple[int, int | None, int | None] = (-1, None, None)
    _looked_to: int = 0  # offset up to which this block was searched for bars
    _discovering: bool = True

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

    def finish_block(self, block: bytes, first_line: int, newlines: int) -> None:
        """Count this block's redraws per total and carry its last step to the next block
        (`newlines`: how many the block holds, for the line of its last bar)."""
        percents = block.count(b"%")  # a third of the time of counting the two-byte mark
        if percents:
            counts = self._counts(block)
            known = sum(counts.values())
            # every `%` a known total's redraw: no new bar; else count the marks themselves
            if self._discovering and percents != known and block.count(_MARK) != known:
                self._discover(block)
                counts = self._counts(block)
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

    def _counts(self, block: bytes) -> dict[int, int]:
        """Redraws in the block of each total met so far."""
        return {total: block.count(b"/%d [" % total) for total in self._described}

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
                self._described[total] = True  # not a bar the trainer draws: ignored
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
            self._described[total] = described
        return described, int(found[2]), total
