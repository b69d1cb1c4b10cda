"""Metric extraction speed: a log with 200,000 metrics lines (HF dicts with tqdm redraws,
every few a GRPO-sized dict), timed through `forensics analyze --format json` (scan, timeline,
health) and `forensics timeline --format parquet` (scan and export).

usage: python bench/timeline.py [--lines 200000]
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_log(path: Path, lines: int) -> None:
    rng = random.Random(3)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for step in range(1, lines + 1):
            record = {"loss": round(2.0 - step / lines + rng.uniform(-0.05, 0.05), 4),
                      "grad_norm": round(rng.uniform(0.2, 1.2), 4),
                      "learning_rate": 2e-05, "epoch": round(step / lines, 4)}
            if step % 3 == 0:
                record.update({"reward": round(rng.random(), 4), "reward_std": 0.31,
                               "kl": 0.01, "entropy": 0.35, "completions/mean_length": 181.0})
            out.write(f"\r {100 * step // lines:>2}%|#    | {step}/{lines} "
                      f"[01:00<02:00,  8.1it/s]\r{' ' * 40}\r{record}\n")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=False, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    path = HERE / "out" / f"metrics-{args.lines}.log"
    if not path.exists():
        write_log(path, args.lines)
    size_mb = path.stat().st_size / 1e6
    analyze_s = timed([sys.executable, "-m", "forensics", "analyze", "--format", "json",
                       str(path)])
    export_s = timed([sys.executable, "-m", "forensics", "timeline", "--format", "parquet",
                      "-o", str(HERE / "out" / "metrics.parquet"), str(path)])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"log: {args.lines:,} metrics lines, {size_mb:.0f} MB")
    print(f"forensics analyze (scan + timeline + health): {analyze_s:.2f} s "
          f"({args.lines / analyze_s:,.0f} metrics lines/s)")
    print(f"forensics timeline --format parquet: {export_s:.2f} s "
          f"({args.lines / export_s:,.0f} metrics lines/s)")
    print(f"peak RSS of the largest run: {peak:.0f} MB")


if __name__ == "__main__":
    main()
