"""How the C heap of a `forensics` process keeps the memory it frees.

A log is read as 8 MiB blocks, and each block's byte masks and offsets are a few more MiB
freed when the block is done. With glibc's defaults, every such free gives the pages back
(the heap's top is trimmed past 16 MiB) and the next block takes them again: one page fault
per 4 KiB, at the cost of a second read of the whole log. Here the process keeps up to
`KEEP_FREE` at the top of its heap, allocates blocks from the heap rather than by `mmap`,
and has one heap (arena) for all its threads, so that what one thread freed is what the
next block reuses, and the memory kept stays that of one heap.

Only the command and the worker processes of `forensics scan` tune their heap: a program
that imports forensics as a library keeps its own settings. A worker that is spawned rather
than forked tunes its heap once its imports ran, so an arena they made stays.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: mallopt(3) parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

KEEP_FREE = 64 << 20  # freed memory kept at the top of the heap before it is given back
HEAP_BELOW = 32 << 20  # allocations below this come from the heap (glibc's 64-bit maximum)
ARENAS = 1


def _glibc() -> Any:
    """The running C library (a `ctypes.CDLL`) when it is a 64-bit glibc, else None (musl,
    macOS, Windows, a 32-bit process, no ctypes)."""
    if not sys.platform.startswith("linux") or sys.maxsize <= 2**32:
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        import ctypes

        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") else None
    except (ImportError, OSError, ValueError):
        return None


def tune_heap() -> bool:
    """Keep freed block-sized memory for reuse (see the module docstring); False where
    the C library is not glibc or refused a setting."""
    libc = _glibc()
    if libc is None:
        return False
    settings = ((_M_ARENA_MAX, ARENAS), (_M_MMAP_THRESHOLD, HEAP_BELOW),
                (_M_TRIM_THRESHOLD, KEEP_FREE))
    accepted = [libc.mallopt(parameter, value) == 1 for parameter, value in settings]
    return all(accepted)
