"""The command's heap keeps the block-sized memory it frees, for the next block."""

from __future__ import annotations

import subprocess
import sys

import pytest

from forensics import heap

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
def test_freed_blocks_are_reused_without_page_faults():
    # glibc's defaults give two freed 8 MiB blocks back at once and fault them in again:
    # 4,096 faults a cycle
    assert _faults("plain") > 20 * 2048
    assert _faults("tuned") < 20 * 64
