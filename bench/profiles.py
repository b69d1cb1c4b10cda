"""Synthetic logs in the shapes real training runs leave behind, for `bench/throughput.py`.

Each profile writes about `size` bytes and ends in the same failure (a CUDA OOM on one rank,
NCCL watchdog timeouts on the others, torchrun's failure block), so every profile's report
has the same root cause:

- `quiet`: NCCL INFO and warning noise, a progress update every 2,000 lines;
- `progress`: stdout redirected to a file, a tqdm update on every line (some lines hold
  several `\\r` redraws), a metrics dict every 10 steps;
- `metrics`: a metrics dict every step (`logging_steps=1`), each behind its bar redraw;
- `nccl`: `NCCL_DEBUG=INFO` from 64 ranks on 8 hosts, the init and channel flood;
- `tree`: a `torchrun --log-dir` run of 32 local ranks, 64 files (stdout and stderr each).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENDING = ROOT / "sample_logs" / "cuda-oom-nccl-timeout.log"

QUIET_NOISE = [
    "gpu-node-07:{pid}:{tid} [{dev}] NCCL INFO Channel {ch:02d}/0 : {dev} -> {nxt} via P2P/CUMEM/read",
    "gpu-node-07:{pid}:{tid} [{dev}] NCCL INFO comm 0x55555da97ba0 rank {dev} nranks 8 cudaDev {dev} busId 1b000 - Init COMPLETE",
    "[rank{dev}]:[W302 11:0{m}:14.883411201 reducer.cpp:1400] Warning: find_unused_parameters=True was specified in DDP constructor, but did not find any unused parameters in the forward pass.",
    "[2025-03-02 11:0{m}:10,511] [INFO] [axolotl.utils.callbacks] [RANK:{dev}] GPU memory usage: 71.2GB (+0.8GB cache)",
    "/opt/conda/lib/python3.11/site-packages/torch/utils/checkpoint.py:87: UserWarning: None of the inputs have requires_grad=True. Gradients will be None",
]

NCCL_NOISE = [
    "gpu-node-{node:02d}:{pid}:{tid} [{dev}] NCCL INFO Channel {ch:02d}/{ch2} : {rank}[{dev}] -> {nxt}[{nxt_dev}] via P2P/IPC/read",
    "gpu-node-{node:02d}:{pid}:{tid} [{dev}] NCCL INFO Channel {ch:02d}/0 : {rank}[{dev}] -> {peer}[{dev}] [send] via NET/IB/{nic}/GDRDMA",
    "gpu-node-{node:02d}:{pid}:{tid} [{dev}] NCCL INFO Trees [{ch}] {nxt}/-1/-1->{rank}->{peer} [{ch2}] -1/-1/-1->{rank}->{nxt}",
    "gpu-node-{node:02d}:{pid}:{tid} [{dev}] NCCL INFO Connected all rings",
    "gpu-node-{node:02d}:{pid}:{tid} [{dev}] NCCL INFO comm 0x{comm:x} rank {rank} nranks 64 cudaDev {dev} nvmlDev {dev} busId {bus}000 commId 0x2b6f1c0e8a6d9f33 - Init COMPLETE",
    "gpu-node-{node:02d}:{pid}:{tid} [{dev}] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB [2]mlx5_2:1/IB [3]mlx5_3:1/IB ; OOB ib0:10.10.{node}.{dev}<0>",
    "gpu-node-{node:02d}:{pid}:{tid} [{dev}] NCCL INFO NET/Plugin: Could not find: libnccl-net.so. Using internal network plugin.",
    "gpu-node-{node:02d}:{pid}:{tid} [{dev}] NCCL INFO Setting affinity for GPU {dev} to ffff,ffffffff,00000000,0000ffff,ffffffff",
    "gpu-node-{node:02d}:{pid}:{tid} [{dev}] NCCL INFO {ch:02d} coll channels, {ch2:02d} collnet channels, 0 nvls channels, {ch:02d} p2p channels, 2 p2p channels per peer",
]


def _bar(step: int, total: int) -> str:
    done = 10 * step // total
    return (f"{100 * step // total:>3}%|{'█' * done}{' ' * (10 - done)}| {step}/{total} "
            f"[41:12<4:13:01,  {1 + step % 7}.{step % 100:02d}it/s]")


def _record(step: int, total: int, rng: random.Random) -> str:
    return str({"loss": round(2.0 - step / total + rng.uniform(-0.05, 0.05), 4),
                "grad_norm": round(rng.uniform(0.2, 1.2), 4), "learning_rate": 2e-05,
                "epoch": round(step / total, 4)})


def _redraw_and_record(step: int, total: int, rng: random.Random) -> str:
    """A trainer's metrics dict printed behind its bar's last redraw."""
    return f"\r{_bar(step, total)}\r{' ' * 40}\r{_record(step, total, rng)}"


def _noise_then_step(noise: Callable[[], str], total: int,
                     rng: random.Random) -> Iterator[str]:
    """2,000 noise lines, then one training step's redraw and record; forever."""
    step = 0
    while True:
        yield from (noise() for _ in range(2000))
        step += 1
        yield _redraw_and_record(step, total, rng)


def _quiet(rng: random.Random) -> Iterator[str]:
    def noise() -> str:
        dev = rng.randrange(8)
        template = QUIET_NOISE[0 if rng.random() < 0.6 else rng.randrange(len(QUIET_NOISE))]
        return template.format(pid=4000 + dev, tid=4100 + dev, dev=dev, nxt=(dev + 1) % 8,
                               ch=rng.randrange(32), m=rng.randrange(10))
    return _noise_then_step(noise, 200_000, rng)


def _progress(rng: random.Random) -> Iterator[str]:
    step, total = 0, 5_000_000
    while True:
        step += 1
        if rng.random() < 0.2:  # a line that holds several redraws
            yield "\r" + "\r".join(_bar(step + k, total) for k in range(3))
            step += 2
        else:
            yield _bar(step, total)
        if step % 10 == 0:
            yield _record(step, total, rng)


def _metrics(rng: random.Random) -> Iterator[str]:
    step = 0
    while True:
        step += 1
        yield _redraw_and_record(step, 5_000_000, rng)


def _nccl(rng: random.Random) -> Iterator[str]:
    def noise() -> str:
        rank = rng.randrange(64)
        node, dev = divmod(rank, 8)
        template = NCCL_NOISE[rng.randrange(len(NCCL_NOISE))]
        return template.format(
            node=node, pid=4000 + dev, tid=4100 + dev, dev=dev, rank=rank,
            nxt=(rank + 1) % 64, nxt_dev=(dev + 1) % 8, peer=(rank + 8) % 64,
            ch=rng.randrange(32), ch2=rng.randrange(2), nic=rng.randrange(4),
            comm=0x55555da97ba0 + rank, bus=hex(0x1b + dev)[2:])
    return _noise_then_step(noise, 200_000, rng)


def _chunks(lines: Iterator[str], per_chunk: int = 2000) -> Iterator[str]:
    """Lines joined into chunks of text to write."""
    while True:
        yield "".join(next(lines) + "\n" for _ in range(per_chunk))


GENERATORS: dict[str, Callable[[random.Random], Iterator[str]]] = {
    "quiet": _quiet, "progress": _progress, "metrics": _metrics, "nccl": _nccl,
}
PROFILES = (*GENERATORS, "tree")


def _fill(path: Path, chunks: Iterator[str], size: int, ending: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < size:
            chunk = next(chunks)
            out.write(chunk)
            written += len(chunk.encode("utf-8"))
        out.write(ending)


def write_profile(name: str, path: Path, size: int) -> None:
    """Write profile `name` at `path` (a file, or for `tree` a folder) of about `size` bytes."""
    rng = random.Random(1)
    if name != "tree":
        _fill(path, _chunks(GENERATORS[name](rng)), size, ENDING.read_text(encoding="utf-8"))
        return
    _write_tree(path, size, rng)


def _write_tree(path: Path, size: int, rng: random.Random) -> None:
    ranks = 32
    per_file = size // (2 * ranks)
    oom = "".join(line[len("[rank2]: "):] for line in ENDING.read_text(encoding="utf-8")
                  .splitlines(keepends=True) if line.startswith("[rank2]: "))
    for rank in range(ranks):
        folder = path / "attempt_0" / str(rank)
        stdout = _metrics(rng) if rank == 0 else _progress(rng)
        _fill(folder / "stdout.log", _chunks(stdout), per_file, "")
        ending = oom if rank == 2 else (
            f"[E302 11:12:14.883411201 ProcessGroupNCCL.cpp:632] [Rank {rank}] Watchdog caught "
            "collective operation timeout: WorkNCCL(SeqNum=8871, OpType=ALLREDUCE, NumelIn=1, "
            "NumelOut=1, Timeout(ms)=600000) ran for 600034 milliseconds before timing out.\n")
        _fill(folder / "stderr.log", _chunks(_nccl(rng)), per_file, ending)
