"""Checkpoint health: per-tensor NaN/Inf counts, ranges and norms, the layers holding
non-finite values in model order, optimizer-state blow-ups, and (with two checkpoints)
which tensors changed most. Streams tensor by tensor; safetensors needs no torch."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from forensics.artifacts.tensors import TensorStats
from forensics.errors import InputError

CHUNK = 1 << 20  # elements reduced at a time: a few MB of temporaries, whatever the tensor
_NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
def _reduce(chunks: Iterator[np.ndarray]) -> tuple[int, int, float, float, float, float]:
    """NaN and Inf counts, min, max, abs max and L2 norm over a tensor's chunks. A finite sum
    of squares proves a chunk clean, so the NaN/Inf masks are only built for dirty chunks."""
    nan = inf = 0
    low, high, squares = math.inf, -math.inf, 0.0
    for chunk in chunks:
        values = chunk if chunk.dtype in (np.float32, np.float64) else chunk.astype(np.float32)
        wide = values.astype(np.float64).ravel()
        total = float(np.dot(wide, wide))
        if not math.isfinite(total):
            bad_nan, bad_inf = np.isnan(wide), np.isinf(wide)
            nan += int(bad_nan.sum())
            inf += int(bad_inf.sum())
            wide = wide[~(bad_nan | bad_inf)]
            total = float(np.dot(wide, wide))
        if wide.size:
            low, high = min(low, float(wide.min())), max(high, float(wide.max()))
            squares += total
    if low == math.inf:
        return nan, inf, math.nan, math.nan, 0.0, math.sqrt(squares)
    return nan, inf, low, high, max(abs(low), abs(high)), math.sqrt(squares)


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


class SafetensorsFile:
    """A .safetensors file read through a memory map: header first, tensors on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with open(path, "rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                if length > 100 << 20:
                    raise ValueError("header larger than 100 MiB")
                header = json.loads(fh.read(length))
        except (OSError, ValueError, struct.error) as err:
            raise InputError(f"{path}: not a readable safetensors file ({err})") from err
        header.pop("__metadata__", None)
        self.start = 8 + length
        # in file order, which is the order the model's state dict was saved in
        self.tensors = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])

    def chunks(self, name: str, info: dict) -> Iterator[np.ndarray]:
        begin, end = info["data_offsets"]
        dtype = info["dtype"]
        width = 2 if dtype == "BF16" else np.dtype(_NUMPY.get(dtype, np.uint8)).itemsize
        data = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.start + begin,
                         shape=(end - begin,)) if end > begin else np.zeros(0, np.uint8)
        step = CHUNK * width
        for offset in range(0, len(data), step):
            raw = np.asarray(data[offset:offset + step])
            if dtype == "BF16":
                yield _bf16_to_f32(raw)
            elif dtype in _NUMPY:
                yield raw.view(_NUMPY[dtype])
            else:
                raise InputError(f"{self.path}: {name}: unsupported dtype {dtype}")

    def stats(self) -> Iterator[TensorStats]:
        for name, info in self.tensors:
            reduced = _reduce(self.chunks(name, info))
            yield TensorStats(name, info["dtype"], tuple(info["shape"]), *reduced)


def checkpoint_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint: a file, a sharded index, or a folder."""
    if path.is_file() and path.name.endswith(".index.json"):
        index = json.loads(path.read_text())
        names = list(dict.fromkeys(index.get("weight_map", {}).values()))
        return [path.parent / n for n in names]
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such checkpoint")
    for index in sorted(path.glob("*.index.json")):
        return checkpoint_files(index)
    files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin")) \
        or sorted(path.glob("*.pt")) or sorted(path.glob("*.bin"))
    if not files:
        raise InputError(f"{path}: no .safetensors, .bin or .pt weights in this folder")
    return files


def tensor_stats(path: Path, device: str = "cpu") -> Iterator[TensorStats]:
    """Stats of every tensor of a checkpoint, file by file, in model order."""
    for file in checkpoint_files(path):
        if file.suffix == ".safetensors" and device == "cpu":
            yield from SafetensorsFile(file).stats()
        else:
            from forensics.artifacts.torch_io import torch_tensor_stats

            yield from torch_tensor_stats(file, device)


def relative_changes(first: Path, second: Path) -> list[tuple[str, float]]:
    """||b - a|| / ||a|| for every tensor both safetensors checkpoints hold, in model order."""
    changes = []
    for file_a, file_b in zip(checkpoint_files(first), checkpoint_files(second), strict=False):
        if file_a.suffix != ".safetensors" or file_b.suffix != ".safetensors":
            from forensics.artifacts.torch_io import torch_relative_changes

            changes += torch_relative_changes(file_a, file_b)
            continue
        a, b = SafetensorsFile(file_a), SafetensorsFile(file_b)
        other = dict(b.tensors)
        for name, info in a.tensors:
            if name not in other or other[name]["shape"] != info["shape"]:
                continue
            base = diff = 0.0
            for x, y in zip(a.chunks(name, info), b.chunks(name, other[name]), strict=True):
                x64, y64 = x.astype(np.float64), y.astype(np.float64)
                base += float(np.dot(x64, x64))
                delta = y64 - x64
                diff += float(np.dot(delta, delta))
            changes.append((name, math.sqrt(diff) / math.sqrt(base) if base else math.inf))
    return changes
