"""Many short spans of one block read by one RE2 pass (Arrow's regex kernels).

A log that prints a metrics record on every step holds ~50,000 records per 8 MiB block;
reading them one Python call at a time is what made such logs 20x slower than grep. Here a
block's spans (each from an offset to the next one, so Arrow sees them without a copy) are
matched or have their groups extracted in one call, and numbers are cast in bulk. Patterns
are anchored at the span's start and never cross a line end, so what follows the record in
its span does not matter.
"""

from __future__ import annotations

import numpy as np

_SLICE = 16384  # spans whose groups are extracted at once (Arrow's buffers stay small)


def _arrow():
    import pyarrow
    import pyarrow.compute

    return pyarrow, pyarrow.compute


def spans(block: bytes, starts: np.ndarray):
    """A binary Arrow array over `block`: element i runs from `starts[i]` (sorted, distinct)
    to the next start (the last one to the block's end)."""
    pa, _ = _arrow()
    offsets = np.append(starts, len(block)).astype(np.int64)
    return pa.Array.from_buffers(pa.large_binary(), len(starts),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(block)])


def _bools(array) -> np.ndarray:
    """An Arrow boolean array (nulls read as False) as a numpy one, from its bits
    (`to_numpy` converts it element by element)."""
    validity, values = array.buffers()[:2]
    count, offset = len(array), array.offset
    bits = np.unpackbits(np.frombuffer(values, dtype=np.uint8), bitorder="little")
    out = bits[offset:offset + count].astype(bool)
    if validity is not None:
        valid = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        out &= valid[offset:offset + count].astype(bool)
    return out


def _floats(array) -> np.ndarray:
    """An Arrow float64 array as a numpy one (nulls as NaN), from its buffers (its
    `to_numpy` imports pandas; see `_mask`)."""
    values = np.frombuffer(array.buffers()[1], dtype=np.float64, count=len(array),
                           offset=array.offset * 8)
    return np.where(_bools(array.is_valid()), values, np.nan) if array.null_count else values


def _mask(values: np.ndarray):
    """A numpy boolean array as an Arrow one, from its bits (`pyarrow.array` would import
    pandas to ask whether it was given a Series, and with pandas loaded RE2 matches the
    longer patterns half as fast: pandas is imported for the report, after the line pass)."""
    pa, _ = _arrow()
    bits = np.packbits(values, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def matching(block: bytes, starts: np.ndarray, pattern: str) -> np.ndarray:
    """Whether each span begins with a match of the RE2 `pattern` (anchored with `^`)."""
    _, pc = _arrow()
    if not len(starts):
        return np.zeros(0, dtype=bool)
    return _bools(pc.match_substring_regex(spans(block, starts), pattern))


def numbers(block: bytes, starts: np.ndarray, pattern: str,
            width: int) -> tuple[np.ndarray, np.ndarray]:
    """The `width` groups of `pattern` (named g0, g1, ...; each a number Python's `float`
    reads too) at each span's start, as a spans x width float matrix, and which spans
    matched (rows of the others are NaN)."""
    pa, pc = _arrow()
    values = np.full((len(starts), width), np.nan)
    matched = np.zeros(len(starts), dtype=bool)
    for first in range(0, len(starts), _SLICE):
        rows = slice(first, first + _SLICE)
        found = pc.extract_regex(spans(block, starts[rows]), pattern)
        hit = _bools(found.is_valid())
        matched[rows] = hit
        if not hit.any():
            continue
        found = found.filter(_mask(hit))
        for column in range(width):
            text = found.field(f"g{column}").cast(pa.large_string())
            values[rows][hit, column] = _floats(text.cast(pa.float64()))
    return values, matched
