"""The metric shapes the line pass reads one line at a time: DeepSpeed's step and memory lines,
and checkpoint saves (printed metrics dicts: `MetricsTable.add_printed`; progress bars:
`metrics.progress`)."""

from __future__ import annotations

import regex

_DEEPSPEED_STEP = regex.compile(
    r"\bstep=(?P<step>\d+), skipped=(?P<skipped>\d+), lr=\[(?P<lr>[-+\d.e]+)"
)
_DEEPSPEED_MEMORY = regex.compile(
    r"global_step=(?P<step>\d+),.*?MemAllocated=(?P<alloc>[\d.]+)GB, "
    r"MaxMemAllocated=(?P<max_alloc>[\d.]+)GB"
)


def deepspeed_step(body: str) -> tuple[int, dict[str, float | None]] | None:
    """DeepSpeed's `step=N, skipped=K, lr=[...]` and memory lines as (step, values)."""
    found = _DEEPSPEED_STEP.search(body)
    if found is not None:
        return int(found["step"]), {"learning_rate": float(found["lr"]),
                                    "skipped_steps": float(found["skipped"])}
    found = _DEEPSPEED_MEMORY.search(body)
    if found is not None:
        return int(found["step"]), {"memory/alloc_gb": float(found["alloc"]),
                                    "memory/max_alloc_gb": float(found["max_alloc"])}
    return None


_CHECKPOINT = regex.compile(r"Saving model checkpoint to (?P<path>\S*?checkpoint-(?P<step>\d+))")


def checkpoint_saved(body: str) -> tuple[str, int] | None:
    """(path, step) of a "Saving model checkpoint to .../checkpoint-N" line."""
    found = _CHECKPOINT.search(body)
    return (found["path"], int(found["step"])) if found else None
