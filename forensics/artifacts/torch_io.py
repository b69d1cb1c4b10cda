"""The parts of checkpoint reading that need PyTorch: `.bin`/`.pt` files (loaded with
`weights_only=True`, never arbitrary code) and reductions on a CUDA device. Tensors are
reduced a chunk at a time, and a view larger than the storage it was saved with (a
stride-0 `expand`) is sampled, never materialized."""

from __future__ import annotations

import math
import pickle
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

from forensics.artifacts.restricted import PICKLE_MAX_DEPTH, PICKLE_MAX_ELEMENTS
from forensics.artifacts.tensors import CHUNK, TORCH_HINT, TensorStats, skipped
from forensics.errors import InputError
from forensics.text import one_line

#: elements of a view larger than its storage that are reduced (the first ones); the rest
#: of such a tensor is not read, and its stats say so
TENSOR_MAX_ELEMENTS = 1 << 24


def _torch():
    try:
        import torch
    except ImportError as err:
        raise InputError(f"this needs PyTorch; {TORCH_HINT}") from err
    return torch


#: a torch file read whole into memory (the legacy, non-zip format, or a zip entry that is
#: compressed) may be at most this large; the zip format torch.save writes is memory-mapped
WHOLE_READ_MAX = 64 * 1024 * 1024


def _whole_read_problem(file: Path) -> str | None:
    """Why loading `file` would read more than WHOLE_READ_MAX into memory, or None."""
    try:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                packed = [i for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED
                          and i.file_size > WHOLE_READ_MAX]
            if packed:
                return (f"its entry {packed[0].filename!r} is compressed and would expand to "
                        f"{packed[0].file_size / 2**20:,.0f} MiB in memory")
            return None
        size = file.stat().st_size
    except (OSError, zipfile.BadZipFile, ValueError):
        return None  # torch's own loader says what is wrong
    if size > WHOLE_READ_MAX:
        return (f"a legacy (non-zip) torch file of {size / 2**20:,.0f} MiB would be read whole "
                "into memory; re-save it with torch.save (zip format) or as safetensors")
    return None


def load_state(file: Path) -> object:
    """A torch checkpoint file's contents, tensors and plain data only; a file that would be
    read whole into memory past WHOLE_READ_MAX is refused."""
    if (problem := _whole_read_problem(file)) is not None:
        raise InputError(f"{file}: not read: {problem}")
    torch = _torch()
    try:
        with warnings.catch_warnings():  # torch's notes on sparse formats are not ours to print
            warnings.simplefilter("ignore")
            try:
                return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
                return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(f"{file}: holds Python objects beyond tensors; refusing to unpickle "
                         f"arbitrary code (weights_only=True): {str(err).splitlines()[0]}") from err
    except MemoryError as err:
        raise InputError(f"{file}: not a readable torch checkpoint (a length in it asks for "
                         "more memory than there is)") from err
    except Exception as err:  # torch's loader raises a zoo of types on a corrupt file
        raise InputError(f"{file}: not a readable torch checkpoint ({type(err).__name__}: "
                         f"{one_line(str(err)[:300])})") from err


def flatten(value: object, prefix: str = "", source: str = "checkpoint"
            ) -> Iterator[tuple[str, object]]:
    """(dotted name, tensor) pairs of a nested state dict, optimizer state included; walked
    without recursion, each container once, within the pickle budgets."""
    torch = _torch()
    stack: list[tuple[str, object, int]] = [(prefix, value, 0)]
    seen: set[int] = set()
    elements = 0
    while stack:
        name, item, depth = stack.pop()
        if isinstance(item, torch.Tensor):
            yield name, item
            continue
        if not isinstance(item, dict | list | tuple) or id(item) in seen:
            continue
        seen.add(id(item))
        elements += len(item)
        if depth >= PICKLE_MAX_DEPTH or elements > PICKLE_MAX_ELEMENTS:
            raise InputError(f"{source}: not read: nested deeper than {PICKLE_MAX_DEPTH:,} "
                             f"levels or more than {PICKLE_MAX_ELEMENTS:,} elements")
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        stack += reversed([(f"{name}.{_key(key)}" if name else _key(key), child, depth + 1)
                           for key, child in pairs])


def _key(key: object) -> str:
    """A state dict key as part of a dotted name (a string, a number, else its type)."""
    if isinstance(key, str):
        return key
    if isinstance(key, int) and key.bit_length() <= 64:
        return str(key)
    return f"<{type(key).__name__}>"


def check_device(device: str) -> str:
    """`device`, or InputError when PyTorch cannot reach it."""
    torch = _torch()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is visible to PyTorch")
    return device


def values_of(tensor: object) -> tuple[object | None, str]:
    """The tensor whose elements are reduced, and a note: a dense tensor's own values, a
    sparse tensor's stored values, the real part and imaginary part of complex ones side by
    side, or None for a tensor that holds no data."""
    torch = _torch()
    if tensor.is_meta:
        return None, "skipped: a meta tensor, no data was saved"
    if tensor.is_quantized or tensor.is_nested:
        return None, f"skipped: a {'quantized' if tensor.is_quantized else 'nested'} tensor"
    note = ""
    if tensor.layout != torch.strided:
        tensor = tensor._values() if tensor.layout == torch.sparse_coo else tensor.values()
        note = f"sparse: stats over the {tensor.numel():,} stored values"
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor)
    return tensor, note


def chunks_of(tensor: object) -> tuple[Iterator[object], str]:
    """The tensor's elements, CHUNK at a time (a view of them, or a copy of that size), and
    a note when they are sampled: a view whose elements outnumber its storage's (a stride-0
    `expand`) gives its first TENSOR_MAX_ELEMENTS elements only."""
    storage = tensor.untyped_storage().nbytes() // max(tensor.element_size(), 1)
    if tensor.numel() <= max(storage, TENSOR_MAX_ELEMENTS):
        return _rows(tensor, CHUNK, tensor.numel()), ""
    note = (f"sampled: the first {TENSOR_MAX_ELEMENTS:,} of {tensor.numel():,} elements (a "
            f"view over a storage of {storage:,})")
    return _rows(tensor, CHUNK, TENSOR_MAX_ELEMENTS), note


def _rows(tensor: object, limit: int, budget: int) -> Iterator[object]:
    """Flat pieces of at most `limit` elements, in order, `budget` elements in all; a piece
    is a view where the tensor's layout allows, else a copy of at most `limit` elements."""
    if tensor.dim() == 0 or tensor.numel() <= limit:
        if budget > 0:
            yield tensor.reshape(-1)[:budget]
    elif tensor.dim() == 1:
        for start in range(0, min(tensor.shape[0], budget), limit):
            yield tensor[start:min(start + limit, budget)]
    elif tensor[0].numel() > limit:  # a row is too large: each is cut the same way
        for row in tensor:
            if budget <= 0:
                return
            yield from _rows(row, limit, budget)
            budget -= row.numel()
    else:
        step = limit // tensor[0].numel()
        for start in range(0, tensor.shape[0], step):
            if budget <= 0:
                return
            piece = tensor[start:start + step].reshape(-1)[:budget]
            yield piece
            budget -= piece.numel()


def tensor_health(name: str, tensor: object, device: str) -> TensorStats:
    """One tensor's stats, reduced on `device` a chunk at a time."""
    torch = _torch()
    dtype, shape = str(tensor.dtype).replace("torch.", ""), tuple(tensor.shape)
    values, note = values_of(tensor)
    if values is None:
        return skipped(name, dtype, shape, note)
    chunks, sampled = chunks_of(values)
    nan = inf = 0
    low, high, squares = math.inf, -math.inf, 0.0
    for chunk in chunks:
        wide = chunk.to(device=device, dtype=torch.float64)
        finite = torch.isfinite(wide)
        if not bool(finite.all()):
            nan += int(torch.isnan(wide).sum())
            inf += int(torch.isinf(wide).sum())
            wide = wide[finite]
        if wide.numel():
            low, high = min(low, float(wide.min())), max(high, float(wide.max()))
            squares += float(torch.dot(wide, wide))
    note = "; ".join(n for n in (note, sampled) if n)
    if low == math.inf:
        return TensorStats(name, dtype, shape, nan, inf, math.nan, math.nan, 0.0,
                           math.sqrt(squares), note)
    return TensorStats(name, dtype, shape, nan, inf, low, high, max(abs(low), abs(high)),
                       math.sqrt(squares), note)


def torch_tensor_stats(file: Path, device: str = "cpu") -> Iterator[TensorStats]:
    """Stats of every tensor in a torch checkpoint file, reduced on `device`."""
    device = check_device(device)
    for name, tensor in flatten(load_state(file), source=str(file)):
        yield tensor_health(name, tensor, device)


def torch_relative_changes(first: Path, second: Path) -> list[tuple[str, float]]:
    """||b - a|| / ||a|| per tensor of two torch checkpoint files (tensors whose values are
    not read whole, sampled or sparse or without data, are left out)."""
    torch = _torch()
    other = dict(flatten(load_state(second), source=str(second)))
    changes = []
    for name, tensor in flatten(load_state(first), source=str(first)):
        peer = other.get(name)
        if peer is None or peer.shape != tensor.shape:
            continue
        (a, note_a), (b, note_b) = values_of(tensor), values_of(peer)
        if a is None or b is None or note_a or note_b:
            continue
        (pieces_a, sampled_a), (pieces_b, sampled_b) = chunks_of(a), chunks_of(b)
        if sampled_a or sampled_b:
            continue
        base = diff = 0.0
        for x, y in zip(pieces_a, pieces_b, strict=True):
            x64, y64 = x.to(torch.float64), y.to(torch.float64)
            base += float(torch.dot(x64, x64))
            delta = y64 - x64
            diff += float(torch.dot(delta, delta))
        changes.append((name, math.sqrt(diff) / math.sqrt(base) if base else math.inf))
    return changes
