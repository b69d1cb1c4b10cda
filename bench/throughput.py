"""Throughput and memory of `forensics analyze` on a realistic >= 1 GB log, next to grep.

Writes (once) an 8-rank interleaved log: NCCL INFO noise, `\\r` progress bars, metrics
dicts, warnings, ending in a CUDA OOM on one rank followed by NCCL timeouts and the
torchrun failure block. Then times, in one run, `forensics analyze --format json` and
`grep -E -c` over the catalog's keywords, and prints both times, their ratio and forensics'
peak RSS.

usage: python bench/throughput.py [--size-gb 1.0] [--path bench/out/big.log]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from forensics.catalog import load_catalog  # noqa: E402

NOISE = [
    "gpu-node-07:{pid}:{tid} [{dev}] NCCL INFO Channel {ch:02d}/0 : {dev} -> {nxt} via P2P/CUMEM/read",
    "gpu-node-07:{pid}:{tid} [{dev}] NCCL INFO comm 0x55555da97ba0 rank {dev} nranks 8 cudaDev {dev} busId 1b000 - Init COMPLETE",
    "[rank{dev}]:[W302 11:0{m}:14.883411201 reducer.cpp:1400] Warning: find_unused_parameters=True was specified in DDP constructor, but did not find any unused parameters in the forward pass.",
    "[2025-03-02 11:0{m}:10,511] [INFO] [axolotl.utils.callbacks] [RANK:{dev}] GPU memory usage: 71.2GB (+0.8GB cache)",
    "/opt/conda/lib/python3.11/site-packages/torch/utils/checkpoint.py:87: UserWarning: None of the inputs have requires_grad=True. Gradients will be None",
]


def write_log(path: Path, size: int) -> None:
    rng = random.Random(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    step, total = 0, 200000
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < size:
            lines = []
            for _ in range(2000):
                dev = rng.randrange(8)
                template = NOISE[0 if rng.random() < 0.6 else rng.randrange(len(NOISE))]
                lines.append(template.format(pid=4000 + dev, tid=4100 + dev, dev=dev,
                                             nxt=(dev + 1) % 8, ch=rng.randrange(32),
                                             m=rng.randrange(10)))
            step += 1
            lines.append(f"\r {100 * step // total:>2}%|#         | {step}/{total} "
                         f"[41:12<4:13:01, 11.77s/it]\r{' ' * 40}\r"
                         + str({"loss": round(1.5 - step / 1e5, 4), "grad_norm": 0.5,
                                "learning_rate": 2e-05, "epoch": round(step / total, 4)}))
            chunk = "\n".join(lines) + "\n"
            out.write(chunk)
            written += len(chunk)
        out.write((ROOT / "sample_logs" / "cuda-oom-nccl-timeout.log").read_text())


def grep_pattern() -> str:
    keywords = sorted({k for s in load_catalog().signatures for k in s.keywords})
    return "|".join(re.escape(k) for k in keywords)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--path", default=str(HERE / "out" / "big.log"))
    args = parser.parse_args()
    path = Path(args.path)
    size = int(args.size_gb * (1 << 30))
    if not path.exists() or path.stat().st_size < size:
        print(f"writing {path} ({args.size_gb} GB)...", flush=True)
        write_log(path, size)
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm cache

    pattern = grep_pattern()
    start = time.perf_counter()
    grep = subprocess.run(["grep", "-E", "-c", pattern, str(path)], capture_output=True,
                          text=True)
    grep_s = time.perf_counter() - start

    forensics = [sys.executable, "-m", "forensics", "analyze", "--format", "json", str(path)]
    start = time.perf_counter()
    proc = subprocess.run(forensics, capture_output=True, text=True)
    ours_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report = json.loads(proc.stdout)
    gb = path.stat().st_size / (1 << 30)
    print(f"file: {gb:.2f} GB, {len(pattern.split('|'))} keywords")
    print(f"grep -E -c: {grep_s:.2f} s ({grep.stdout.strip()} matching lines)")
    print(f"forensics analyze --format json: {ours_s:.2f} s, root cause "
          f"{report['root_cause']['signature']} on rank {report['root_cause']['rank']}")
    print(f"ratio forensics/grep: {ours_s / grep_s:.2f}x; forensics peak RSS: {peak_mb:.0f} MB "
          "(largest child process)")


if __name__ == "__main__":
    main()
