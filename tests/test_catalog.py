"""Loading, validating and extending the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from forensics.catalog import load_catalog
from forensics.cli import cli
from forensics.errors import CatalogError

DESIGN_IDS = """host-oom-sigkill sigbus-exitcode-7 cuda-oom cpu-alloc-failure nccl-abort
nccl-timeout nccl-other fsdp-hang fsdp1-weight-2d zero3-partitioned-param
ddp-mark-ready-twice p2p-rtx4000
dummyoptim-step checkpoint-error missing-pad-token chat-template-boundary
generation-batch-divisible reward-module-import bf16-numpy fp16-unscale version-mismatch nan-loss
cuda-device-assert cuda-illegal-access cuda-xid cuda-ecc device-mismatch slurm-time-limit
slurm-oom-kill slurm-preemption xet-cas-error hf-auth disk-full file-not-found permission-denied
module-not-found segfault assertion-error zero-division python-exception""".split()


def test_catalog_has_every_design_id(catalog):
    assert set(DESIGN_IDS) <= set(catalog.ids)


def test_lint_is_clean():
    result = CliRunner().invoke(cli, ["patterns", "check"])
    assert result.exit_code == 0, result.output
    assert "0 problem(s)" in result.output


def _write(folder: Path, category: str, name: str, text: str) -> Path:
    (folder / category).mkdir(parents=True, exist_ok=True)
    path = folder / category / f"{name}.toml"
    path.write_text(text)
    return path


MINIMAL = '''id = "{id}"
title = "Custom failure"
category = "{category}"
severity = "error"
priority = 99
keywords = ["FROBNICATOR"]
patterns = ['FROBNICATOR exploded']
cause = "The frobnicator exploded."
fix = "- Replace the frobnicator."
references = ["https://example.org"]
examples = ["FROBNICATOR exploded at step 3", "[rank0]: FROBNICATOR exploded"]
counterexamples = ["FROBNICATOR is fine"]
'''


def test_broken_file_reports_path_field_reason(tmp_path):
    path = _write(tmp_path, "custom", "bad-one", MINIMAL.format(id="other-name", category="custom")
                  .replace('severity = "error"', 'severity = "fatal"'))
    with pytest.raises(CatalogError) as err:
        load_catalog(tmp_path)
    text = "\n".join(err.value.problems)
    assert f"{path}: id: 'other-name' differs from the file name 'bad-one'" in text
    assert f"{path}: severity: 'fatal' is not one of" in text


def test_broken_catalog_exits_3_with_problem_lines(tmp_path):
    _write(tmp_path, "custom", "bad-regex", MINIMAL.format(id="bad-regex", category="custom")
           .replace("'FROBNICATOR exploded'", "'FROBNICATOR (unclosed'"))
    log = tmp_path / "x.log"
    log.write_text("hello\n")
    result = CliRunner().invoke(cli, ["analyze", "--patterns", str(tmp_path), str(log)])
    assert result.exit_code == 3
    assert "bad-regex.toml: patterns:" in result.output


def test_user_signature_with_builtin_id_replaces_it(tmp_path):
    _write(tmp_path, "memory", "cuda-oom", MINIMAL.format(id="cuda-oom", category="memory"))
    catalog = load_catalog(tmp_path)
    assert catalog.get("cuda-oom").keywords == ("FROBNICATOR",)
    assert len(catalog.ids) == len(load_catalog().ids)


def test_user_catalog_from_environment(tmp_path, monkeypatch):
    _write(tmp_path / "mine", "custom", "frobnicator",
           MINIMAL.format(id="frobnicator", category="custom"))
    log = tmp_path / "run.log"
    log.write_text("step 1\nFROBNICATOR exploded at step 3\n")
    monkeypatch.setenv("FORENSICS_PATTERNS", str(tmp_path / "mine"))
    result = CliRunner().invoke(cli, ["analyze", "--format", "json", str(log)])
    assert result.exit_code == 1
    assert '"signature": "frobnicator"' in result.output


def test_patterns_list_and_show():
    runner = CliRunner()
    listed = runner.invoke(cli, ["patterns", "list", "--format", "json"])
    assert listed.exit_code == 0
    assert '"id": "cuda-oom"' in listed.output
    shown = runner.invoke(cli, ["patterns", "show", "cuda-oom"])
    assert shown.exit_code == 0
    assert "PYTORCH_CUDA_ALLOC_CONF" in shown.output
    missing = runner.invoke(cli, ["patterns", "show", "no-such-thing"])
    assert missing.exit_code == 2
