"""Scan throughput: writes N synthetic job folders (~1 MB each, a mix of failures: CUDA OOM,
NCCL timeouts, a flaky node's Xid errors, unknown exceptions, healthy runs), then times
`forensics scan` with 1 and 2 workers, and a rescan of the unchanged tree.

usage: python bench/scan.py [--jobs 2000]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOISE = ("gpu-{node}:{pid}:{pid} [{dev}] NCCL INFO Channel {dev:02d}/0 : {dev} -> {nxt} via P2P/IPC\n"
         "[2025-03-02 11:0{dev}:10,511] [INFO] [axolotl.utils.callbacks] [RANK:{dev}] GPU memory "
         "usage: 71.2GB (+0.8GB cache)\n")
ENDINGS = [
    "[rank3]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"
    "[rank0]:[E302 11:12:14.88 ProcessGroupNCCL.cpp:632] [Rank 0] Watchdog caught collective "
    "operation timeout: WorkNCCL(SeqNum=88, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, "
    "Timeout(ms)=600000) ran for 600034 milliseconds before timing out.\n",
    "[rank1]:[E302 11:12:14.88 ProcessGroupNCCL.cpp:632] [Rank 1] Watchdog caught collective "
    "operation timeout: WorkNCCL(SeqNum=12, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, "
    "Timeout(ms)=600000) ran for 600034 milliseconds before timing out.\n",
    "RuntimeError: shard {i} of /data/set{i}.bin is corrupt\n",
    "{{'train_runtime': 100.0, 'train_loss': 1.1, 'epoch': 1.0}}\n",
]


def write_tree(root: Path, jobs: int) -> None:
    rng = random.Random(5)
    for i in range(jobs):
        node = i % 16
        folder = root / f"job-{i:05d}"
        folder.mkdir(parents=True)
        parts, size = [], 0
        step = 0
        while size < 1_000_000:
            dev = rng.randrange(8)
            chunk = NOISE.format(node=node, pid=4000 + dev, dev=dev, nxt=(dev + 1) % 8) * 20
            step += 1
            chunk += (f"{{'loss': {2 - step / 1000:.4f}, 'grad_norm': 0.5, "
                      f"'learning_rate': 2e-05, 'epoch': {step / 1000:.3f}}}\n")
            parts.append(chunk)
            size += len(chunk)
        if node == 13:
            ending = "[812.1] NVRM: Xid (PCI:0000:3b:00): 79, pid=1, name=python, GPU has " \
                     "fallen off the bus.\n"
        else:
            ending = ENDINGS[i % len(ENDINGS)].format(i=i)
        parts.append(ending + f"srun: error: gpu-{node}: task 0: Exited with exit code 1\n")
        (folder / "train.log").write_text("".join(parts))


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "forensics", "scan", "--format", "json", *args],
                   check=False, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    root = HERE / "out" / f"fleet-{args.jobs}"
    if not root.exists():
        print(f"writing {args.jobs} job folders under {root} ...", flush=True)
        write_tree(root, args.jobs)
    out = HERE / "out" / "scan-result"
    results = {}
    for workers in (1, 2):
        shutil.rmtree(out, ignore_errors=True)
        results[workers] = timed(["--out", str(out), "--jobs", str(workers), str(root)])
        print(f"{workers} worker(s): {results[workers]:.1f} s, "
              f"{args.jobs / results[workers]:.0f} jobs/s", flush=True)
    rescan = timed(["--out", str(out), "--jobs", "2", str(root)])
    print(f"rescan of the unchanged tree: {rescan:.1f} s "
          f"({100 * rescan / results[2]:.0f}% of the full scan)")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of the largest process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
