"""Throughput and memory of `forensics analyze` on logs shaped like real runs, next to grep.

For each profile of `bench/profiles.py` (quiet noise, a progress update on every line, a
metrics record every step, an NCCL INFO flood from 64 ranks, a 64-file `torchrun --log-dir`
tree) it writes the input once, then times in one run, best of `--repeat`,
`forensics analyze --format json` and `grep -E -c` (`-r` for the tree) over the catalog's
keywords, and prints a Markdown table: sizes, both times, their ratio, forensics' peak RSS and
the root cause it reported.

usage: python bench/throughput.py [--profile all|quiet|progress|metrics|nccl|tree]
                                  [--size-gb 1.0] [--repeat 3] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.profiles import PROFILES, write_profile  # noqa: E402
from forensics.catalog import load_catalog  # noqa: E402


def grep_pattern() -> str:
    """Every catalog keyword, escaped, as one `grep -E` alternation."""
    keywords = sorted({k for s in load_catalog().signatures for k in s.keywords})
    return "|".join(re.escape(k) for k in keywords)


def run_measured(command: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read() if proc.stdout else b""
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return time.perf_counter() - start, usage.ru_maxrss / 1024, out.decode("utf-8", "replace")


def input_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(profile: str, path: Path, pattern: str, repeat: int) -> dict[str, object]:
    """Best-of-`repeat` times of grep and of forensics on one input, alternating."""
    grep = ["grep", "-E", "-c", *(["-r"] if path.is_dir() else []), pattern, str(path)]
    ours = [sys.executable, "-m", "forensics", "analyze", "--format", "json", str(path)]
    grep_s, ours_s, peak, report = [], [], 0.0, ""
    for _ in range(repeat):
        grep_s.append(run_measured(grep)[0])
        seconds, rss, report = run_measured(ours)
        ours_s.append(seconds)
        peak = max(peak, rss)
    root = json.loads(report).get("root_cause") or {}
    return {"profile": profile, "gb": input_size(path) / (1 << 30), "grep": min(grep_s),
            "ours": min(ours_s), "rss": peak, "root": f"{root.get('signature')} "
            f"(rank {root.get('rank')})"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="all", choices=("all", *PROFILES))
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "out"))
    args = parser.parse_args()
    size = int(args.size_gb * (1 << 30))
    pattern = grep_pattern()
    # bytecode as an installed wheel has it (an editable install under
    # PYTHONDONTWRITEBYTECODE would compile every module on every run)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "forensics")],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"{len(pattern.split('|'))} catalog keywords; best of {args.repeat}\n")
    print("| profile | input | grep -E | forensics analyze | ratio | peak RSS | root cause |")
    print("|---|---|---|---|---|---|---|")
    for profile in PROFILES if args.profile == "all" else (args.profile,):
        path = Path(args.out) / f"{profile}-{args.size_gb:g}gb"
        if not path.exists():
            write_profile(profile, path.with_suffix(".tmp"), size)
            path.with_suffix(".tmp").rename(path)
        subprocess.run(["cat", *(map(str, path.rglob("*.log")) if path.is_dir()
                                 else [str(path)])], stdout=subprocess.DEVNULL, check=True)
        row = measure(profile, path, pattern, args.repeat)
        print(f"| {row['profile']} | {row['gb']:.2f} GB | {row['grep']:.2f} s | "
              f"{row['ours']:.2f} s | {row['ours'] / row['grep']:.2f}x | {row['rss']:.0f} MB | "
              f"{row['root']} |", flush=True)


if __name__ == "__main__":
    main()
