"""Each bundled sample (a log file, or a job folder analyzed as one job): the expected root
cause, and its Markdown and JSON reports compared to golden files; and `forensics scan` over
a small fleet built from the samples, its Markdown and JSON summaries compared to golden
files. Everything goes through the public surface (`forensics.analyze` and the CLI), run
from the repository root with relative paths, as `forensics analyze --format json
sample_logs/<name>` would be. Regenerate on purpose with FORENSICS_REGEN_GOLDEN=1, then read
the diff."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from forensics import analyze
from forensics.cli import cli

from .conftest import ROOT, SAMPLES

GOLDEN = SAMPLES / "golden"
REGEN = bool(os.environ.get("FORENSICS_REGEN_GOLDEN"))

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
    # metric lines in the registry's other shapes, each with its pathology
    "megatron-divergence.log": "nan-loss",  # after the grad norm grew 1,000x
    "torchtitan-grad-explosion.log": "nan-loss",  # after grad_norm spiked
    "verl-entropy-collapse.log": None,  # stops early; actor/entropy collapsed
    "nanogpt-divergence.log": "nan-loss",  # after the loss climbed 30% an iteration
    "lightning-healthy.log": None,  # bar postfix metrics, Trainer.fit stopped at max_epochs
    "openrlhf-kl-blowup.log": "nan-loss",  # episode-bar postfix; kl high first, then NaN
    "keyvalue-grad-explosion.log": "nan-loss",  # `Step N: grad_norm=...` after a spike
    "pretty-dict-divergence.log": "nan-loss",  # pprint dicts with their own `step`
    "jsonl-metrics": "nan-loss",  # metrics.jsonl beside the log
    "trainer-output": "nan-loss",  # only the checkpoint's trainer_state.json holds the NaN
    "wandb-run": "nan-loss",  # a W&B run folder: files/output.log, wandb-summary.json
    "nemo-divergence.log": "nan-loss",  # NeMo 2's `Training epoch 0, iteration N/M | ...`
    "deepspeed-loss-scale.log": "loss-scale-minimum",  # step/memory lines, then overflows
    "lightning-csv": "nan-loss",  # what self.log wrote: lightning_logs/version_0/metrics.csv
}


def compare_to_golden(text: str, golden: Path) -> None:
    if REGEN:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def run_cli(*args: str) -> tuple[int, str]:
    """Exit code and stdout of one `forensics` command (stderr kept apart)."""
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def test_every_sample_has_an_expected_root_cause():
    bundled = {p.name for p in SAMPLES.iterdir() if p.name not in ("golden", "fleet")}
    assert bundled == set(EXPECTED_ROOT)


@pytest.mark.parametrize("name", sorted(EXPECTED_ROOT))
def test_sample_root_cause_and_golden_markdown(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    analysis = analyze(f"sample_logs/{name}")
    root = analysis.root_cause
    assert (root.finding.signature if root else None) == EXPECTED_ROOT[name]
    code, markdown = run_cli("analyze", "--format", "md", f"sample_logs/{name}")
    assert code == (1 if analysis.verdict in ("failed", "interrupted") else 0)
    compare_to_golden(markdown, GOLDEN / f"{name}.md")


@pytest.mark.parametrize("name", sorted(EXPECTED_ROOT))
def test_sample_golden_json(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, text = run_cli("analyze", "--format", "json", f"sample_logs/{name}")
    report = json.loads(text)
    assert (report["root_cause"] or {}).get("signature") == EXPECTED_ROOT[name]
    assert code == (1 if report["verdict"] in ("failed", "interrupted") else 0)
    # the CLI prints Analysis.to_dict() of the same analysis, then the report's sections
    assert report.pop("sections")[0]["name"] == "Verdict"
    assert report == json.loads(json.dumps(analyze(f"sample_logs/{name}").to_dict()))
    assert str(ROOT) not in text  # relative inputs, relative names in the report
    compare_to_golden(text, GOLDEN / f"{name}.json")


# The fleet: the bundled samples laid out as a cluster's job outputs, copied into a tmp
# tree: single-log samples become SLURM outputs `slurm/slurm-<id>.out` (the id's order is
# the order of the table), the job folders keep their own layouts.
FLEET_SLURM = {
    "1001": "cuda-oom-nccl-timeout.log",
    "1002": "host-oom-torchrun.log",
    "1003": "nccl-abort.log",
    "1004": "healthy-run.log",
    "1005": "sft-nan.log",
    "1006": "missing-pad-token.log",
    "1007": "deepspeed-dummyoptim.log",
    "1008": "grpo-entropy-collapse.log",
}
FLEET_FOLDERS = {"slurm-job": "jobs/slurm-job", "torchrun-logdir": "jobs/torchrun-logdir"}


def build_fleet(root: Path) -> None:
    (root / "slurm").mkdir(parents=True)
    for job_id, sample in FLEET_SLURM.items():
        shutil.copyfile(SAMPLES / sample, root / "slurm" / f"slurm-{job_id}.out")
    for sample, where in FLEET_FOLDERS.items():
        shutil.copytree(SAMPLES / sample, root / where)


def scan_fleet(tmp_path: Path, fmt: str) -> str:
    """`forensics scan fleet --out out --format FMT --jobs 1`, run inside tmp_path on the tree
    `build_fleet` made there, into an empty `out`.

    Normalisation, by construction rather than by rewriting the output: the root and --out
    are relative paths (so the summary names `fleet/...` and `out`, never the tmp path); --out
    starts empty (so the counts are always "N analyzed, 0 unchanged"); --jobs 1 analyzes the
    jobs in discovery order, which is sorted by path; the summaries hold no timings.
    """
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    code, text = run_cli("scan", "fleet", "--out", "out", "--format", fmt, "--jobs", "1")
    assert code == 1  # some jobs failed
    assert str(tmp_path) not in text and str(ROOT) not in text
    return text


def test_fleet_scan_golden_summaries(tmp_path, monkeypatch):
    build_fleet(tmp_path / "fleet")
    monkeypatch.chdir(tmp_path)
    compare_to_golden(scan_fleet(tmp_path, "md"), GOLDEN / "fleet-summary.md")

    text = scan_fleet(tmp_path, "json")
    summary = json.loads(text)
    jobs = len(FLEET_SLURM) + len(FLEET_FOLDERS)
    assert (summary["jobs"], summary["analyzed"], summary["reused"]) == (jobs, jobs, 0)
    expected = [EXPECTED_ROOT[name] for name in [*FLEET_SLURM.values(), *FLEET_FOLDERS]]
    assert sorted(s["signature"] for s in summary["by_signature"] for _ in range(s["jobs"])) \
        == sorted(filter(None, expected))
    compare_to_golden(text, GOLDEN / "fleet-summary.json")
