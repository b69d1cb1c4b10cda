"""Byte searches over a whole block.

CPython's `bytes.count` walks a 16 MiB block at about 2 GB/s even for one byte, and at
about 1 GB/s for a short needle (`/5000 [` took 18 ms). One byte is found by a numpy
comparison (about 10 GB/s, and numpy lets go of the GIL, so two blocks are searched at
once); a needle is counted by StringZilla's SIMD search (an 8 MiB block of progress bars,
a bar every 64 bytes: 1.2 ms, where numpy's comparison of the needle's rarest byte and a
check of the others at each took 3 ms).
"""

from __future__ import annotations

import numpy as np
import stringzilla

_PIECE = 1 << 22  # bytes compared at once: a comparison's mask is a byte per byte


def view(block: bytes) -> np.ndarray:
    """The block as a numpy byte array (no copy)."""
    return np.frombuffer(block, dtype=np.uint8)


def _pieces(data: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """`data` in pieces: (offset, view)."""
    return [(at, data[at:at + _PIECE]) for at in range(0, len(data), _PIECE)]


def count_byte(block: bytes, byte: int) -> int:
    """How many times `byte` occurs in the block."""
    return sum(int(np.count_nonzero(piece == byte)) for _, piece in _pieces(view(block)))


def positions(block: bytes, byte: int) -> np.ndarray:
    """Where `byte` occurs in the block, in order."""
    found = [at + np.flatnonzero(piece == byte) for at, piece in _pieces(view(block))]
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def count_occurrences(block: bytes, needle: bytes) -> int:
    """How many times `needle` starts in the block (every start: a needle that can overlap
    itself is counted at each overlap, unlike `bytes.count`)."""
    if not needle:
        return 0
    return stringzilla.count(block, needle, allowoverlap=True)
