"""Checkpoint scan speed: writes a ~2 GB safetensors checkpoint (bf16 and fp32 tensors,
one NaN planted deep in the model) and times `forensics checkpoint` on it (GB/s), on the CPU
and, when PyTorch and a GPU are present, with `--device cuda` on a .pt copy.

usage: python bench/checkpoint.py [--gb 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def write_checkpoint(path: Path, gigabytes: float) -> None:
    rng = np.random.default_rng(0)
    layer = rng.standard_normal((4096, 4096)).astype(np.float32)  # 64 MiB in fp32
    count = int(gigabytes * (1 << 30) / (layer.nbytes * 0.75))  # alternating bf16 / fp32
    header, offset = {}, 0
    for i in range(count):
        dtype = "BF16" if i % 2 == 0 else "F32"
        size = layer.size * (2 if dtype == "BF16" else 4)
        header[f"model.layers.{i}.weight"] = {"dtype": dtype, "shape": list(layer.shape),
                                              "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        for i in range(count):
            data = layer.copy()
            if i == count - 3:
                data[7, 7] = np.nan
            if i % 2 == 0:
                out.write((data.view(np.uint32) >> 16).astype(np.uint16).tobytes())
            else:
                out.write(data.tobytes())


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "forensics", "checkpoint", *args], check=False,
                   capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=2.0)
    args = parser.parse_args()
    path = HERE / "out" / "checkpoint.safetensors"
    path.parent.mkdir(exist_ok=True)
    if not path.exists() or path.stat().st_size < args.gb * (1 << 30) * 0.9:
        write_checkpoint(path, args.gb)
    size = path.stat().st_size / 1e9
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm cache
    seconds = timed([str(path)])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{size:.2f} GB safetensors on CPU: {seconds:.1f} s, {size / seconds:.2f} GB/s, "
          f"peak RSS {peak:.0f} MB")
    try:
        import torch
    except ImportError:
        print("--device cuda: skipped (no PyTorch)")
        return
    if not torch.cuda.is_available():
        print("--device cuda: skipped (no GPU here)")
        return
    seconds = timed(["--device", "cuda", str(path)])
    print(f"{size:.2f} GB with --device cuda: {seconds:.1f} s, {size / seconds:.2f} GB/s")


if __name__ == "__main__":
    main()
