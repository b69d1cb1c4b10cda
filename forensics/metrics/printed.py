"""The RE2 patterns of a printed metrics dict of a known key sequence.

HF Trainer, TRL and axolotl print `{'loss': 1.23, ..., 'epoch': 0.5}` with the same keys in
the same order step after step. Once a key sequence is known, one pattern tells a record
of it apart (`bulk_pattern`: every value a plain finite number, the dict ending its line)
and another reads its values (`values_pattern`), each over many records in one RE2 call
(`metrics.spans`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

#: a value Python prints for a finite float (no `nan`, `inf`, `None`, `1_000`, `1e400`)
NUMBER = r"-?(?:[0-9]{1,40}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][-+]?[0-9]{1,2})?"
_SPECIAL = frozenset("\\.+*?()|[]{}^$-#&~")


def _literal(text: str) -> str:
    """`text` as an RE2 literal (RE2 rejects Python's escapes of letters and spaces)."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def _record_pattern(keys: tuple[str, ...], value: Callable[[int], str], end: str = "") -> str:
    """An anchored RE2 pattern of a printed dict of `keys` whose i-th value matches
    `value(i)` (quoted, as Transformers 5.x prints them, or not), followed by `end`."""
    items = ", ".join(f"'{_literal(key)}': '?{value(i)}'?" for i, key in enumerate(keys))
    return "^\\{" + items + "\\}" + end


@functools.lru_cache(maxsize=64)
def bulk_pattern(keys: tuple[str, ...]) -> str:
    """The RE2 pattern of a regular record of `keys`: the table's own shape pattern with
    every value a plain finite number, the dict ending its line (so no `'eval_` after it
    makes it an evaluation's)."""
    return _record_pattern(keys, lambda _: f"(?:{NUMBER})", "[ \\t\\r]*(?:\\n|$)")


@functools.lru_cache(maxsize=64)
def values_pattern(keys: tuple[str, ...]) -> str:
    """The RE2 pattern that reads the values of a record `bulk_pattern` found regular: each
    value as the run of number characters it is (cheaper to compile and to run than the
    number grammar, which told the record regular already)."""
    return _record_pattern(keys, lambda i: f"(?P<g{i}>[-+.eE0-9]+)")
