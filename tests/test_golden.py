"""Each bundled sample (a log file, or a job folder analyzed as one job): the expected root
cause, and its Markdown report compared to a golden file. Regenerate on purpose with
FORENSICS_REGEN_GOLDEN=1, then read the diff."""

from __future__ import annotations

import os

import pytest

from forensics import analyze
from forensics.report.markdown import render_markdown

from .conftest import ROOT, SAMPLES

EXPECTED_ROOT = {
    "host-oom-torchrun.log": "host-oom-sigkill",
    "cuda-oom-nccl-timeout.log": "cuda-oom",
    "nccl-abort.log": "nccl-abort",
    "deepspeed-dummyoptim.log": "dummyoptim-step",
    "missing-pad-token.log": "missing-pad-token",
    "healthy-run.log": None,
    "sft-nan.log": "nan-loss",
    "grpo-entropy-collapse.log": None,  # completed, but its metrics are flagged
    "torchrun-logdir": "python-exception",  # rank 2's KeyError, not torchrun's rank 0
    "slurm-job": "slurm-time-limit",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ROOT))
def test_sample_root_cause_and_golden_report(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    analysis = analyze(f"sample_logs/{name}")
    root = analysis.root_cause
    assert (root.finding.signature if root else None) == EXPECTED_ROOT[name]
    report = render_markdown(analysis)
    golden = SAMPLES / "golden" / f"{name}.md"
    if os.environ.get("FORENSICS_REGEN_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(report)
    assert report == golden.read_text()
