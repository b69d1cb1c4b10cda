"""The real crash logs of ../shared/corpus: every case whose primary signature is one of the
seed failures (training_stability.md's Common Errors table) and whose log holds the
evidence must get the right root cause; healthy controls must get none."""

from __future__ import annotations

import json

import pytest

from forensics import analyze

from .conftest import CORPUS

SEED = {"host-oom-sigkill", "sigbus-exitcode-7", "cuda-oom", "nccl-abort", "missing-pad-token",
        "dummyoptim-step", "reward-module-import", "generation-batch-divisible",
        "fsdp1-weight-2d", "checkpoint-error", "bf16-numpy", "chat-template-boundary",
        "xet-cas-error", "fsdp-hang", "none"}
# No known misses: c027 (its excerpt stops mid-word, "TypeError: Got unsuppor") is read as a
# message cut short.
KNOWN_MISSES: set[str] = set()


def cases():
    if not CORPUS.is_dir():
        return []
    out = []
    for case in sorted(p for p in CORPUS.iterdir() if (p / "meta.json").is_file()):
        meta = json.loads((case / "meta.json").read_text())
        if meta.get("evidence_in_log") is False or meta["signatures"][0] not in SEED:
            continue
        marks = [pytest.mark.xfail(strict=True)] if case.name in KNOWN_MISSES else []
        out.append(pytest.param(case, meta, id=case.name, marks=marks))
    return out


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus not present")
@pytest.mark.parametrize(("case", "meta"), cases())
def test_seed_case(case, meta):
    inputs = [p for p in sorted(case.iterdir()) if p.name != "meta.json"]
    analysis = analyze(*inputs)
    got = analysis.root_cause.finding.signature if analysis.root_cause else "none"
    assert got in [meta["signatures"][0], *meta.get("accept", [])]
