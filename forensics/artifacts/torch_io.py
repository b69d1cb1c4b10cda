"""The parts of checkpoint reading that need PyTorch: `.bin`/`.pt` files (loaded with
`weights_only=True`, never arbitrary code) and reductions on a CUDA device."""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from pathlib import Path

from forensics.artifacts.tensors import TORCH_HINT, TensorStats
from forensics.errors import InputError


def _torch():
    try:
        import torch
    except ImportError as err:
        raise InputError(f"this needs PyTorch; {TORCH_HINT}") from err
    return torch


def load_state(file: Path) -> object:
    """A torch checkpoint file's contents, tensors and plain data only."""
    torch = _torch()
    try:
        try:
            return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(f"{file}: holds Python objects beyond tensors; refusing to unpickle "
                         f"arbitrary code (weights_only=True): {str(err).splitlines()[0]}") from err
    except (OSError, RuntimeError, EOFError) as err:
        raise InputError(f"{file}: not a readable torch checkpoint ({err})") from err


def flatten(value: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted name, tensor) pairs of a nested state dict, optimizer state included."""
    torch = _torch()
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}.{index}" if prefix else str(index))


def _device(device: str) -> str:
    torch = _torch()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is visible to PyTorch")
    return device


def torch_tensor_stats(file: Path, device: str = "cpu") -> Iterator[TensorStats]:
    """Stats of every tensor in a torch checkpoint file, reduced on `device`."""
    torch = _torch()
    device = _device(device)
    for name, tensor in flatten(load_state(file)):
        values = tensor.to(device).float()
        nan = int(torch.isnan(values).sum())
        inf = int(torch.isinf(values).sum())
        finite = values[torch.isfinite(values)] if nan or inf else values
        if finite.numel():
            low, high = float(finite.min()), float(finite.max())
            absmax = float(finite.abs().max())
            norm = float(torch.linalg.vector_norm(finite.double()))
        else:
            low = high = math.nan
            absmax = norm = 0.0
        yield TensorStats(name, str(tensor.dtype).replace("torch.", ""), tuple(tensor.shape),
                          nan, inf, low, high, absmax, norm)
        del values, finite


def torch_relative_changes(first: Path, second: Path) -> list[tuple[str, float]]:
    """||b - a|| / ||a|| per tensor of two torch checkpoint files."""
    torch = _torch()
    other = dict(flatten(load_state(second)))
    changes = []
    for name, tensor in flatten(load_state(first)):
        peer = other.get(name)
        if peer is None or peer.shape != tensor.shape:
            continue
        a, b = tensor.double(), peer.double()
        base = float(torch.linalg.vector_norm(a))
        changes.append((name, float(torch.linalg.vector_norm(b - a)) / base if base else math.inf))
    return changes
