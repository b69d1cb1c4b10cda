"""Checkpoint health: per-tensor NaN/Inf counts, ranges and norms, the layers holding
non-finite values in model order, optimizer-state blow-ups, and (with two checkpoints)
which tensors changed most. Streams tensor by tensor; safetensors needs no torch. Headers
and indexes are validated whole before a byte of tensor data is read."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from forensics.artifacts.plain import PlainReader, describe
from forensics.artifacts.tensors import CHUNK, TensorStats, reduce_chunks, skipped
from forensics.errors import ForensicsError, InputError

#: the largest safetensors header read (the format's own limit)
HEADER_MAX_BYTES = 100 << 20
#: the largest `*.index.json` of a sharded checkpoint read
INDEX_MAX_BYTES = 64 << 20

_NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64,
          "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}
# bytes per element of every dtype whose size a header must agree with
_WIDTH = {**{name: np.dtype(kind).itemsize for name, kind in _NUMPY.items()}, "BF16": 2,
          "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors header, validated: its bytes lie in the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


class SafetensorsFile:
    """A .safetensors file read through a memory map: header first, tensors on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        header, length, size = _read_header(path)
        self.start = 8 + length
        # in file order, which is the order the model's state dict was saved in
        self.tensors = sorted(_entries(path, header, size - self.start),
                              key=lambda t: t.begin)

    def chunks(self, entry: TensorEntry) -> Iterator[np.ndarray]:
        """The tensor's values, CHUNK elements at a time (a dtype read here)."""
        width = _WIDTH[entry.dtype]
        if entry.end == entry.begin:
            return
        data = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.start + entry.begin,
                         shape=(entry.end - entry.begin,))
        step = CHUNK * width
        for offset in range(0, len(data), step):
            raw = np.asarray(data[offset:offset + step])
            yield _bf16_to_f32(raw) if entry.dtype == "BF16" else raw.view(_NUMPY[entry.dtype])

    def stats(self) -> Iterator[TensorStats]:
        """Stats of every tensor in file order; a dtype not read here is skipped, noted."""
        for entry in self.tensors:
            if not readable(entry):
                yield skipped(entry.name, entry.dtype, entry.shape,
                              f"skipped: dtype {entry.dtype} is not read")
                continue
            yield TensorStats(entry.name, entry.dtype, entry.shape,
                              *reduce_chunks(self.chunks(entry)))


def readable(entry: TensorEntry) -> bool:
    """Whether the tensor's dtype is one numpy reads."""
    return entry.dtype in _NUMPY or entry.dtype == "BF16"


def _read_header(path: Path) -> tuple[object, int, int]:
    """The header's JSON, its length and the file's size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise InputError(f"{path}: not a safetensors file (shorter than 8 bytes)")
            (length,) = struct.unpack("<Q", head)
            if length > HEADER_MAX_BYTES:
                raise InputError(f"{path}: not a safetensors file (a header of {length:,} "
                                 f"bytes; the format allows {HEADER_MAX_BYTES:,})")
            if 8 + length > size:
                raise InputError(f"{path}: not a safetensors file (a header of {length:,} "
                                 f"bytes in a file of {size:,})")
            return json.loads(fh.read(length)), length, size
    except RecursionError as err:
        raise InputError(f"{path}: malformed safetensors header (nested too deeply)") from err
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable safetensors file ({err})") from err


def _entries(path: Path, header: object, data_bytes: int) -> list[TensorEntry]:
    """The header checked against one schema: name -> {dtype: str, shape: [int >= 0],
    data_offsets: [begin, end] within the data section, as many bytes as the shape needs}."""
    read = PlainReader(str(path), "safetensors header")
    if not isinstance(header, dict):
        raise read.malformed(("header",), header, "a dict of tensors")
    entries = []
    for name, raw in header.items():
        if name == "__metadata__":
            continue
        info = read.mapping(raw, (name,))
        dtype = read.text(info, "dtype", (name,))
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if dtype is None:
            raise read.malformed((name, "dtype"), None, "a dtype")
        if not isinstance(shape, list) or any(read.as_int(n, (name, "shape", k)) < 0
                                              for k, n in enumerate(shape)):
            raise read.malformed((name, "shape"), shape, "a list of sizes >= 0")
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise read.malformed((name, "data_offsets"), offsets, "[begin, end]")
        begin, end = (read.as_int(n, (name, "data_offsets", k)) for k, n in enumerate(offsets))
        if not 0 <= begin <= end <= data_bytes:
            raise InputError(f"{path}: malformed safetensors header: {describe(name)}: "
                             f"data_offsets [{begin}, {end}] lie outside the data section "
                             f"[0, {data_bytes}]")
        _check_size(path, name, dtype, shape, end - begin)
        entries.append(TensorEntry(name, dtype, tuple(shape), begin, end))
    return entries


def _check_size(path: Path, name: str, dtype: str, shape: list[int], size: int) -> None:
    """The tensor's bytes hold its shape exactly (at least a bit per element for a dtype of
    unknown width); counted without multiplying out a shape of a million dimensions."""
    width = _WIDTH.get(dtype)
    elements = 0 if 0 in shape else 1
    for n in shape if elements else ():
        elements *= n
        if elements >> 64:
            break
    if elements * width == size if width else elements <= 8 * size:
        return
    shown = shape if len(shape) <= 8 else f"[{len(shape):,} dimensions]"
    need = f"{elements * width:,} bytes" if width and not elements >> 64 else "more"
    raise InputError(f"{path}: malformed safetensors header: {describe(name)}: "
                     f"{size:,} bytes for {dtype} {shown}, which needs {need}")


def checkpoint_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint: a file, a sharded index, or a folder."""
    if path.is_file() and path.name.endswith(".index.json"):
        return _index_files(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such checkpoint")
    for index in sorted(path.glob("*.index.json")):
        return _index_files(index)
    files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin")) \
        or sorted(path.glob("*.pt")) or sorted(path.glob("*.bin"))
    if not files:
        raise InputError(f"{path}: no .safetensors, .bin or .pt weights in this folder")
    return files


def _index_files(index: Path) -> list[Path]:
    """The shard files a sharded checkpoint's index names, each a file in the index's own
    folder (never a path that leaves it)."""
    try:
        if index.stat().st_size > INDEX_MAX_BYTES:
            raise InputError(f"{index}: larger than {INDEX_MAX_BYTES >> 20} MiB, not an index")
        data = json.loads(index.read_bytes())
    except RecursionError as err:
        raise InputError(f"{index}: malformed checkpoint index (nested too deeply)") from err
    except (OSError, ValueError) as err:
        raise InputError(f"{index}: not a readable checkpoint index ({err})") from err
    read = PlainReader(str(index), "checkpoint index")
    weight_map = read.mapping(data, ("index",)).get("weight_map")
    if not isinstance(weight_map, dict):
        raise read.malformed(("weight_map",), weight_map, "a dict of tensor -> file")
    files = []
    for tensor, name in weight_map.items():
        shard = PurePosixPath(read.as_text(name, ("weight_map", tensor)))
        if not name or "\0" in name or shard.is_absolute() or ".." in shard.parts:
            raise InputError(f"{index}: weight_map names {describe(name)}, not a file inside "
                             "the checkpoint's folder; not read")
        files.append(index.parent / shard)
    return list(dict.fromkeys(files))


def tensor_stats(path: Path, device: str = "cpu") -> Iterator[TensorStats]:
    """Stats of every tensor of a checkpoint, file by file, in model order."""
    for file in checkpoint_files(path):
        yield from file_stats(file, device)


def file_stats(file: Path, device: str = "cpu") -> Iterator[TensorStats]:
    """Stats of every tensor of one weight file."""
    if file.suffix == ".safetensors" and device == "cpu":
        yield from SafetensorsFile(file).stats()
    else:
        from forensics.artifacts.torch_io import torch_tensor_stats

        yield from torch_tensor_stats(file, device)


def read_checkpoint(path: Path, device: str = "cpu") -> tuple[list[TensorStats], list[str]]:
    """Stats of every readable weight file of a checkpoint, and one problem line per file
    that could not be read (a checkpoint that cannot be found at all raises)."""
    if device != "cpu":
        from forensics.artifacts.torch_io import check_device

        check_device(device)
    stats: list[TensorStats] = []
    problems = []
    for file in checkpoint_files(path):
        try:
            stats += file_stats(file, device)
        except ForensicsError as err:
            problems.append(str(err))
    return stats, problems


def relative_changes(first: Path, second: Path) -> list[tuple[str, float]]:
    """||b - a|| / ||a|| for every tensor both checkpoints hold with the same shape, in
    model order (tensors whose values are not read whole are left out)."""
    changes = []
    for file_a, file_b in zip(checkpoint_files(first), checkpoint_files(second), strict=False):
        if file_a.suffix != ".safetensors" or file_b.suffix != ".safetensors":
            from forensics.artifacts.torch_io import torch_relative_changes

            changes += torch_relative_changes(file_a, file_b)
            continue
        a, b = SafetensorsFile(file_a), SafetensorsFile(file_b)
        other = {entry.name: entry for entry in b.tensors}
        for entry in a.tensors:
            peer = other.get(entry.name)
            if peer is None or peer.shape != entry.shape or not readable(entry) \
                    or not readable(peer):
                continue
            base = diff = 0.0
            for x, y in zip(a.chunks(entry), b.chunks(peer), strict=True):
                x64, y64 = x.astype(np.float64), y.astype(np.float64)
                base += float(np.dot(x64, x64))
                delta = y64 - x64
                diff += float(np.dot(delta, delta))
            changes.append((entry.name,
                            math.sqrt(diff) / math.sqrt(base) if base else math.inf))
    return changes
