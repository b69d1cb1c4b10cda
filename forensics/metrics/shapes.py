"""Checkpoint saves as the line pass reads them (metric lines: `metrics.lineshapes`; printed
metrics dicts: `MetricsTable.add_printed`; progress bars: `metrics.progress`)."""

from __future__ import annotations

import regex

_CHECKPOINT = regex.compile(r"Saving model checkpoint to (?P<path>\S*?checkpoint-(?P<step>\d+))")


def checkpoint_saved(body: str) -> tuple[str, int] | None:
    """(path, step) of a "Saving model checkpoint to .../checkpoint-N" line."""
    found = _CHECKPOINT.search(body)
    return (found["path"], int(found["step"])) if found else None
