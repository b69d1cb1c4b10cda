"""Time budgets of the hardening tests, scaled to how fast the machine runs right now.

A budget says that a hostile input cannot make a command run away (a pickle bomb, a 2 GB
line), not how fast the command is: the figures of speed come from `bench/`. The shared
machines the suite runs on drift between phases several times slower than their usual speed,
and a fixed number of seconds then fails for the machine's sake. So a budget is stretched by
the ratio of a fixed pure-Python workload's time now to its time on an ordinary day (never
shrunk): a regression that multiplies the time still fails.
"""

from __future__ import annotations

import time

_STEPS = 5_000_000  # steps of an empty loop in a function: ~0.07 s in a fast phase of the
_ORDINARY_SECONDS = 0.07  # 2-core machines the suite runs on (0.27 s in a slow one)
_REMEASURE_AFTER = 30.0  # seconds a measured slowness is trusted
_measured: tuple[float, float] | None = None  # (when, slowness)


def _loop_seconds() -> float:
    """The best of three timings of the fixed workload."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(_STEPS):
            pass
        best = min(best, time.perf_counter() - start)
    return best


def slowness() -> float:
    """How many times slower than an ordinary day the machine runs now (at least 1)."""
    global _measured
    now = time.monotonic()
    if _measured is None or now - _measured[0] > _REMEASURE_AFTER:
        _measured = (now, max(1.0, _loop_seconds() / _ORDINARY_SECONDS))
    return _measured[1]


def budget(seconds: float) -> float:
    """`seconds`, stretched by the machine's present slowness."""
    return seconds * slowness()
