"""Secrets never leave forensics: every rule of forensics/secrets.toml on its own examples and
near misses; 29 secret shapes planted in one training log, through every command and format
(`analyze` md/json/text, `timeline` in each export format, `scan`'s Parquet, `memory`); and no
mask on the ordinary ML logs of sample_logs/ and tests/corpus/."""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from forensics.cli import cli, timeline
from forensics.errors import CatalogError
from forensics.model import Evidence
from forensics.redact import (
    MASK,
    load_rules,
    redact,
    redact_frame,
    redact_lines,
    redact_text,
    rules,
    scan_lines,
)

from .budget import budget
from .conftest import ROOT, SAMPLES


@dataclass(frozen=True)
class Planted:
    """A secret shape as a training log prints it: its lines and the values that must not
    come out (each longer than 8 characters)."""

    shape: str
    lines: tuple[str, ...]
    secrets: tuple[str, ...]


# Values made once with random.Random(20250115), written literally. The first 15 shapes were
# masked before issue 15; the last 14 leaked from the Markdown report.
PLANTED = (
    Planted("huggingface-token", ("+ huggingface-cli login --token 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 --add-to-git-credential",), ("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",)),
    Planted("github-token", ("+ pip install -q git+https://ghp_kJfUxuoDvzW0UI2GrbKGUyiErvlefyxX0CRC@github.com/acme-ml/trainer-utils.git@v0.4.1",), ("ghp_kJfUxuoDvzW0UI2GrbKGUyiErvlefyxX0CRC",)),
    Planted("github-fine-grained-token", ("+ echo 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 | gh auth login --with-token",), ("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",)),
    Planted("aws-access-key-id", ("[2024-05-01 12:00:02,118] INFO s3_sync.py:31 - uploading checkpoints to s3://acme-ckpt/run-17 as AKIA0P91UG0K1LM0652T",), ("AKIA0P91UG0K1LM0652T",)),
    Planted("openai-project-key", ("[eval] scoring with gpt-4o-mini (key sk-proj-J-vcCJscyWMB0dCfbhdikwuH9zSD-DhPlZqk2Ny1W02rYj_B6RT30SjuS4jNdgjiwW_Hzcb3xIElbz-qB4ixKhi1RfBgKynajcconh1_qLxdVwoetorZo7EJlW47ffvVBIwszrEz0IMmGmU3gWAj-a9bHu5C)",), ("sk-proj-J-vcCJscyWMB0dCfbhdikwuH9zSD-DhPlZqk2Ny1W02rYj_B6RT30SjuS4jNdgjiwW_Hzcb3xIElbz-qB4ixKhi1RfBgKynajcconh1_qLxdVwoetorZo7EJlW47ffvVBIwszrEz0IMmGmU3gWAj-a9bHu5C",)),
    Planted("openai-legacy-key", ("openai.error.AuthenticationError: Incorrect API key provided: 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.",), ("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",)),
    Planted("anthropic-api-key", ("ANTHROPIC_API_KEY=sk-ant-api03-pB6jnTpazZBCOtSuj2t5W3EIAN8ojqjweS-AqfgmTIGITR2qJ2H5EeNPu0Qt4wv9_Ewaxh94oDWkNdEYjtacOjb6RR31DAA",), ("sk-ant-api03-pB6jnTpazZBCOtSuj2t5W3EIAN8ojqjweS-AqfgmTIGITR2qJ2H5EeNPu0Qt4wv9_Ewaxh94oDWkNdEYjtacOjb6RR31DAA",)),
    Planted("slack-token", ("slack_sdk.errors.SlackApiError: The request to the Slack API failed. (url: https://slack.com/api/chat.postMessage, token xoxb-063555758199-9704801671419-r87TrDVVpqR0vn9e1qjGnQHj)",), ("xoxb-063555758199-9704801671419-r87TrDVVpqR0vn9e1qjGnQHj",)),
    Planted("bearer-header", ("urllib3.connectionpool DEBUG https://mlflow.acme.internal:443 \"POST /api/2.0/mlflow/runs/log-batch HTTP/1.1\" 200 headers={'Authorization': 'Bearer b9oyhXFBTSi.1s3auAGwfm8F5JU5eBZIT4Dwdxmb2boan3Yo'}",), ("b9oyhXFBTSi.1s3auAGwfm8F5JU5eBZIT4Dwdxmb2boan3Yo",)),
    Planted("url-password", ("Looking in indexes: https://pypi.org/simple, https://ml-bot:GKthdURg0jIaoC@pypi.acme.internal/simple",), ("GKthdURg0jIaoC",)),
    Planted("wandb-api-key-env", ("WANDB_API_KEY=9447de1d5202c2bca2e887f3fac09fccc3d24280",), ("9447de1d5202c2bca2e887f3fac09fccc3d24280",)),
    Planted("wandb-login", ("+ wandb login a192c4654a511d38e8e7faea550596fc1be20095",), ("a192c4654a511d38e8e7faea550596fc1be20095",)),
    Planted("yaml-password", ("    password: p4SPJXG2KkDO!",), ("p4SPJXG2KkDO!",)),
    Planted("hub-token-env", ("HUGGING_FACE_HUB_TOKEN=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",), ("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",)),
    Planted("aws-secret-assignment", ("aws_secret_access_key = 3lGr+88AuqLl1eMGTxV6+l9dzMnSey0uSrfnd3uA",), ("3lGr+88AuqLl1eMGTxV6+l9dzMnSey0uSrfnd3uA",)),
    # leaked before issue 15
    Planted("bare-wandb-key", ("[2024-05-01 12:00:03,512] INFO train.py:88 - W&B key from the secrets manager: f46e2e55bddf60ae2851d1e8822e57988c5aa424",), ("f46e2e55bddf60ae2851d1e8822e57988c5aa424",)),
    Planted("bare-aws-secret", ("[2024-05-01 12:00:02,119] INFO s3_sync.py:32 - session ready (YI8xSZaburrvBgCKzGtNhwt19RIXFW+zEF0eSS4y)",), ("YI8xSZaburrvBgCKzGtNhwt19RIXFW+zEF0eSS4y",)),
    Planted("google-api-key", ("[eval] POST https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-pro:generateContent?key=AIzatq7wi6za72VE_22C2qOgbSdMwtodSoLjWMq -> 429",), ("AIzatq7wi6za72VE_22C2qOgbSdMwtodSoLjWMq",)),
    Planted("azure-connection-string", ("datasets: reading az://corpus/shards with DefaultEndpointsProtocol=https;AccountName=acmecorpus;AccountKey=6btDvogXoWHkf9JsEr38aHo6iHPMEHQguxB7EP9mC23UCjVZA7mFD1KsxGFlFni5i4nI0ocK9yIhi6K3/0ULmA==;EndpointSuffix=core.windows.net",), ("6btDvogXoWHkf9JsEr38aHo6iHPMEHQguxB7EP9mC23UCjVZA7mFD1KsxGFlFni5i4nI0ocK9yIhi6K3/0ULmA==",)),
    Planted("jwt", ("[2024-05-01 12:00:05,441] WARNING tracker.py:57 - refresh failed for session eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMtdHJhaW5lciIsImlhdCI6MTcxNDU2MDAwMCwiZXhwIjoxNzQ2MDk2MDAwfQ.klnS69UEq-q1JkkHRXFfDHcunIM7oo68pWO4ZuVac9N; retrying",), ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMtdHJhaW5lciIsImlhdCI6MTcxNDU2MDAwMCwiZXhwIjoxNzQ2MDk2MDAwfQ.klnS69UEq-q1JkkHRXFfDHcunIM7oo68pWO4ZuVac9N", "klnS69UEq-q1JkkHRXFfDHcunIM7oo68pWO4ZuVac9N")),
    Planted("pem-private-key", ("-----BEGIN RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEA7SnyT45k7SSmoswbXWLVTUDI0YNQX7ghKy8n4DmxJtI18tew", "R6C+eC8j27ILrMqB7bvI6R//mXwbm6zC+lAaFk2s7Ddqx8tkCRWCNd8ndqNkIt52", "qUUzY9Xxwau8vdfO3iQ==", "-----END RSA PRIVATE KEY-----"), ("MIIEowIBAAKCAQEA7SnyT45k7SSmoswbXWLVTUDI0YNQX7ghKy8n4DmxJtI18tew", "R6C+eC8j27ILrMqB7bvI6R//mXwbm6zC+lAaFk2s7Ddqx8tkCRWCNd8ndqNkIt52", "qUUzY9Xxwau8vdfO3iQ==")),
    Planted("cli-password", ("+ python scripts/push_results.py --db-host 10.1.4.20 --db-user trainer --password Udsz0bmqbg7pYadm",), ("Udsz0bmqbg7pYadm",)),
    Planted("cli-wandb-key", ("+ python train.py --config configs/llama3_8b_sft.yaml --wandb-key 9951e8941fa1de25fd0e524b422a337abf2f9130 --output_dir /checkpoints/run-17",), ("9951e8941fa1de25fd0e524b422a337abf2f9130",)),
    Planted("cli-api-key", ("+ python eval/judge.py --judge gpt-4o --api-key OYuyqE3oKQfjB69PjU2zvXwPwGWVJ8H6 --max-samples 500",), ("OYuyqE3oKQfjB69PjU2zvXwPwGWVJ8H6",)),
    Planted("api-token-env", ("API_TOKEN=terwNGd2welBqnwLBmvxKjwRwhy81swXQJyu4czb",), ("terwNGd2welBqnwLBmvxKjwRwhy81swXQJyu4czb",)),
    Planted("sshpass", ("+ sshpass -p '7l3u2GH4dk#HtJ' ssh -o StrictHostKeyChecking=no ubuntu@gpu-node-07 nvidia-smi",), ("7l3u2GH4dk#HtJ",)),
    Planted("traceback-local", ("│ │       token = 'BKs98A4xll3EJRQIXQBUCWtf'                                          │ │",), ("BKs98A4xll3EJRQIXQBUCWtf",)),
    # a 120-column terminal hard-wrapped the token: neither half may survive
    Planted("wrapped-token", ("[2024-05-01 12:00:09,002] INFO hub.py:210 - pushing adapter acme/llama3-8b-lora to the Hub with token hf_OdPynwSTWDBGfNx", "eTKbPZmTMuMgVSkSMvY (private=True)"), ("hf_OdPynwSTWDBGfNx", "OdPynwSTWDBGfNx", "eTKbPZmTMuMgVSkSMvY")),
    # the log's own file name: it shows in every report, Parquet row and timeline export
    Planted("file-name", (), ("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", "VHzbevYNDwIUehUgWrRUmSdnpaeKRYMUKf")),
)
LOG_NAME = "train_hf_VHzbevYNDwIUehUgWrRUmSdnpaeKRYMUKf.log"
SECRETS = [secret for planted in PLANTED for secret in planted.secrets]
# the three lines before the root cause, quoted with it in every format that quotes context
BEFORE_ROOT = ("cli-wandb-key", "hub-token-env", "wandb-api-key-env")
AFTER_ROOT = tuple(p.shape for p in PLANTED if p.lines and p.shape not in BEFORE_ROOT)
ROOT_LINE = ("[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
             "GPU 0 has a total capacity of 79.10 GiB of which 1.12 GiB is free.")


def test_the_planted_shapes_are_29_and_long_enough():
    assert len(PLANTED) == 29 and len({p.shape for p in PLANTED}) == 29
    assert all(len(secret) > 8 for secret in SECRETS)


def planted_log(folder: Path) -> Path:
    """A run that logs metrics (past the 256 KiB below which pastes are repaired), then the
    planted lines around a CUDA OOM: three just before it, the other 30 the log's tail (a
    job script's `set -x` teardown), so a Markdown report quotes every one of them."""
    shapes = {p.shape: p.lines for p in PLANTED}
    before = [line for shape in BEFORE_ROOT for line in shapes[shape]]
    after = [line for p in PLANTED if p.shape not in BEFORE_ROOT for line in p.lines]
    metrics = [f"{{'loss': {3 - step / 2000:.4f}, 'grad_norm': 0.81, 'learning_rate': 2e-05, "
               f"'epoch': {step / 3600:.4f}}}" for step in range(1, 3601)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_NAME
    path.write_text("\n".join([*metrics, *before, ROOT_LINE, *after]) + "\n", encoding="utf-8")
    assert path.stat().st_size > 256 * 1024 and len(after) == 30
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def shown(text: str) -> set[str]:
    """The planted shapes any of whose secrets occur in `text`."""
    return {p.shape for p in PLANTED if any(secret in text for secret in p.secrets)}


# -- the rules, on their own examples --------------------------------------------------------

EXAMPLES = [(r, n, e) for r in rules() for n, e in enumerate(r.examples, 1)]
COUNTER = [(r, n, c) for r in rules() for n, c in enumerate(r.counterexamples, 1)]


@pytest.mark.parametrize("rule,n,example", EXAMPLES,
                         ids=[f"{r.id}:{n}" for r, n, _ in EXAMPLES])
def test_example_is_masked_by_its_rule(rule, n, example):
    found = [h for hits in scan_lines(example.line.split("\n")) for h in hits]
    assert rule.id in {h.rule for h in found}, f"{rule.id}: example {n} not found by its rule"
    redacted = redact_text(example.line)
    assert example.secret not in redacted and MASK in redacted


@pytest.mark.parametrize("rule,n,counter", COUNTER,
                         ids=[f"{r.id}:ok{n}" for r, n, _ in COUNTER])
def test_near_miss_is_left_alone(rule, n, counter):
    assert redact_text(counter.line) == counter.line, f"{rule.id}: {counter.why}"


def test_every_rule_has_examples_and_near_misses():
    assert len(rules()) >= 20
    for rule in rules():
        assert rule.examples and rule.counterexamples, rule.id


BROKEN_RULES = """
[[rule]]
id = "a-rule"
description = "its keyword is in none of its examples"
keywords = ["absent"]
regex = '''tok(?P<secret>[0-9]+)'''
example = [{ line = "tok123", secret = "123" }]

[[rule]]
id = "a-rule"
description = "the same id again"
regex = "x"
example = [{ line = "x", secret = "x" }]

[[rule]]
id = "bad-regex"
description = "a regex that does not compile"
regex = '''(unclosed'''
example = [{ line = "x", secret = "x" }]

[[rule]]
id = "Bad_Id"
description = "not kebab-case"
regex = "x"
example = [{ line = "x", secret = "x" }]

[[rule]]
id = "colour"
description = "an unknown field"
regex = "x"
colour = "red"
example = [{ line = "x", secret = "x" }]
"""


def test_a_broken_rules_file_names_every_problem(tmp_path):
    path = tmp_path / "secrets.toml"
    path.write_text(BROKEN_RULES, encoding="utf-8")
    with pytest.raises(CatalogError) as raised:
        load_rules(path)
    problems = raised.value.problems
    assert len(problems) == 5, problems
    for expected in ("(a-rule): keywords: an example holds none of them",
                     "id: a-rule is used twice", "(bad-regex): error:",
                     "(Bad_Id): id: not kebab-case", "unknown ['colour']"):
        assert any(expected in problem for problem in problems), (expected, problems)


# -- how lines are read together -------------------------------------------------------------

@pytest.mark.parametrize("planted", PLANTED, ids=[p.shape for p in PLANTED])
def test_each_planted_shape_is_masked_and_masking_twice_changes_nothing(planted):
    lines = list(planted.lines) or [f"logs/{LOG_NAME}: 12 lines"]
    once = redact_lines(lines)
    assert not [s for s in planted.secrets if any(s in line for line in once)]
    assert redact_lines(once) == once


def test_a_secret_wrapped_over_a_line_end_is_masked_on_both_lines_in_a_tail():
    wrapped = next(p for p in PLANTED if p.shape == "wrapped-token")
    tail = tuple(Evidence(LOG_NAME, 40 + i, line) for i, line in enumerate(wrapped.lines))
    redacted = redact(tail)
    assert redacted[0].text.endswith(MASK) and redacted[1].text == f"{MASK} (private=True)"
    apart = (tail[0], Evidence(LOG_NAME, 90, tail[1].text))  # not consecutive: not joined
    assert redact(apart)[1].text == tail[1].text


def test_a_whole_secret_ending_a_line_does_not_swallow_the_next_line():
    lines = ["export HF_TOKEN=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",
             "GPU0 ready: NVIDIA H100 80GB HBM3", "HOME=/root"]
    assert redact_lines(lines) == ["export HF_TOKEN=" + MASK, *lines[1:]]


def test_a_line_that_starts_a_record_of_its_own_is_not_a_wrapped_secrets_tail():
    lines = ["    from verl.utils.parser.chat_template_parser import ChatTemplateParser",
             "ModuleNotFoundError: No module named 'verl.utils.parser'"]
    assert redact_lines(lines) == lines


def test_a_quoted_line_is_read_with_its_context_and_its_body_follows_its_text():
    line = "[rank0]: pushing with token hf_OdPynwSTWDBGfNx"
    evidence = Evidence("a.log", 7, "eTKbPZmTMuMgVSkSMvY failed", before=(line,),
                        body="eTKbPZmTMuMgVSkSMvY failed")
    redacted = redact(evidence)
    assert redacted.text == redacted.body == f"{MASK} failed"
    assert redacted.before == (f"[rank0]: pushing with token {MASK}",)


def test_a_frame_is_redacted_in_its_names_and_text_cells_only():
    frame = pd.DataFrame({"source": [LOG_NAME] * 3, "loss": [1.0, 0.5, 0.25],
                          "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": [1, 2, 3]})
    redacted = redact_frame(frame)
    assert list(redacted.columns) == ["source", "loss", MASK]
    assert set(redacted["source"]) == {f"train_{MASK}.log"}
    assert list(redacted["loss"]) == [1.0, 0.5, 0.25]
    numbers = frame[["loss"]]
    assert redact_frame(numbers) is numbers  # nothing secret: not even copied


def test_hostile_long_lines_take_linear_time():
    """64 KiB lines built to make a regex backtrack (before the scheme of a URL was bounded,
    the first took 23 s)."""
    size = 1 << 16
    lines = ["a." * (size // 2) + "://x", "--a-b" * (size // 5) + " password",
             "token=" * (size // 6), "password" + " " * size + "=", "a" * size + " ",
             "-----BEGIN " + "A " * (size // 2), "http://a:b" * (size // 10)]
    started = time.perf_counter()
    redact_lines(lines)
    assert time.perf_counter() - started < budget(5)


# -- every command and format ----------------------------------------------------------------

@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    return planted_log(tmp_path_factory.mktemp("planted") / "job")


@pytest.mark.parametrize("fmt", ["md", "json", "text"])
def test_analyze_prints_none_of_the_29(log, fmt):
    raw = invoke("analyze", "--no-redact", "--format", fmt, str(log))
    redacted = invoke("analyze", "--format", fmt, str(log))
    assert redacted.exit_code == raw.exit_code == 1, redacted.output
    assert shown(redacted.output) == set()
    assert MASK in redacted.output
    expected = {"md": {p.shape for p in PLANTED},  # the report quotes every planted line
                "text": {*BEFORE_ROOT, *AFTER_ROOT[:3], "file-name"}, "json": {"file-name"}}[fmt]
    assert shown(raw.output) >= expected  # the secrets were there to leak
    if fmt == "json":
        assert json.loads(redacted.output)["root_cause"]["signature"] == "cuda-oom"


def test_analyze_writes_none_of_the_29_to_a_file(log, tmp_path):
    out = tmp_path / "report.md"
    assert invoke("analyze", "-o", str(out), str(log)).exit_code == 1
    assert shown(out.read_text(encoding="utf-8")) == set()


def timeline_formats() -> list[str]:
    option = next(p for p in timeline.params if p.name == "fmt")
    return list(option.type.choices)


@pytest.mark.parametrize("fmt", timeline_formats())
def test_timeline_exports_none_of_the_29(log, tmp_path, fmt):
    out = tmp_path / f"timeline.{fmt}"
    result = invoke("timeline", "--format", fmt, "-o", str(out), str(log))
    assert result.exit_code == 0, result.output
    if fmt == "parquet":
        frame = pd.read_parquet(out)
        text = "\n".join([*map(str, frame.columns),
                          *(str(v) for c in frame.columns for v in frame[c].unique())])
    else:
        text = out.read_text(encoding="utf-8")
    assert len(text) > 1000 and shown(text) == set()
    assert MASK in text  # the file name, in the source column
    if fmt != "parquet":
        assert shown(invoke("timeline", "--format", fmt, str(log)).output) == set()


def string_cells(path: Path) -> list[str]:
    """Every string in a Parquet file, list items included."""
    cells = []
    for row in pq.read_table(path).to_pylist():
        for value in row.values():
            items = value if isinstance(value, list) else [value]
            cells += [item for item in items if isinstance(item, str)]
    return cells


def test_scan_rows_hold_none_of_the_29(log, tmp_path):
    root = tmp_path / "fleet"
    job = root / f"sweep-{LOG_NAME[6:-4]}"  # a job folder named with the token too
    job.mkdir(parents=True)
    (job / log.name).write_bytes(log.read_bytes())
    (root / "other").mkdir()
    (root / "other" / "slurm-4242.out").write_text(f"{ROOT_LINE}\n", encoding="utf-8")
    out = tmp_path / "scan"
    first = invoke("scan", "--out", str(out), "--jobs", "1", "--format", "json", str(root))
    assert first.exit_code == 1, first.output
    cells = string_cells(out / "jobs.parquet") + string_cells(out / "findings.parquet")
    assert cells and shown("\n".join(cells)) == set() and shown(first.output) == set()
    assert any(MASK in cell for cell in cells)
    fingerprints = [r["fingerprint"] for r in pq.read_table(out / "jobs.parquet").to_pylist()]
    assert all(len(f) == 32 and MASK not in f for f in fingerprints)
    again = invoke("scan", "--out", str(out), "--jobs", "1", "--format", "json", str(root))
    assert json.loads(again.output)["reused"] == 2  # the redacted rows still serve as cache


def snapshot_with_token() -> dict:
    """An allocator snapshot (the shape of tests/test_artifacts.py's) whose live block was
    made in a script whose file name holds a token."""
    frames = [{"filename": f"/workspace/{LOG_NAME[:-4]}.py", "line": 88, "name": "step"}]
    block = {"address": 1 << 40, "size": 40 << 20, "requested_size": 40 << 20,
             "state": "active_allocated", "frames": frames}
    return {"segments": [{"device": 0, "address": 1 << 40, "total_size": 64 << 20,
                          "allocated_size": 40 << 20, "stream": 0, "blocks": [block]}],
            "device_traces": [[{"action": "oom", "addr": 0, "size": 20 << 20,
                                "frames": frames, "device_free": 5 << 20}]]}


def test_memory_prints_no_token_from_a_frame_file_name(tmp_path):
    data = snapshot_with_token()
    path = tmp_path / "memory_snapshot.pickle"
    path.write_bytes(pickle.dumps(data))
    result = invoke("memory", str(path))
    assert result.exit_code == 0, result.output
    assert shown(result.output) == set() and f"/workspace/train_{MASK}.py:88" in result.output


# -- no masks on ordinary logs ---------------------------------------------------------------

# Every mask the rules put on the project's own logs, by file and masked text: each is an API
# key a vLLM server was started with (a placeholder to a person who knows it, a key to
# anyone else), so masking it is right.
EXPECTED_MASKS = {
    ("tests/corpus/mo-026/log.txt", "secret-assignment", "sk-local"),
    ("tests/corpus/mv-014/log.txt", "cli-secret-flag", "token-abc"),
    ("tests/corpus/mv-014/log.txt", "secret-assignment", "token-abc"),
    ("tests/corpus/mv-023/log.txt", "secret-assignment", "anton-vllm-key"),
}


def test_ordinary_logs_are_not_masked():
    files = sorted(f for folder in (SAMPLES, ROOT / "tests" / "corpus")
                   for f in folder.rglob("*") if f.is_file() and f.suffix in (".log", ".txt",
                                                                                ".out", ".err"))
    assert len(files) > 500
    masks = set()
    for path in files:
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
        for line, hits in zip(lines, scan_lines(lines), strict=True):
            masks |= {(path.relative_to(ROOT).as_posix(), h.rule, line[h.start:h.end])
                      for h in hits}
    assert masks == EXPECTED_MASKS, "\n".join(map(str, sorted(masks ^ EXPECTED_MASKS)))
