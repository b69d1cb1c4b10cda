"""The run's metrics as one table of numpy arrays in step order, train and eval rows apart
(pandas, a heavy import, only for the `forensics timeline` export: `Timeline.to_frame`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np

from forensics.metrics.names import column as metric_column
from forensics.metrics.table import EVAL, KIND_NAMES, PRESENT, TRAIN, MetricsTable
from forensics.text import md_text

BOOKKEEPING = ("kind", "source", "line")


@dataclass(frozen=True, eq=False)
class Metric:
    """One metric's values in record order, with each record's step."""

    name: str
    steps: np.ndarray  # int64
    values: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.values)

    def logged(self) -> Metric:
        """The records that hold a value (NaN dropped)."""
        held = ~np.isnan(self.values)
        return self if held.all() else Metric(self.name, self.steps[held], self.values[held])


@dataclass(frozen=True, eq=False)
class Timeline:
    """One row per record, every source's rows in step order of the sources: `steps`,
    `kinds` (TRAIN or EVAL), `sources` (an index into `source_names`) and `lines`; one
    column per metric in `names` (as logged; a metric the log named like `step` or one of
    BOOKKEEPING is `logged_<name>`): `values` (rows x names; NaN where not logged, NaN/inf
    where logged so) and `nonfinite` (which cells were logged as NaN or inf). Nothing may
    change the arrays: every detector reads them."""

    steps: np.ndarray
    kinds: np.ndarray
    sources: np.ndarray
    source_names: tuple[str, ...]
    lines: np.ndarray
    names: tuple[str, ...]
    values: np.ndarray
    nonfinite: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def metric_columns(self) -> list[str]:
        return list(self.names)

    @cached_property
    def _rows(self) -> dict[int, np.ndarray]:
        return {kind: np.flatnonzero(self.kinds == kind) for kind in (TRAIN, EVAL)}

    def rows(self, kind: int = TRAIN) -> np.ndarray:
        """The positions of the records of a kind, in order."""
        return self._rows[kind]

    def has(self, name: str) -> bool:
        return name in self.names

    def metric(self, name: str, kind: int = TRAIN) -> Metric:
        """A metric's finite values over the records of a kind (NaN where a record did not
        log it or logged it as NaN or inf)."""
        rows, column = self.rows(kind), self.names.index(name)
        values = self.values[rows, column]
        clean = np.where(self.nonfinite[rows, column], np.nan, values)
        return Metric(name, self.steps[rows], clean)

    def logged(self, name: str, kind: int = TRAIN) -> Metric:
        """A metric's finite logged values over the records of a kind."""
        return self.metric(name, kind).logged()

    def to_frame(self):
        """The timeline as a pandas DataFrame indexed by `step`: columns `kind` (categorical),
        `source`, `line` and one per metric (values as logged)."""
        import pandas as pd

        frame = pd.DataFrame(dict(zip(self.names, self.values.T, strict=True)),
                             index=pd.Index(self.steps, name="step"))
        frame.insert(0, "line", self.lines)
        frame.insert(0, "source", np.array(self.source_names, dtype=object)[self.sources]
                     if self.source_names else np.zeros(0, dtype=object))
        codes = np.select([self.kinds == TRAIN, self.kinds == EVAL], [0, 1], -1)
        frame.insert(0, "kind", pd.Categorical.from_codes(
            codes, categories=[KIND_NAMES[TRAIN], KIND_NAMES[EVAL]]))
        return frame


def _metric_column(key: str) -> str:
    """The timeline column of a logged key: never one of the export's own names."""
    return f"logged_{key}" if key in (*BOOKKEEPING, "step") else key


class _Cells:
    """A table's cells, read as numpy arrays, one column at a time (each once)."""

    def __init__(self, table: MetricsTable) -> None:
        self.rows = np.frombuffer(table.cell_rows, dtype=np.int32)
        self.keys = np.frombuffer(table.cell_keys, dtype=np.uint16)
        self.values = np.frombuffer(table.cell_values, dtype=np.float64)
        self.present = np.frombuffer(bytes(table.cell_states), dtype=np.uint8) == PRESENT
        self.records = len(table)
        self.columns = table.columns()  # the keys the timeline gets
        self._read: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def column(self, column: int) -> tuple[np.ndarray, np.ndarray]:
        """One key's values by record (NaN where not logged or logged as None), and which
        of them were logged as NaN or inf."""
        if column not in self._read:
            self._read[column] = self._column(column)
        return self._read[column]

    def _column(self, column: int) -> tuple[np.ndarray, np.ndarray]:
        mine = self.keys == column
        data = np.full(self.records, np.nan)
        data[self.rows[mine]] = np.where(self.present[mine], self.values[mine], np.nan)
        flags = np.zeros(self.records, dtype=bool)
        flags[self.rows[mine]] = self.present[mine] & ~np.isfinite(self.values[mine])
        return data, flags


def _forward_filled(steps: np.ndarray) -> np.ndarray:
    """Each NaN step as the last step before it (0 before the first)."""
    known = ~np.isnan(steps)
    last = np.maximum.accumulate(np.where(known, np.arange(len(steps)), -1))
    return np.where(last >= 0, steps[np.maximum(last, 0)], 0.0)


def _table_steps(table: MetricsTable, cells: _Cells) -> np.ndarray:
    """Each record's step in the timeline."""
    steps = np.frombuffer(table.steps, dtype=np.float64).copy()
    kinds = np.frombuffer(table.kinds, dtype=np.int8)
    own = ~np.isnan(steps)
    stepless = ~own & (kinds == TRAIN)
    if stepless.sum() > own.sum():
        # Most training records came with no step (no bar in the file; another emitter's
        # step lines, such as DeepSpeed's every N steps, are not theirs to share): number
        # them 1, 2, 3 ... in their order
        steps = np.where(stepless, np.cumsum(stepless), steps)
    steps = _forward_filled(steps)
    epoch = table.keys.index("epoch") if "epoch" in table.keys else None
    if epoch is not None and epoch in cells.columns:
        steps = _untie(steps, kinds == TRAIN, cells.column(epoch)[0])
    return steps.astype(np.int64)


@dataclass(frozen=True)
class _Part:
    """The records one table adds to the timeline, by metric name."""

    steps: np.ndarray
    kinds: np.ndarray
    lines: np.ndarray
    columns: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (values, logged non-finite)


def _table_part(table: MetricsTable, cells: _Cells, steps: np.ndarray,
                keep: np.ndarray) -> _Part:
    """The `keep` records of a table, at their `steps`."""
    columns = {}
    for column in cells.columns:
        data, flags = cells.column(column)
        columns[_metric_column(table.keys[column])] = data[keep], flags[keep]
    kinds = np.frombuffer(table.kinds, dtype=np.int8)[keep]
    return _Part(steps[keep], kinds, np.frombuffer(table.lines, dtype=np.int64)[keep], columns)


def _untie(steps: np.ndarray, train: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """Training records that got the same step (a bar tqdm did not redraw between them, `\r`
    updates run together) but moved on in epoch: their step from the epoch, at the steps
    per epoch the untied records show. Steps never go back; the log's own ties stay."""
    firsts = train & np.isfinite(epochs) & (epochs > 0)
    if firsts.sum() < 2:
        return steps
    tied = firsts & np.r_[False, steps[1:] == steps[:-1]]
    if not tied.any():
        return steps
    untied = firsts & ~tied & (steps > 0)
    if not untied.any():
        return steps
    per_epoch = float(np.median(steps[untied] / epochs[untied]))
    out = steps.copy()
    previous = -np.inf
    for i in np.flatnonzero(train):
        if tied[i] and np.isfinite(epochs[i]):
            guess = round(epochs[i] * per_epoch)
            if guess > previous:
                out[i] = guess
        previous = max(previous, out[i])
    return out


def build_timeline(tables: list[MetricsTable]) -> Timeline | None:
    """One timeline from every source's records: the richest source first (a
    trainer_state.json has exact steps), then later steps that only the logs saw."""
    for table in tables:
        table.settle()
    tables = [t for t in tables if len(t)]
    if not tables:
        return None
    tables.sort(key=lambda t: (not t.source.endswith("trainer_state.json"), -t.count(TRAIN)))
    parts: list[_Part] = []
    sources: list[str] = []
    last_step = -1
    for table in tables:  # a part is made only of the records it keeps
        cells = _Cells(table)
        steps = _table_steps(table, cells)
        keep = steps > last_step if parts else np.ones(len(steps), dtype=bool)
        if keep.any():
            parts.append(_table_part(table, cells, steps, keep))
            sources.append(table.source)
            last_step = max(last_step, int(steps[keep].max()))
    return _joined(parts, tuple(sources))


def _joined(parts: list[_Part], sources: tuple[str, ...]) -> Timeline:
    """The parts one after the other; a metric some part did not log is NaN in its rows."""
    names = tuple(dict.fromkeys(name for part in parts for name in part.columns))
    rows = sum(len(part.steps) for part in parts)
    values = np.full((rows, len(names)), np.nan)
    nonfinite = np.zeros((rows, len(names)), dtype=bool)
    first = 0
    for part in parts:
        stop = first + len(part.steps)
        for name, (data, flags) in part.columns.items():
            column = names.index(name)
            values[first:stop, column], nonfinite[first:stop, column] = data, flags
        first = stop
    return Timeline(
        steps=np.concatenate([part.steps for part in parts]),
        kinds=np.concatenate([part.kinds for part in parts]),
        sources=np.repeat(np.arange(len(parts)), [len(part.steps) for part in parts]),
        source_names=sources, lines=np.concatenate([part.lines for part in parts]),
        names=names, values=values, nonfinite=nonfinite)


def nonfinite_onset(timeline: Timeline, metrics: tuple[str, ...],
                    kind: int = TRAIN) -> tuple[int, str] | None:
    """The first step at which one of `metrics` was logged as NaN/Inf in records of this
    kind (training or evaluation)."""
    rows = timeline.rows(kind)
    firsts = []
    for metric in metrics:
        if timeline.has(metric):
            positions = np.flatnonzero(timeline.nonfinite[rows, timeline.names.index(metric)])
            if len(positions):
                firsts.append((positions[0], metric))
    if not firsts:
        return None
    position = min(p for p, _ in firsts)
    metric = next(m for p, m in firsts if p == position)  # in the order asked for
    return int(timeline.steps[rows[position]]), metric


KEY_METRICS = ("loss", "grad_norm", "learning_rate", "reward", "reward_std", "entropy", "kl",
               "completions/mean_length", "eval_loss")
CHART_METRICS = {"sft": ("loss", "grad_norm"), "grpo": ("reward", "entropy"),
                 "dpo": ("loss", "rewards/margins"), "pretrain": ("loss", "grad_norm")}
CHART_POINTS = 40


def window(timeline: Timeline, around: int | None, before: int = 8,
           after: int = 3) -> tuple[tuple[int, tuple[tuple[str, float | None], ...]], ...]:
    """The logged steps around `around` (default: the end), with the key metrics."""
    names = timeline.names
    columns = [c for c in (metric_column(names, m) for m in KEY_METRICS) if c][:6]
    if not columns:
        columns = list(names[:6])
    steps = timeline.steps
    end = len(steps) if around is None else int(np.searchsorted(steps, around, side="right"))
    first, stop = max(0, end - before), min(len(steps), end + (0 if around is None else after))
    positions = [names.index(column) for column in columns]
    rows = []
    for i in range(first, stop):
        values = []
        for column, position in zip(columns, positions, strict=True):
            value = float(timeline.values[i, position])
            missing = value != value and not timeline.nonfinite[i, position]
            values.append((column, None if missing else value))
        rows.append((int(steps[i]), tuple(values)))
    return tuple(rows)


Series = tuple[tuple[str, tuple[tuple[int, float], ...]], ...]


def chart_series(timeline: Timeline, mode: str) -> Series:
    """Up to CHART_POINTS evenly spaced points of the run's two headline metrics."""
    out = []
    for canonical in CHART_METRICS[mode]:
        name = metric_column(timeline.names, canonical)
        if name is None:
            continue
        metric = timeline.logged(name)
        if len(metric) < 2:
            continue
        picks = np.unique(np.linspace(0, len(metric) - 1, min(CHART_POINTS, len(metric)))
                          .round().astype(int))
        out.append((name, tuple((int(metric.steps[i]), float(metric.values[i]))
                                for i in picks)))
    return tuple(out)


def render_table(frame) -> str:
    """A timeline frame as a Markdown table (`forensics timeline --format md`)."""
    columns = [md_text(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    text = cache(md_text)  # log text (a source's name) as a Markdown cell, once each
    for row in frame.itertuples(index=False):
        cells = ["" if isinstance(v, float) and v != v else
                 f"{v:.6g}" if isinstance(v, float) else
                 text(v) if isinstance(v, str) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
