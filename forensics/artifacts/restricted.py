"""Unpickling that refuses everything but plain containers, within budgets: a snapshot or a
dump from a stranger can never run code, exhaust memory by a lying length, or nest or share
so much that reading it back takes the stack or the rest of the day."""

from __future__ import annotations

import gc
import io
import pickle
from collections import OrderedDict
from pathlib import Path

from forensics.errors import InputError
from forensics.text import one_line

#: the largest pickle read at all
PICKLE_MAX_BYTES = 2 * 1024 * 1024 * 1024
#: container slots (list, tuple and set items, dict entries) a pickle may hold, each
#: container counted once however often it is referenced; a CUDA memory snapshot with a
#: full allocation history holds a few million
PICKLE_MAX_ELEMENTS = 20_000_000
#: the longest chain of nested containers; snapshots and dumps nest under ten deep
PICKLE_MAX_DEPTH = 1_000

# containers that older pickle protocols name by reference; none of them runs code
_PLAIN = {("builtins", "set"), ("builtins", "frozenset"), ("collections", "OrderedDict")}
_CONTAINER_TYPES = frozenset({list, tuple, dict, set, frozenset, OrderedDict})
# what the C unpickler raises on bytes that are not a pickle of plain data
_UNREADABLE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
               AttributeError, OverflowError, RecursionError)


class Refused(pickle.UnpicklingError):
    """A pickle that names a class or function (it would run code)."""


class PlainUnpickler(pickle.Unpickler):
    """Only dicts, lists, tuples, sets, strings, bytes, numbers, booleans and None."""

    def find_class(self, module: str, name: str) -> type:
        """Refuse every class and function but the plain containers."""
        if (module, name) in _PLAIN:
            return super().find_class(module, name)
        raise Refused(f"refusing to load {module}.{name}: only plain data is read from pickles")


class _ClampedReader(io.BufferedReader):
    """A file whose reads never ask for more than the bytes left in it, so a pickle's length
    field (a FRAME claiming an exabyte) cannot make the reader allocate what the file does
    not hold."""

    def __init__(self, raw: io.RawIOBase, size: int) -> None:
        super().__init__(raw)
        self._size = size

    def read(self, n: int | None = -1) -> bytes:
        left = max(self._size - self.tell(), 0)
        return super().read(left if n is None or n < 0 or n > left else n)


def load_plain(path: str | Path) -> object:
    """A pickle of plain data within the budgets, or InputError (never code execution)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > PICKLE_MAX_BYTES:
            raise InputError(f"{path}: larger than {PICKLE_MAX_BYTES >> 30} GiB")
        if size == 0:
            raise InputError(f"{path}: empty file, not a pickle")
        with open(path, "rb", buffering=0) as raw:
            data = PlainUnpickler(_ClampedReader(raw, size)).load()
    except Refused as err:
        raise InputError(f"{path}: {one_line(str(err)[:300])}") from err
    except MemoryError as err:
        raise InputError(f"{path}: not a readable pickle (a length in it asks for more "
                         "memory than there is)") from err
    except (OSError, *_UNREADABLE) as err:
        raise InputError(f"{path}: not a readable pickle ({type(err).__name__}: "
                         f"{one_line(str(err)[:200])})") from err
    problem = over_budget(data)
    if problem:
        raise InputError(f"{path}: not read: {problem}")
    return data


def over_budget(value: object, max_elements: int = PICKLE_MAX_ELEMENTS,
                max_depth: int = PICKLE_MAX_DEPTH) -> str:
    """Why unpickled data is too big to walk, or "": more than `max_elements` container
    slots (each container counted once), a chain of nested containers longer than
    `max_depth` (through shared containers too), or a container that holds itself.
    Iterative, and linear in the distinct containers however much they are shared."""
    if type(value) not in _CONTAINER_TYPES:
        return ""
    elements = len(value)  # type: ignore[arg-type]
    if elements > max_elements:
        return f"more than {max_elements:,} elements"
    heights: dict[int, int] = {}  # finished containers: the longest chain they start
    on_path = {id(value)}
    # [container, the containers it holds, how many of them were walked, longest chain]
    stack: list[list] = [[value, _inner(value), 0, 1]]
    while stack:
        frame = stack[-1]
        inner, walked = frame[1], frame[2]
        if walked == len(inner):
            stack.pop()
            on_path.discard(id(frame[0]))
            heights[id(frame[0])] = frame[3]
            if stack:
                stack[-1][3] = max(stack[-1][3], frame[3] + 1)
            continue
        child = inner[walked]
        frame[2] = walked + 1
        height = heights.get(id(child))
        if height is None:
            if id(child) in on_path:
                return "a container holds itself (a reference cycle)"
            elements += len(child)  # type: ignore[arg-type]
            if elements > max_elements:
                return f"more than {max_elements:,} elements"
            kids = _inner(child)
            if kids:
                on_path.add(id(child))
                stack.append([child, kids, 0, 1])
            else:
                heights[id(child)] = 1
            height = 0 if kids else 1  # a walked child is checked when it is finished
        if len(stack) + height > max_depth:
            return f"nested deeper than {max_depth:,} levels"
        frame[3] = max(frame[3], height + 1)
    return ""


def _inner(container: object) -> list[object]:
    """The containers a container holds (a dict's keys and values alike)."""
    return [item for item in gc.get_referents(container) if type(item) in _CONTAINER_TYPES]
