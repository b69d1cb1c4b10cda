"""The command line: formats, exit codes, output files, redaction."""

from __future__ import annotations

import json

from click.testing import CliRunner

from forensics.cli import cli

from .conftest import SAMPLES

OOM = str(SAMPLES / "cuda-oom-nccl-timeout.log")
HEALTHY = str(SAMPLES / "healthy-run.log")


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_exit_codes():
    assert invoke("analyze", "--format", "md", OOM).exit_code == 1
    assert invoke("analyze", "--format", "md", "--exit-zero", OOM).exit_code == 0
    assert invoke("analyze", "--format", "md", HEALTHY).exit_code == 0
    assert invoke("analyze", "--format", "yaml", OOM).exit_code == 2
    assert invoke("analyze").exit_code == 2


def test_title_is_the_reports_first_line_plain_for_an_issue():
    """`gh issue create --title "$(forensics analyze --title LOG)" --body-file report.md`."""
    for log, code in ((OOM, 1), (HEALTHY, 0)):
        title = invoke("analyze", "--title", log)
        first = invoke("analyze", "--format", "md", log).output.splitlines()[0]
        assert title.exit_code == code  # the exit codes of the report itself
        assert title.output.count("\n") == 1
        assert title.output.strip() == first.removeprefix("## ").replace("`", "")
    assert invoke("analyze", "--title", OOM).output == \
        "forensics: run failed: CUDA out of memory (cuda-oom)\n"
    assert invoke("analyze", "--title", "--exit-zero", OOM).exit_code == 0
    assert invoke("analyze", "--title", "--format", "md", OOM).exit_code == 2


def test_json_contract():
    report = json.loads(invoke("analyze", "--format", "json", OOM).output)
    assert report["schema_version"] == 2
    assert report["verdict"] == "failed"
    root = report["root_cause"]
    assert (root["signature"], root["category"], root["rank"]) == ("cuda-oom", "memory", 2)
    assert root["exception_type"] == "torch.OutOfMemoryError"
    assert root["evidence"][0]["line"] == 13
    roles = {f["signature"]: f["role"] for f in report["findings"]}
    assert roles == {"cuda-oom": "root", "nccl-timeout": "symptom",
                     "worker-exit-nonzero": "symptom"}
    timeout = next(f for f in report["findings"] if f["signature"] == "nccl-timeout")
    assert (timeout["count"], timeout["ranks"]) == (3, [0, 1, 3])
    timeline = report["timeline"]
    assert (timeline["steps_logged"], timeline["last_step"]) == (2, 210)
    assert timeline["max_steps"] == 1500
    assert [r["role"] for r in report["ranks"]] == ["symptom", "symptom", "root", "symptom"]
    assert report["fixes"]


def test_healthy_run_has_no_root_cause():
    report = json.loads(invoke("analyze", "--format", "json", HEALTHY).output)
    assert report["root_cause"] is None
    assert report["verdict"] == "completed"


def test_output_file_and_text_format(tmp_path):
    out = tmp_path / "report.md"
    result = invoke("analyze", "-o", str(out), OOM)
    assert result.exit_code == 1
    assert out.read_text().startswith("## forensics: run failed: CUDA out of memory")
    text = invoke("analyze", "--format", "text", OOM)
    assert "[rank2]: torch.OutOfMemoryError" in text.output  # rich markup did not eat it


def test_secrets_are_redacted_unless_asked(tmp_path):
    log = tmp_path / "leak.log"
    token = "hf_" + "a1B2c3D4e5" * 4
    log.write_text(f"export HF_TOKEN={token}\nRuntimeError: login with {token} failed\n"
                   "WANDB_API_KEY=0123456789abcdef0123456789abcdef01234567\n")
    redacted = invoke("analyze", "--format", "md", str(log)).output
    assert token not in redacted and "[REDACTED]" in redacted
    assert "0123456789abcdef0123456789abcdef01234567" not in redacted
    kept = invoke("analyze", "--format", "md", "--no-redact", str(log)).output
    assert token in kept


def test_report_never_exceeds_limit(tmp_path):
    log = tmp_path / "long.log"
    lines = [f"RuntimeError: failure number {i} " + "x" * 3000 for i in range(200)]
    log.write_text("\n".join(lines) + "\n")
    report = invoke("analyze", "--format", "md", str(log)).output
    assert len(report) <= 60_000
    assert "###" in report


def test_every_command_takes_dash_h_like_dash_dash_help():
    """`-h` is help, as in ruff, pytest and huggingface-cli, for the group and each command."""
    for command in ((), ("analyze",), ("timeline",), ("scan",), ("patterns",),
                    ("patterns", "list"), ("checkpoint",), ("memory",), ("flight",)):
        short, long = invoke(*command, "-h"), invoke(*command, "--help")
        assert short.exit_code == 0 and short.output == long.output, command
