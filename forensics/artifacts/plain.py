"""Typed reads of unpickled plain data, for the memory snapshot and Flight Recorder readers:
a field of the wrong type becomes one `malformed` InputError that names the file and the
field, and every element a walk reads counts against a budget (shared references make a
small pickle expand without end, so the budget counts each visit, not each object)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from forensics.errors import InputError

#: integers a dump or snapshot may hold: what its C++ writer can write
INT_RANGE = (-(1 << 63), 1 << 64)

Where = tuple[str | int, ...]  # a field's path: ("entries", 3, "collective_seq_id")


def describe(value: object) -> str:
    """A value as an error message shows it: short, on one line, never the whole of it (a
    pickled value can be a gigabyte, or nested too deep to print)."""
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        bits = value.bit_length()
        return repr(value) if bits <= 64 else f"an integer of {bits} bits"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def field_path(where: Where) -> str:
    """`entries[3].collective_seq_id` from its parts."""
    text = ""
    for part in where:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier() and len(part) <= 40:
            text += f".{part}" if text else part
        else:
            text += f"[{describe(part)}]"
    return text


class PlainReader:
    """Reads one file's plain data field by field: `what` names the kind of file in errors,
    `budget` caps the elements a walk reads (each container item, each visit)."""

    def __init__(self, source: str, what: str, budget: int = 0) -> None:
        self.source = source
        self.what = what
        self.budget = budget
        self.left = budget

    def malformed(self, where: Where, value: object, expected: str) -> InputError:
        """The error for a field that holds the wrong type."""
        return InputError(f"{self.source}: malformed {self.what}: {field_path(where)} is "
                          f"{describe(value)}, not {expected}")

    def spend(self, count: int) -> None:
        """Count `count` elements read; past the budget, the walk stops with an error."""
        self.left -= count
        if self.left < 0:
            raise InputError(f"{self.source}: {self.what} too large to read: more than "
                             f"{self.budget:,} elements once shared references are expanded")

    def mapping(self, value: object, where: Where) -> Mapping:
        """`value` as a dict."""
        if not isinstance(value, dict):
            raise self.malformed(where, value, "a dict")
        return value

    def items(self, parent: Mapping, key: str, where: Where, spend: bool = True) -> Sequence:
        """A list field (None or missing: empty), its items counted against the budget
        unless `spend` is False (a walk that counts what it reads of them itself)."""
        value = parent.get(key)
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise self.malformed((*where, key), value, "a list")
        if spend:
            self.spend(len(value))
        return value

    def integer(self, parent: Mapping, key: str, where: Where,
                default: int | None = 0) -> int | None:
        """An integer field (None or missing: `default`)."""
        value = parent.get(key)
        return default if value is None else self.as_int(value, (*where, key))

    def text(self, parent: Mapping, key: str, where: Where,
             default: str | None = None) -> str | None:
        """A string field (None or missing: `default`)."""
        value = parent.get(key)
        return default if value is None else self.as_text(value, (*where, key))

    def as_int(self, value: object, where: Where) -> int:
        """`value` as an integer; a bool, a float (NaN, 1.0), a string or None is
        malformed."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.malformed(where, value, "an integer")
        if not INT_RANGE[0] <= value < INT_RANGE[1]:
            raise self.malformed(where, value, "a 64-bit integer")
        return value

    def as_text(self, value: object, where: Where) -> str:
        """`value` as a string."""
        if not isinstance(value, str):
            raise self.malformed(where, value, "a string")
        return value
