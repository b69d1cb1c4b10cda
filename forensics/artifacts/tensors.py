"""One tensor's health, as every checkpoint reader reports it, and the chunked reduction
they share (a few MB of temporaries, whatever the tensor)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

TORCH_HINT = "install the optional extra: pip install 'forensics[torch]'"
CHUNK = 1 << 20  # elements reduced at a time


@dataclass(frozen=True)
class TensorStats:
    """One tensor's health; `note` says when its values were sampled or not read."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nan: int
    inf: int
    minimum: float
    maximum: float
    absmax: float
    norm: float
    note: str = ""

    @property
    def finite(self) -> bool:
        return self.nan == 0 and self.inf == 0


def skipped(name: str, dtype: str, shape: tuple[int, ...], note: str) -> TensorStats:
    """A tensor whose values were not read, and why."""
    return TensorStats(name, dtype, shape, 0, 0, math.nan, math.nan, 0.0, 0.0, note)


def reduce_chunks(chunks: Iterator[np.ndarray]) -> tuple[int, int, float, float, float, float]:
    """NaN and Inf counts, min, max, abs max and L2 norm over a tensor's chunks. A finite sum
    of squares proves a chunk clean, so the NaN/Inf masks are only built for dirty chunks."""
    nan = inf = 0
    low, high, squares = math.inf, -math.inf, 0.0
    for chunk in chunks:
        wide = chunk.astype(np.float64).ravel()
        total = float(np.dot(wide, wide))
        if not math.isfinite(total):
            bad_nan, bad_inf = np.isnan(wide), np.isinf(wide)
            nan += int(bad_nan.sum())
            inf += int(bad_inf.sum())
            wide = wide[~(bad_nan | bad_inf)]
            total = float(np.dot(wide, wide))
        if wide.size:
            low, high = min(low, float(wide.min())), max(high, float(wide.max()))
            squares += total
    if low == math.inf:
        return nan, inf, math.nan, math.nan, 0.0, math.sqrt(squares)
    return nan, inf, low, high, max(abs(low), abs(high)), math.sqrt(squares)
