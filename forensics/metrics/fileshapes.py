"""Metric files read whole, one registry entry per emitter: HF Trainer's trainer_state.json
(its `log_history`), W&B's wandb-summary.json (a run's last values) and Lightning's
CSVLogger `metrics.csv` (what `self.log` wrote). Each entry names its source kind (the
file names are `inputs.layouts.METRIC_FILES`), reads the parsed file into a table and carries
a real-shaped file with the first record it must give (`tests/test_lineshapes.py` runs
them). Metric lines in logs are `metrics.lineshapes`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import regex

from forensics.metrics.table import MetricsTable, step_kind

Parsed = object  # JSON: what json.loads gave; CSV: a list of {column: cell} dicts


@dataclass(frozen=True)
class FileShape:
    """One emitter's metric file: its source kind, its format, how its records (and their
    steps) are read, and an example file with its first record's (step, values)."""

    kind: str
    format: str  # "json" | "csv"
    read: Callable[[str, Parsed, str], MetricsTable]  # (source, parsed file, its text)
    example: tuple[str, float | None, dict[str, float]]


def _numbers(entry: dict[str, object], skipped: frozenset[str]) -> dict[str, float | None]:
    return {k: (float(v) if v is not None else None) for k, v in entry.items()
            if k not in skipped and (v is None or isinstance(v, (int, float)))
            and not isinstance(v, bool)}


_HISTORY_BOOKKEEPING = frozenset({"step", "total_flos"})  # a log_history entry's, not metrics


def log_history_table(source: str, data: Parsed, text: str = "") -> MetricsTable:
    """A trainer_state.json's `log_history` (keys alphabetical, `step` included, NaN literal):
    each entry's step is its `step`, its line the one its object opens on; `max_steps` is the
    run's total."""
    table = MetricsTable(source)
    history = data.get("log_history", []) if isinstance(data, dict) else []
    history = history if isinstance(history, list) else []
    max_steps = data.get("max_steps") if isinstance(data, dict) else None
    table.max_steps = max_steps if isinstance(max_steps, int) and max_steps > 0 else None
    lines = _entry_lines(text, "log_history")
    if len(lines) != len(history):  # not laid out as json.dumps(indent=...) writes it
        lines = list(range(1, len(history) + 1))
    for line, entry in zip(lines, history, strict=True):
        if not isinstance(entry, dict):
            continue
        step = entry.get("step")
        table.add(line, step if isinstance(step, (int, float)) else None,
                  _numbers(entry, _HISTORY_BOOKKEEPING))
    return table


def _entry_lines(text: str, key: str) -> list[int]:
    """The line each object of the JSON list `key` opens on, in a file laid out as
    `json.dumps(indent=...)` writes it (HF's trainer_state.json): every entry's `{` alone on
    a line at the list's first entry's indentation, until the list's `]`."""
    found = regex.search(rf'"{regex.escape(key)}": \[\n(?P<indent>[ \t]*)\{{\n', text)
    if found is None:
        return []
    indent = found["indent"]
    # the list ends at the first `]` indented less than its entries
    end = regex.compile(rf"^[ \t]{{0,{max(len(indent) - 1, 0)}}}\]", regex.M).search(
        text, found.end())
    opening = regex.compile(rf"^{regex.escape(indent)}\{{$", regex.M)
    first_line = text.count("\n", 0, found.start("indent")) + 1
    starts = [m.start() for m in opening.finditer(text, found.start("indent"),
                                                   end.start() if end else len(text))]
    lines, line, counted = [], first_line, found.start("indent")
    for start in starts:
        line += text.count("\n", counted, start)
        counted = start
        lines.append(line)
    return lines


#: where a W&B summary's step is, the trainer's own first
_STEP_KEYS = ("train/global_step", "global_step", "_step")


def wandb_summary_table(source: str, data: Parsed, text: str = "") -> MetricsTable:
    """A wandb-summary.json: the run's last logged values, one record at the trainer's global
    step where it logged one (HF's `train/global_step`), else at W&B's own `_step` (W&B's
    keys, `_runtime` and the like, left out)."""
    table = MetricsTable(source)
    if isinstance(data, dict):
        numbers = {k: v for k, v in _numbers(data, frozenset(_STEP_KEYS)).items()
                   if not k.startswith("_")}
        step = next((data[k] for k in _STEP_KEYS if isinstance(data.get(k), (int, float))
                     and not isinstance(data[k], bool)), None)
        if numbers:
            table.add(1, step, numbers)
    return table


def csv_metrics_table(source: str, rows: Parsed, text: str = "") -> MetricsTable:
    """Lightning's CSVLogger metrics.csv: one row per logging call, its `step` column the
    global step (`epoch` where there is none), empty cells for what that call did not log;
    a file without either column holds no timeline."""
    table = MetricsTable(source)
    for index, row in enumerate(rows if isinstance(rows, list) else []):
        step = _cell(row.get("step", row.get("epoch")))
        values = {key: value for key, cell in row.items()
                  if key not in ("step", "epoch") and key and (value := _cell(cell)) is not None}
        if step is None or not values:
            continue
        table.add(index + 2, step, values, step_kind(values))  # line 1 is the header
    return table


def _cell(cell: object) -> float | None:
    try:
        return float(cell) if isinstance(cell, str) and cell.strip() else None
    except ValueError:
        return None


FILE_SHAPES = {shape.kind: shape for shape in (
    FileShape("trainer-state", "json", log_history_table, (
        '{"best_metric": null, "epoch": 0.05, "global_step": 40, "log_history": [{"epoch": '
        '0.01, "grad_norm": 1.4185, "learning_rate": 2e-05, "loss": 1.6943, "step": 10}], '
        '"max_steps": 800, "total_flos": 1.2e15}',
        10, {"epoch": 0.01, "grad_norm": 1.4185, "learning_rate": 2e-05, "loss": 1.6943})),
    FileShape("wandb-summary", "json", wandb_summary_table, (
        '{"train/loss": 0.8123, "train/grad_norm": 2.05, "train/learning_rate": 1.2e-05, '
        '"train/epoch": 1.0, "train/global_step": 1200, "_timestamp": 1718003600.5, '
        '"_runtime": 3601, "_step": 119, "_wandb": {"runtime": 3601}}',
        1200, {"train/loss": 0.8123, "train/grad_norm": 2.05, "train/learning_rate": 1.2e-05,
               "train/epoch": 1.0})),
    FileShape("metrics-csv", "csv", csv_metrics_table, (
        "epoch,step,train_loss,val_loss\n0,49,2.4172,\n0,99,2.1034,\n0,99,,2.0517\n",
        49, {"train_loss": 2.4172})),  # the last row is an evaluation (`val_` metrics)
)}
