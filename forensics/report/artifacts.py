"""Markdown reports of checkpoint health and checkpoint differences."""

from __future__ import annotations

import math
import statistics

from forensics.artifacts.checkpoint import TensorStats

OPTIMIZER_BLOWUP = 1e12  # an Adam second moment this large means the gradients exploded
TOP = 10


def render_checkpoint(path: str, stats: list[TensorStats]) -> str:
    """Which tensors hold non-finite values (in model order), and the extremes."""
    params = sum(math.prod(s.shape) for s in stats)
    bad = [s for s in stats if not s.finite]
    lines = [f"## Checkpoint `{path}`", "",
             f"{len(stats)} tensors, {params:,} values; "
             f"{len(bad)} tensor(s) hold NaN or Inf."]
    if bad:
        lines += ["", f"First non-finite tensor in model order: `{bad[0].name}`.", "",
                  "| tensor | dtype | shape | NaN | Inf |", "|---|---|---|---|---|"]
        lines += [f"| `{s.name}` | {s.dtype} | {list(s.shape)} | {s.nan:,} | {s.inf:,} |"
                  for s in bad[:50]]
    optimizer = [s for s in stats if "exp_avg_sq" in s.name
                 and (not s.finite or s.absmax > OPTIMIZER_BLOWUP)]
    if optimizer:
        lines += ["", f"Optimizer state blow-up: {len(optimizer)} `exp_avg_sq` tensor(s) are "
                  f"non-finite or above {OPTIMIZER_BLOWUP:g} (first: `{optimizer[0].name}`); "
                  "resuming this optimizer state will diverge again."]
    largest = sorted((s for s in stats if s.finite), key=lambda s: -s.absmax)[:TOP]
    if largest:
        lines += ["", "Largest magnitudes:", "", "| tensor | abs max | norm |", "|---|---|---|"]
        lines += [f"| `{s.name}` | {s.absmax:.4g} | {s.norm:.4g} |" for s in largest]
    return "\n".join(lines) + "\n"


def render_changes(first: str, second: str, changes: list[tuple[str, float]]) -> str:
    """Which tensors changed most between two checkpoints, and where the change started."""
    lines = [f"## Changes from `{first}` to `{second}`", "",
             f"{len(changes)} tensors compared (relative change ||b - a|| / ||a||)."]
    finite = [c for _, c in changes if math.isfinite(c)]
    if finite:
        median = statistics.median(finite)
        first_outlier = next((n for n, c in changes if not math.isfinite(c)
                              or (median > 0 and c > 10 * median)), None)
        lines += ["", f"Median change {median:.3g}."]
        if first_outlier:
            lines.append(f"First tensor in model order that changed over 10x the median: "
                         f"`{first_outlier}` — where the divergence starts.")
    ranked = sorted(changes, key=lambda nc: -nc[1] if math.isfinite(nc[1]) else -math.inf)
    lines += ["", "| tensor | relative change |", "|---|---|"]
    lines += [f"| `{n}` | {c:.4g} |" for n, c in ranked[:TOP]]
    return "\n".join(lines) + "\n"
