"""Unpickling that refuses everything but plain containers: a snapshot or a dump from a
stranger can never run code."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from forensics.errors import InputError

MAX_BYTES = 2 * 1024 * 1024 * 1024


# containers that older pickle protocols name by reference; none of them runs code
_PLAIN = {("builtins", "set"), ("builtins", "frozenset"), ("collections", "OrderedDict")}


class PlainUnpickler(pickle.Unpickler):
    """Only dicts, lists, tuples, sets, strings, bytes, numbers, booleans and None."""

    def find_class(self, module: str, name: str) -> type:
        """Refuse every class and function but the plain containers."""
        if (module, name) in _PLAIN:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only plain data is read from pickles")


def load_plain(path: str | Path) -> object:
    """A pickle of plain data, or InputError (never code execution)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise InputError(f"{path}: larger than 2 GiB")
        with open(path, "rb") as fh:
            return PlainUnpickler(io.BufferedReader(fh)).load()
    except pickle.UnpicklingError as err:
        raise InputError(f"{path}: {err}") from err
    except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError) as err:
        raise InputError(f"{path}: not a readable pickle ({err})") from err
