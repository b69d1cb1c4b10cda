"""The command's heap keeps the block-sized memory it frees, for the next block."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from forensics import __main__ as command
from forensics import heap
from forensics.fleet import run

FAULTS = """
import resource, sys
from forensics.heap import tune_heap
if sys.argv[1] == "tuned" and not tune_heap():
    sys.exit(2)
def faults(cycles):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(cycles):  # two blocks of 8 MiB made and freed, as by the line pass
        first = b"x" * (8 << 20)
        second = b"y" * (8 << 20)
        del first, second
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(2)
print(faults(20))
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


@pytest.mark.skipif(heap._glibc() is None, reason="the heap is tuned on glibc only")
@pytest.mark.skipif("LD_PRELOAD" in os.environ, reason="another allocator may be preloaded")
def test_freed_blocks_are_reused_without_page_faults():
    # glibc's defaults give two freed 8 MiB blocks back at once and fault them in again:
    # 4,096 faults a cycle
    assert _faults("plain") > 20 * 2048
    assert _faults("tuned") < 20 * 64


def test_the_command_and_the_scan_workers_tune_their_heap(monkeypatch):
    tuned = []
    monkeypatch.setattr(command, "tune_heap", lambda: tuned.append("command"))
    monkeypatch.setattr(run, "tune_heap", lambda: tuned.append("worker"))
    monkeypatch.setattr(sys, "argv", ["forensics", "--version"])
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the test's handlers stay
    with pytest.raises(SystemExit):
        command.main()
    run._start_worker()
    assert tuned == ["command", "worker"]
