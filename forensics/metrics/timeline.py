"""The run's metrics as a pandas DataFrame indexed by global step, train and eval rows
apart. Imported only when a job has metrics (pandas is a heavy import)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
import pandas as pd

from forensics.metrics.names import column as metric_column
from forensics.metrics.table import EVAL, KIND_NAMES, PRESENT, TRAIN, MetricsTable
from forensics.text import md_text


@dataclass(frozen=True)
class Timeline:
    """`frame`: one row per record (index `step`; columns `kind`, `source`, `line` and one per
    metric, as logged: NaN where not logged, and NaN/inf where logged so; a metric the log
    named like one of those four is `logged_<name>`); `nonfinite`: which cells were logged as
    NaN or Inf. `train` and `eval` hold finite values only (each made once: every detector
    reads them; nothing may change them)."""

    frame: pd.DataFrame
    nonfinite: pd.DataFrame

    @cached_property
    def clean(self) -> pd.DataFrame:
        return self.frame.mask(self.nonfinite)

    @cached_property
    def train(self) -> pd.DataFrame:
        clean = self.clean
        return clean[clean["kind"] == "train"]

    @cached_property
    def eval(self) -> pd.DataFrame:
        clean = self.clean
        return clean[clean["kind"] == "eval"]

    @property
    def metric_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in BOOKKEEPING]


BOOKKEEPING = ("kind", "source", "line")


def _metric_column(key: str) -> str:
    """The frame column of a logged key: never one of the frame's own names."""
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
    steps = pd.Series(steps).ffill().fillna(0).to_numpy()
    epoch = table.keys.index("epoch") if "epoch" in table.keys else None
    if epoch is not None and epoch in cells.columns:
        steps = _untie(steps, kinds == TRAIN, cells.column(epoch)[0])
    return steps.astype(np.int64)


def _table_frame(table: MetricsTable, cells: _Cells, steps: np.ndarray,
                 keep: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The `keep` records of a table as a frame indexed by their `steps`, and which of its
    cells were logged as NaN or inf."""
    values, bad = {}, {}
    for column in cells.columns:
        data, flags = cells.column(column)
        name = _metric_column(table.keys[column])
        values[name], bad[name] = data[keep], flags[keep]
    index = pd.Index(steps[keep], name="step")
    frame = pd.DataFrame(values, index=index)
    frame.insert(0, "line", np.frombuffer(table.lines, dtype=np.int64)[keep])
    frame.insert(0, "source", table.source)
    kinds = np.frombuffer(table.kinds, dtype=np.int8)[keep]
    codes = np.select([kinds == TRAIN, kinds == EVAL], [0, 1], -1)
    frame.insert(0, "kind", pd.Categorical.from_codes(
        codes, categories=[KIND_NAMES[TRAIN], KIND_NAMES[EVAL]]))
    return frame, pd.DataFrame(bad, index=index)


def _untie(steps: np.ndarray, train: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """Training records that got the same step (a bar tqdm did not redraw between them, `\r`
    updates run together) but moved on in epoch: their step from the epoch, at the steps
    per epoch the untied records show. Steps never go back; the log's own ties stay."""
    firsts = train & ~np.isnan(epochs) & (epochs > 0)
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
        if tied[i] and not np.isnan(epochs[i]):
            guess = round(epochs[i] * per_epoch)
            if guess > previous:
                out[i] = guess
        previous = max(previous, out[i])
    return out


def build_timeline(tables: list[MetricsTable]) -> Timeline | None:
    """One timeline from every source's records: the richest source first (a
    trainer_state.json has exact steps), then later steps that only the logs saw."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return None
    tables.sort(key=lambda t: (not t.source.endswith("trainer_state.json"), -t.count(TRAIN)))
    frames, flags = [], []
    last_step = -1
    for table in tables:  # a frame is built only of the records it keeps
        cells = _Cells(table)
        steps = _table_steps(table, cells)
        keep = steps > last_step if frames else np.ones(len(steps), dtype=bool)
        if keep.any():
            frame, bad = _table_frame(table, cells, steps, keep)
            frames.append(frame)
            flags.append(bad)
            last_step = max(last_step, int(steps[keep].max()))
    frame = pd.concat(frames)
    nonfinite = pd.concat(flags).reindex(columns=frame.columns, fill_value=False)
    return Timeline(frame, nonfinite.fillna(False).astype(bool))


def nonfinite_onset(timeline: Timeline, metrics: tuple[str, ...],
                    kind: str = "train") -> tuple[int, str] | None:
    """The first step at which one of `metrics` was logged as NaN/Inf in records of this
    kind (training or evaluation)."""
    train = timeline.nonfinite[timeline.frame["kind"].to_numpy() == kind]
    firsts = []
    for metric in metrics:
        if metric in train.columns:
            positions = np.flatnonzero(train[metric].to_numpy())
            if len(positions):
                firsts.append((positions[0], metric))
    if not firsts:
        return None
    position = min(p for p, _ in firsts)
    metric = next(m for p, m in firsts if p == position)  # in the order asked for
    return int(train.index[position]), metric


KEY_METRICS = ("loss", "grad_norm", "learning_rate", "reward", "reward_std", "entropy", "kl",
               "completions/mean_length", "eval_loss")
CHART_METRICS = {"sft": ("loss", "grad_norm"), "grpo": ("reward", "entropy"),
                 "dpo": ("loss", "rewards/margins"), "pretrain": ("loss", "grad_norm")}
CHART_POINTS = 40


def window(timeline: Timeline, around: int | None, before: int = 8,
           after: int = 3) -> tuple[tuple[int, tuple[tuple[str, float | None], ...]], ...]:
    """The logged steps around `around` (default: the end), with the key metrics."""
    frame = timeline.frame
    columns = [c for c in (metric_column(frame.columns, m) for m in KEY_METRICS) if c][:6]
    if not columns:
        columns = timeline.metric_columns[:6]
    steps = frame.index.to_numpy()
    end = len(frame) if around is None else int(np.searchsorted(steps, around, side="right"))
    first, stop = max(0, end - before), min(len(frame), end + (0 if around is None else after))
    rows = []
    for i in range(first, stop):
        values = []
        for column in columns:
            value = frame[column].iloc[i]
            logged_bad = column in timeline.nonfinite and bool(timeline.nonfinite[column].iloc[i])
            missing = pd.isna(value) and not logged_bad
            values.append((column, None if missing else float(value)))
        rows.append((int(steps[i]), tuple(values)))
    return tuple(rows)


Series = tuple[tuple[str, tuple[tuple[int, float], ...]], ...]


def chart_series(timeline: Timeline, mode: str) -> Series:
    """Up to CHART_POINTS evenly spaced points of the run's two headline metrics."""
    train = timeline.train
    out = []
    for canonical in CHART_METRICS[mode]:
        metric = metric_column(train.columns, canonical)
        if metric is None:
            continue
        values = train[metric].dropna()
        if len(values) < 2:
            continue
        picks = np.unique(np.linspace(0, len(values) - 1, min(CHART_POINTS, len(values)))
                          .round().astype(int))
        out.append((metric, tuple((int(values.index[i]), float(values.iloc[i])) for i in picks)))
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
