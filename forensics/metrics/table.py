"""Metric records as the scan finds them, stored column by column in compact arrays so that
200,000 logged steps cost a few MB, not a few hundred."""

from __future__ import annotations

import math
import re
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress, repeat

import numpy as np

from forensics.metrics.printed import values_pattern
from forensics.metrics.spans import numbers

TRAIN, EVAL, SUMMARY = 0, 1, 2
KIND_NAMES = {TRAIN: "train", EVAL: "eval", SUMMARY: "summary"}
#: cell states: a number (finite or not), logged as None, a finite number not read yet
PRESENT, NONE, PENDING = 1, 2, 3
MAX_ROWS = 100_000  # records per source; beyond, training records are thinned (see `_skipped`)
#: the last training records of a source, kept whatever the thinning: what the run was doing
#: when it stopped is read from them (the report's steps before the failure). Those the
#: thinning left out are held (`_tail`); a kept one that a thinning drops again within the
#: last TAIL records logged (once in ~MAX_ROWS / 2 x stride records) is not.
TAIL = 16
#: the share of a source read before its density of records is trusted to judge the rest by
#: (before, once the table has been full, the rest is taken to hold 1 / ANTICIPATE_AFTER - 1
#: times the records so far)
ANTICIPATE_AFTER = 1 / 8
_SUMMARY_KEYS = frozenset({"train_runtime", "train_loss"})
#: a printed dict's own step (a custom loop's `pprint(metrics)`): the bar's step yields to it
STEP_KEYS = frozenset({"step", "global_step", "train/global_step"})
_EVAL_PREFIXES = ("eval_", "eval/", "val_", "val/")  # HF; Lightning
_PRINTED_ITEM = re.compile(r"'([^'\n]{1,120})': ([^,}\n]{1,64})")  # one `'key': value` item
_SKIP = object()
MAX_SHAPES = 16  # key sequences remembered per source
MAX_KEYS = 1024  # metric names per source; a log that invents more is not a trainer's
MAX_CELLS = 4_000_000  # records x metric names of the dense timeline of one source


@dataclass(frozen=True)
class _Shape:
    """A printed dict's key sequence as one pattern, and where its cells go."""

    keys: tuple[str, ...]
    pattern: re.Pattern[str]
    columns: array
    present: bytes
    kind: int
    step_at: int | None  # the position of the record's own step among its keys

    @staticmethod
    def of(keys: tuple[str, ...], kind: int, key_index: dict[str, int]) -> _Shape:
        items = ", ".join(f"'{re.escape(key)}': '?([-+.\\w]{{1,64}})'?" for key in keys)
        step_at = next((i for i, key in enumerate(keys) if key in STEP_KEYS), None)
        columns = [key_index[key] for i, key in enumerate(keys) if i != step_at]
        return _Shape(keys, re.compile("\\{" + items + "\\}"), array("H", columns),
                      bytes([PRESENT]) * len(columns), kind, step_at)


@dataclass(frozen=True)
class BulkShape:
    """A training record's key sequence that can be read in bulk: its keys, and where its
    values go (one column per key, in order)."""

    keys: tuple[str, ...]
    columns: np.ndarray  # uint16 key index per value


def printed_value(raw: str) -> float | object | None:
    """A printed dict value that `float()` does not read: None, a quoted number (Transformers
    5.x), a numpy repr (`np.float64(1.5)`); `_SKIP` for anything else."""
    raw = raw.strip()
    if raw == "None":
        return None
    if raw[:1] == "'":
        raw = raw.strip("'")
    elif raw.startswith("np."):
        raw = raw[raw.find("(") + 1:].rstrip(")")
    try:
        return float(raw)
    except ValueError:
        return _SKIP

def record_kind(values: dict[str, float | None]) -> int:
    """Whether a metrics dict is a training step, an evaluation or the final summary."""
    if not _SUMMARY_KEYS.isdisjoint(values):
        return SUMMARY
    if any(key.startswith(_EVAL_PREFIXES) for key in values):
        return EVAL
    return TRAIN


def step_kind(values: dict[str, float | None]) -> int:
    """The kind of a record that carries its own step (a metric line, a metrics.csv row):
    HF's summary keys (`train_loss`) are a step's values there, not the final summary."""
    kind = record_kind(values)
    return TRAIN if kind == SUMMARY else kind


@dataclass
class Row:
    """One record read back from a table."""

    step: float
    kind: int
    source: str
    line: int
    values: dict[str, float | None]


class MetricsTable:
    """Metric records of one source, kept as sparse cells in compact arrays (a record adds one
    cell per logged key); `step` is NaN where the log did not say."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.steps = array("d")
        self.lines = array("q")
        self.kinds = array("b")
        self.keys: list[str] = []
        self._key_index: dict[str, int] = {}
        self.cell_rows = array("i")  # 4 + 2 + 8 + 1 bytes a cell
        self.cell_keys = array("H")
        self.cell_values = array("d")
        self.cell_states = bytearray()
        self.summary: dict[str, float | None] | None = None
        self.max_steps: int | None = None
        self._shapes: list[_Shape] = []
        self.bulk_shapes: list[BulkShape] = []  # training shapes without their own step
        self.offered = 0  # training records logged (kept or not)
        self.stride = 1  # 1: every record kept; k: every k-th (see `_skipped`)
        self.ignored_keys = 0  # cells of metric names past MAX_KEYS
        # rows added in bulk whose values are read by `settle`: their text, its bulk shape
        self._pending_rows = array("i")
        self._pending_shapes = array("h")
        self._pending_texts: list[bytes] = []
        #: training records the thinning left out, the latest TAIL: (offered, line, step,
        #: values), where values are a dict, a shape and its numbers, or (read in bulk) the
        #: number of a bulk shape and the record's text
        self._tail: deque[tuple[int, int, float | None, object]] = deque(maxlen=TAIL)

    def __len__(self) -> int:
        return len(self.steps)

    def columns(self) -> list[int]:
        """The metric names the timeline gets: all of them, or, when records x names would
        pass MAX_CELLS, the most often logged ones that fit (in their first-seen order)."""
        fit = MAX_CELLS // max(len(self.steps), 1)
        if len(self.keys) <= fit:
            return list(range(len(self.keys)))
        counts = np.bincount(np.frombuffer(self.cell_keys, dtype=np.uint16),
                             minlength=len(self.keys))
        return sorted(int(k) for k in np.argsort(-counts, kind="stable")[:max(fit, 1)])

    def count(self, kind: int) -> int:
        """How many records of a kind were logged (training records left out by thinning
        included)."""
        return self.offered if kind == TRAIN else self.kinds.count(kind)

    def add(self, line: int, step: float | None, values: dict[str, float | None],
            kind: int | None = None) -> None:
        """Append one record (the final summary is kept aside)."""
        kind = record_kind(values) if kind is None else kind
        if kind == SUMMARY:
            self.summary = values
            return
        if self._skipped(kind, values.values()):
            self._tail.append((self.offered, line, step, values))
            return
        self._append(line, step, kind, values)

    def _append(self, line: int, step: float | None, kind: int,
                values: dict[str, float | None]) -> None:
        row = len(self.steps)
        self.steps.append(math.nan if step is None else float(step))
        self.lines.append(line)
        self.kinds.append(kind)
        index = self._key_index
        for key, value in values.items():
            column = index.get(key)
            if column is None:
                if len(self.keys) >= MAX_KEYS:
                    self.ignored_keys += 1
                    continue  # a pathological log with endless distinct keys
                column = index[key] = len(self.keys)
                self.keys.append(key)
            self.cell_rows.append(row)
            self.cell_keys.append(column)
            self.cell_values.append(math.nan if value is None else value)
            self.cell_states.append(NONE if value is None else PRESENT)

    def add_printed(self, lines: list[int], steps: list[int | None], bodies: list[str]) -> int:
        """Append the records of printed metrics dicts (`{'loss': 1.2, ...}` from `{'` on,
        one per body). A run prints the same keys in the same order step after step, so each
        key sequence met becomes one compiled pattern: a record of a known shape costs one
        match, its numbers converted and its cells appended a column at a time. Other
        records are read item by item. Returns the line of the last training record (0 if
        none)."""
        last_train = 0
        for line, step, body in zip(lines, steps, bodies, strict=True):
            kind = self._add_known_shape(line, step, body)
            if kind is None:
                kind = self._add_items(line, step, body)
            if kind == TRAIN:
                last_train = line
        return last_train

    def _add_known_shape(self, line: int, step: int | None, body: str) -> int | None:
        for position, shape in enumerate(self._shapes):
            found = shape.pattern.match(body)
            if found is None:
                continue
            if position:  # the shape met last is tried first
                self._shapes.insert(0, self._shapes.pop(position))
            try:
                numbers = list(map(float, found.groups()))
            except ValueError:
                return None  # a None or a numpy repr among them: read item by item
            if shape.step_at is not None:
                own_step = numbers.pop(shape.step_at)
                step = int(own_step) if math.isfinite(own_step) else step
            if self._skipped(shape.kind, numbers):
                self._tail.append((self.offered, line, step, (shape, numbers)))
                return shape.kind
            row = len(self.steps)
            self.steps.append(math.nan if step is None else float(step))
            self.lines.append(line)
            self.kinds.append(shape.kind)
            self.cell_rows.extend(repeat(row, len(numbers)))
            self.cell_keys.extend(shape.columns)
            self.cell_values.extend(numbers)
            self.cell_states.extend(shape.present)
            return shape.kind
        return None

    def _add_items(self, line: int, step: int | None, body: str) -> int | None:
        """One record read item by item (and its key sequence learnt as a shape)."""
        values: dict[str, float | None] = {}
        for key, raw in _PRINTED_ITEM.findall(body):
            value = printed_value(raw)
            if value is not _SKIP:
                values[key] = value
        keys = tuple(values)
        own_step = next((values.pop(k) for k in STEP_KEYS if k in values), None)
        if not values:
            return None
        if own_step is not None and math.isfinite(own_step):
            step = int(own_step)
        kind = record_kind(values)
        self.add(line, step, values, kind)
        if kind != SUMMARY and len(self._shapes) < MAX_SHAPES and \
                self._key_index.keys() >= values.keys():
            shape = _Shape.of(keys, kind, self._key_index)
            self._shapes.append(shape)
            if kind == TRAIN and shape.step_at is None:
                self.bulk_shapes.append(BulkShape(keys, np.frombuffer(shape.columns,
                                                                      dtype=np.uint16)))
        return kind

    def training_slots(self, count: int) -> tuple[np.ndarray, int]:
        """For the next `count` training records, all of them finite: which the table keeps
        (their offsets among them, at most as many as fit before it is full) and how many
        records that decision covers. Those are counted as logged; `_skipped` decides the
        same for records added one at a time, and the table is thinned first when full."""
        if len(self.steps) >= MAX_ROWS:
            self._thin()
        room = MAX_ROWS - len(self.steps)
        first = -(self.offered + 1) % self.stride
        kept = np.arange(first, count, self.stride)[:room]
        used = int(kept[-1]) + 1 if len(kept) == room else count
        self.offered += used
        return kept, used

    def append_training(self, lines: np.ndarray, steps: np.ndarray, texts: list[bytes],
                        shape: int) -> None:
        """Append training records that `training_slots` kept, each a regular record of the
        bulk shape numbered `shape` (`texts`: each from its `{` to its line's end). Their
        values are read by `settle`, once the thinning has had its say: on a long log most
        records kept for a while are dropped again before the end."""
        columns = self.bulk_shapes[shape].columns
        count, width = len(texts), len(columns)
        row = len(self.steps)
        self.steps.frombytes(steps.astype(np.float64).tobytes())
        self.lines.frombytes(lines.astype(np.int64).tobytes())
        self.kinds.frombytes(bytes([TRAIN]) * count)
        rows = np.arange(row, row + count, dtype=np.int32)
        self.cell_rows.frombytes(np.repeat(rows, width).tobytes())
        self.cell_keys.frombytes(np.tile(columns, count).tobytes())
        self.cell_values.frombytes(bytes(8 * count * width))
        self.cell_states.extend(bytes([PENDING]) * (count * width))
        self._pending_rows.frombytes(rows.tobytes())
        self._pending_shapes.extend(repeat(shape, count))
        self._pending_texts += texts

    def hold(self, offered: np.ndarray, lines: np.ndarray, steps: np.ndarray,
             texts: list[bytes], shape: int) -> None:
        """Keep aside training records read in bulk that `training_slots` left out (each
        numbered among the training records logged), in case they are among the source's
        last TAIL: `settle` adds those."""
        self._tail.extend(zip(offered.tolist(), lines.tolist(), steps.tolist(),
                              ((shape, text) for text in texts), strict=True))

    def settle(self) -> None:
        """Add the source's last TAIL training records that the thinning left out, and read
        the values of the records added in bulk that are still kept: per bulk shape, one RE2
        call over their texts."""
        self._close_tail()
        if not self._pending_texts:
            return
        rows = np.frombuffer(self._pending_rows, dtype=np.int32)
        shapes = np.frombuffer(self._pending_shapes, dtype=np.int16)
        first_cells = np.searchsorted(np.frombuffer(self.cell_rows, dtype=np.int32), rows)
        values = np.frombuffer(self.cell_values, dtype=np.float64)
        states = np.frombuffer(self.cell_states, dtype=np.uint8)
        for shape in np.unique(shapes).tolist():
            keys = self.bulk_shapes[shape].keys
            which = np.flatnonzero(shapes == shape)
            texts = [self._pending_texts[i] for i in which.tolist()]
            starts = np.cumsum([0] + [len(text) + 1 for text in texts[:-1]])
            read, _ = numbers(b"\n".join(texts), starts, values_pattern(keys), len(keys))
            cells = first_cells[which][:, None] + np.arange(len(keys))
            values[cells] = read
            states[cells] = PRESENT
        self._pending_rows, self._pending_shapes = array("i"), array("h")
        self._pending_texts = []

    def _close_tail(self) -> None:
        """Add the held records among the last TAIL training records logged, each after
        the rows of the lines before it."""
        held = [record for record in self._tail if record[0] > self.offered - TAIL]
        self._tail.clear()
        first = len(self.steps)
        for _, line, step, record in held:
            if isinstance(record, dict):
                self._append(line, step, TRAIN, record)
            elif isinstance(record[0], _Shape):  # read by a shape's pattern
                names = [self.keys[column] for column in record[0].columns]
                self._append(line, step, TRAIN, dict(zip(names, record[1], strict=True)))
            else:  # read in bulk: its values are read by `settle`
                self.append_training(np.array([line]), np.array([step], dtype=np.float64),
                                     [record[1]], record[0])
        if held:
            self._merge_rows(first)

    def _merge_rows(self, first: int) -> None:
        """Move the rows from `first` on among the rows before, by their lines."""
        lines = np.frombuffer(self.lines, dtype=np.int64)
        places = np.arange(len(lines), dtype=np.float64)
        places[first:] = np.searchsorted(lines[:first], lines[first:], side="right") - 0.5
        order = np.argsort(places, kind="stable")
        if (order[first:] != np.arange(first, len(lines))).any():
            self._take_rows(order)

    def _skipped(self, kind: int, values: Iterable[float | None]) -> bool:
        """Whether a training record is left out to keep the table under MAX_ROWS: past
        that size only every `stride`-th is kept, and every one that holds a NaN or an inf.
        Also thins the table when it reaches MAX_ROWS."""
        if len(self.steps) >= MAX_ROWS:
            self._thin()
        if kind != TRAIN:
            return False
        self.offered += 1
        if self.stride == 1 or self.offered % self.stride == 0:
            return False
        try:  # one sum is finite when every value is (a sum that overflows keeps the record)
            return math.isfinite(sum(values))
        except TypeError:  # a value logged as None
            return all(v is not None and math.isfinite(v) for v in values)

    def anticipate(self, share_read: float) -> None:
        """Raise the stride now to what the whole source will need, judged by the training
        records logged in the share of it read so far (once there are `MAX_ROWS // 10`),
        thinning what is kept to match: on a long log the records that the thinning would
        drop later are then not read at all. Once `ANTICIPATE_AFTER` of the source is read,
        the rest is judged as dense as what was read; before, once the source has logged
        more than MAX_ROWS (it needs thinning), it is taken to hold 1 / ANTICIPATE_AFTER
        times the records so far (a first block dense with records says little of the rest):
        at worst, no record after, the table keeps MAX_ROWS / 8 of them, as an estimate just
        past that share can leave it. The stride is the largest
        power of two at most the expected records over MAX_ROWS, so an estimate that falls
        short of the truth, or exceeds it less than twice over, ends at the stride the table
        would have reached."""
        if self.offered < MAX_ROWS // 10 or (share_read < ANTICIPATE_AFTER
                                              and self.offered < MAX_ROWS):
            return
        expected = self.offered / max(share_read, ANTICIPATE_AFTER)
        while self.stride * 2 * MAX_ROWS <= expected:
            self._thin()

    def _thin(self) -> None:
        """Keep every other training record (and every evaluation, and every record with a
        non-finite value); later records are kept at the doubled stride. When evaluations
        and non-finite records are most of a full table (a NaN storm), they are thinned
        too, keeping the first and the last of each."""
        kinds = np.frombuffer(self.kinds, dtype=np.int8)
        rows = np.frombuffer(self.cell_rows, dtype=np.int32)
        values = np.frombuffer(self.cell_values, dtype=np.float64)
        states = np.frombuffer(self.cell_states, dtype=np.uint8)
        even = np.arange(len(kinds)) % 2 == 0
        nonfinite = np.zeros(len(kinds), dtype=bool)
        nonfinite[rows[~np.isfinite(values) & (states == PRESENT)]] = True
        keep = even | (kinds != TRAIN) | nonfinite
        if len(kinds) >= MAX_ROWS and keep.sum() > len(kinds) * 3 // 4:
            keep = even.copy()
            for protected in (np.flatnonzero(nonfinite), np.flatnonzero(kinds != TRAIN)):
                if len(protected):
                    keep[[protected[0], protected[-1]]] = True
        self._take_rows(np.flatnonzero(keep))
        self.stride *= 2

    def _take_rows(self, order: np.ndarray) -> None:
        """Keep the rows at `order` (their indexes, in their new order), with their cells
        and, for those read in bulk, their texts; drop the others."""
        moved_to = np.full(len(self.steps), -1, dtype=np.int32)
        moved_to[order] = np.arange(len(order), dtype=np.int32)
        rows = moved_to[np.frombuffer(self.cell_rows, dtype=np.int32)]
        cells = np.flatnonzero(rows >= 0)
        cells = cells[np.argsort(rows[cells], kind="stable")]
        if self._pending_texts:
            pending = moved_to[np.frombuffer(self._pending_rows, dtype=np.int32)]
            held = pending >= 0
            self._pending_rows = array("i", pending[held].tobytes())
            self._pending_shapes = array("h", np.frombuffer(self._pending_shapes,
                                                            dtype=np.int16)[held].tobytes())
            self._pending_texts = list(compress(self._pending_texts, held.tolist()))
        self.steps = array("d", np.frombuffer(self.steps, dtype=np.float64)[order].tobytes())
        self.lines = array("q", np.frombuffer(self.lines, dtype=np.int64)[order].tobytes())
        self.kinds = array("b", np.frombuffer(self.kinds, dtype=np.int8)[order].tobytes())
        self.cell_rows = array("i", rows[cells].tobytes())
        self.cell_keys = array("H", np.frombuffer(self.cell_keys, dtype=np.uint16)[cells]
                               .tobytes())
        self.cell_values = array("d", np.frombuffer(self.cell_values,
                                                    dtype=np.float64)[cells].tobytes())
        self.cell_states = bytearray(np.frombuffer(self.cell_states,
                                                   dtype=np.uint8)[cells].tobytes())

    def row(self, index: int) -> Row:
        """One record back, as a dict of its logged values."""
        self.settle()
        lo, hi = bisect_left(self.cell_rows, index), bisect_right(self.cell_rows, index)
        values = {self.keys[self.cell_keys[i]]: (None if self.cell_states[i] == NONE
                                                 else self.cell_values[i])
                  for i in range(lo, hi)}
        return Row(self.steps[index], self.kinds[index], self.source, self.lines[index], values)

    def last(self, kind: int = TRAIN) -> Row | None:
        """The last record of a kind (the table settled first: its tail rows are in)."""
        self.settle()
        for index in range(len(self.kinds) - 1, -1, -1):
            if self.kinds[index] == kind:
                return self.row(index)
        return None

