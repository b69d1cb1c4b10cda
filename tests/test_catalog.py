"""Loading, validating and extending the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from forensics.catalog import load_catalog
from forensics.cli import cli
from forensics.errors import CatalogError
from forensics.lint import check_catalog
from forensics.metrics.health import anomaly_kinds

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
groups = ["kills-a-rank"]
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


def test_an_edited_user_catalog_is_read_again(tmp_path):
    """`analyze` keeps the compiled catalog between calls, but not once a file changed."""
    from forensics import analyze

    path = _write(tmp_path / "mine", "custom", "frobnicator",
                  MINIMAL.format(id="frobnicator", category="custom"))
    log = tmp_path / "run.log"
    log.write_text("step 1\nFROBNICATOR exploded at step 3\n")
    first = analyze(log, patterns=(tmp_path / "mine",))
    assert first.root_cause.finding.signature == "frobnicator"
    path.write_text(path.read_text().replace("FROBNICATOR exploded", "FROBNICATOR melted")
                    + "# edited\n")
    log.write_text("step 1\nFROBNICATOR melted at step 3\n")
    assert analyze(log, patterns=(tmp_path / "mine",)).root_cause.finding.signature \
        == "frobnicator"
    log.write_text("step 1\nFROBNICATOR exploded at step 3\n")
    assert analyze(log, patterns=(tmp_path / "mine",)).root_cause is None


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


def _problems(tmp_path: Path, text: str) -> tuple[Path, str]:
    """Load a one-signature user catalog; the load problems, else the lint problems."""
    path = _write(tmp_path, "custom", "frob", text)
    try:
        catalog = load_catalog(tmp_path, builtin=False)
    except CatalogError as err:
        return path, "\n".join(err.problems)
    return path, "\n".join(check_catalog(catalog))


GOOD = MINIMAL.format(id="frob", category="custom")


def test_minimal_user_signature_is_clean(tmp_path):
    assert _problems(tmp_path, GOOD)[1] == ""


LOAD_PROBLEMS = [
    pytest.param(GOOD + 'colour = "red"\n', "colour: unknown field", id="unknown-field"),
    pytest.param(GOOD.replace('title = "Custom failure"\n', ""), "title: missing",
                 id="missing-field"),
    pytest.param(GOOD.replace("priority = 99", 'priority = "high"'),
                 "priority: must be a whole number from 0 to 100", id="priority-type"),
    pytest.param(GOOD.replace("priority = 99", "priority = 101"),
                 "priority: must be a whole number from 0 to 100", id="priority-range"),
    pytest.param(GOOD.replace('severity = "error"', 'severity = "fatal"'),
                 "severity: 'fatal' is not one of critical, error, warning, info",
                 id="severity-value"),
    pytest.param(GOOD.replace('keywords = ["FROBNICATOR"]', 'keywords = "FROBNICATOR"'),
                 "keywords: must be a list of non-empty strings", id="keywords-type"),
    pytest.param(GOOD + "generic = 1\n", "generic: must be true or false", id="generic-type"),
    pytest.param(GOOD + 'stalled_collective = "yes"\n', "stalled_collective: must be true or false",
                 id="stalled-collective-type"),
    pytest.param(GOOD + "min_count = 0\n", "min_count: must be a whole number of at least 1",
                 id="min-count-range"),
    pytest.param(GOOD + "min_count = 2.5\n", "min_count: must be a whole number of at least 1",
                 id="min-count-type"),
    pytest.param(GOOD + "onset_anomaly = 3\n", "onset_anomaly: must be an anomaly kind",
                 id="onset-anomaly-type"),
    pytest.param(GOOD + 'onset_anomaly = "Loss NaN"\n', "onset_anomaly: must be an anomaly kind",
                 id="onset-anomaly-form"),
    pytest.param(GOOD + 'if_uncorroborated = "check dmesg on {host}"\n',
                 "if_uncorroborated: needs corroborating_lines or corroborating_signatures",
                 id="if-uncorroborated-alone"),
    pytest.param(GOOD + "corroborating_lines = ['exploded']\n"
                 'if_uncorroborated = "check rank {rank} at {time}"\n',
                 "if_uncorroborated: unknown placeholder {rank}",
                 id="if-uncorroborated-placeholder"),
    pytest.param(GOOD + "if_uncorroborated = 5\n", "if_uncorroborated: must be a string",
                 id="if-uncorroborated-type"),
    pytest.param(GOOD.replace('"https://example.org"', '"example.org"'),
                 "references: 'example.org' is not an http(s) address", id="reference-address"),
    pytest.param(GOOD + 'also_matches = ["*"]\n',
                 "also_matches: '*' is only meaningful in symptom_of", id="star-elsewhere"),
    pytest.param(GOOD + 'symptom_of = ["frob"]\n', "symptom_of: names the signature itself",
                 id="self-reference"),
    pytest.param(GOOD + 'corroborating_signatures = ["no-such-thing"]\n',
                 "corroborating_signatures: unknown signature 'no-such-thing'", id="unknown-id"),
    pytest.param(GOOD.replace("patterns = ['FROBNICATOR exploded']",
                              "patterns = ['FROBNICATOR exploded(?: (?P<exit_code>-?\\d+))?']"),
                 "patterns: capture 'exit_code' looks like the reserved name 'exitcode'",
                 id="capture-exit_code"),
    pytest.param(GOOD.replace("patterns = ['FROBNICATOR exploded']",
                              "patterns = ['FROBNICATOR exploded(?: on (?P<Host>\\S+))?']"),
                 "patterns: capture 'Host' looks like the reserved name 'host'", id="capture-Host"),
    pytest.param(GOOD + "corroborating_lines = ['(?P<exceptionType>\\w+): FROBNICATOR']\n",
                 "corroborating_lines: capture 'exceptionType' looks like the reserved name "
                 "'exception_type'", id="capture-exceptionType"),
]


@pytest.mark.parametrize(("text", "expected"), LOAD_PROBLEMS)
def test_broken_signature_does_not_load(tmp_path, text, expected):
    path = _write(tmp_path, "custom", "frob", text)
    with pytest.raises(CatalogError) as err:
        load_catalog(tmp_path, builtin=False)
    assert f"{path}: {expected}" in "\n".join(err.value.problems)


LINT_PROBLEMS = [
    pytest.param(GOOD.replace("patterns = ['FROBNICATOR exploded']",
                              "patterns = ['FROBNICATOR exploded', 'FROBNICATOR melted']"),
                 "patterns[1]: no example matches `FROBNICATOR melted`", id="unexercised-pattern"),
    pytest.param(GOOD + "corroborating_lines = ['FROBNICATOR exploded twice']\n",
                 "corroborating_lines[0]: no example matches `FROBNICATOR exploded twice`",
                 id="unexercised-corroborating-line"),
    pytest.param(GOOD.replace("patterns = ['FROBNICATOR exploded']",
                              "patterns = ['FROBNICATOR exploded (?P<exitcode>\\w+)']")
                 .replace('"[rank0]: FROBNICATOR exploded"', '"[rank0]: FROBNICATOR exploded 137"'),
                 "examples[0]: patterns[0] captures exitcode = 'at': an exit status must be a "
                 "whole number", id="exitcode-not-a-number"),
    pytest.param(GOOD.replace("patterns = ['FROBNICATOR exploded']",
                              "patterns = ['FROBNICATOR exploded(?: (?P<exitcode2>\\S+))?']")
                 .replace('"[rank0]: FROBNICATOR exploded"', '"[rank0]: FROBNICATOR exploded -9"'),
                 "examples[0]: patterns[0] captures exitcode2 = 'at': an exit status must be a "
                 "whole number", id="exitcode-family-not-a-number"),
    pytest.param(GOOD.replace("patterns = ['FROBNICATOR exploded']",
                              "patterns = ['(?P<exception_type>[^:]+): FROBNICATOR exploded', "
                              "'FROBNICATOR exploded']")
                 .replace('"[rank0]: FROBNICATOR exploded"',
                          '"frob.errors.Boom: FROBNICATOR exploded", '
                          '"my frob: FROBNICATOR exploded"'),
                 "examples[2]: patterns[0] captures exception_type = 'my frob': an exception type "
                 "must be a dotted Python name", id="exception-type-not-a-name"),
    pytest.param(GOOD.replace("patterns = ['FROBNICATOR exploded']",
                              "patterns = ['FROBNICATOR exploded(?: at (?P<time>.+))?']"),
                 "examples[0]: patterns[0] captures time = 'step 3': a time must be a timestamp "
                 "with a date", id="time-without-date"),
    pytest.param(GOOD + 'onset_anomaly = "meltdown"\n',
                 "onset_anomaly: 'meltdown' is not an anomaly kind of the health rules",
                 id="onset-anomaly-unknown"),
    pytest.param(GOOD.replace("patterns = ['FROBNICATOR exploded']", "patterns = []"),
                 "patterns: none, so any line holding a keyword matches", id="keyword-only"),
    pytest.param(GOOD.replace('examples = ["FROBNICATOR exploded at step 3", ',
                              'examples = ["exploded at step 3", '),
                 "examples[0]: holds none of the keywords", id="example-without-keyword"),
    pytest.param(GOOD.replace('counterexamples = ["FROBNICATOR is fine"]',
                              'counterexamples = ["FROBNICATOR exploded, not fine"]'),
                 "counterexamples[0]: matches", id="counterexample-matches"),
    pytest.param(GOOD.replace('keywords = ["FROBNICATOR"]', 'keywords = ["FROBNICATOR", "503"]'),
                 "keywords[1]: '503' is a short number", id="number-keyword"),
    pytest.param(GOOD.replace('keywords = ["FROBNICATOR"]', 'keywords = ["FROBNICATOR", "#"]'),
                 "keywords[1]: '#' is a single byte", id="one-byte-keyword"),
]


@pytest.mark.parametrize(("text", "expected"), LINT_PROBLEMS)
def test_lint_reports_path_field_reason(tmp_path, text, expected):
    path, problems = _problems(tmp_path, text)
    assert f"{path}: {expected}" in problems, problems


def test_lint_reports_a_broken_health_file(monkeypatch):
    said = "health.toml: range[0].when: 'rl' is not one of sft, grpo, any"

    def broken(path=None):
        raise CatalogError([said])

    monkeypatch.setattr("forensics.metrics.health.load_rules", broken)
    monkeypatch.setattr("forensics.lint.anomaly_kinds", broken)
    problems = check_catalog(load_catalog(), engines=["python"])
    assert problems == [said]  # once, though both checks read the file


def test_builtin_onset_anomalies_are_health_kinds(catalog):
    kinds = anomaly_kinds()
    assert {s.onset_anomaly for s in catalog.signatures if s.onset_anomaly} <= kinds
    assert "nan" in kinds


def test_failure_outside_the_rank_killing_group_is_a_lint_problem(tmp_path):
    outside = GOOD.replace('groups = ["kills-a-rank"]\n', "")
    assert "groups: a failure that ends its process belongs to 'kills-a-rank'" in \
        _problems(tmp_path, outside)[1]


def test_group_relation_expands_to_every_member():
    catalog = load_catalog()
    members = {s.id for s in catalog.signatures if "kills-a-rank" in s.groups}
    for symptom in ("nccl-timeout", "nccl-abort", "fsdp-hang"):
        assert members <= set(catalog.get(symptom).symptom_of) | {symptom}
    # the relation the hand-copied lists missed: a cuBLAS failure explains the timeouts
    assert "cublas-error" in catalog.get("nccl-timeout").symptom_of


def test_example_at_a_level_that_cannot_be_root_is_a_lint_problem(tmp_path):
    warned = GOOD.replace('"FROBNICATOR exploded at step 3"',
                          '"[2024-01-01 10:00:00,000] [WARNING] FROBNICATOR exploded"')
    assert "a warning line can never be its root cause" in _problems(tmp_path, warned)[1]


def test_every_catalog_field_and_reserved_capture_is_documented():
    from forensics.catalog import _KNOWN, RESERVED_CAPTURES

    readme = (Path(__file__).parent.parent / "patterns" / "README.md").read_text()
    missing = [name for name in sorted(_KNOWN) if f"| `{name}` |" not in readme]
    missing += [name for name in RESERVED_CAPTURES if f"`{name}`" not in readme]
    assert missing == []


def test_builtin_regexes_compile_when_first_used_and_the_lint_compiles_them_all():
    lazy = load_catalog()
    signature = next(s for s in lazy.signatures if s.patterns)
    assert signature.patterns._compiled is None
    assert signature.patterns[0].search  # compiled now
    assert signature.patterns._compiled is not None
    eager = load_catalog(compile_builtin=True)
    assert all(s.patterns._compiled is not None for s in eager.signatures if s.patterns)
    assert [s.patterns for s in eager.signatures] == [s.patterns for s in lazy.signatures]

