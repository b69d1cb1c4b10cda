"""Property tests over the public surface (`forensics.analyze` and `Analysis.to_dict()`):
random bytes and random mixtures of real log lines never crash the analyzer, and what the
JSON report says is consistent with the input it was given:

- the verdict is one of the four values, and it is "failed" exactly when there is a root
  cause, which is the one finding whose role is "root";
- every evidence line number lies within the file's line count, and its text is (part of)
  that line of the input, after the cleaning the report promises (ANSI colour codes removed,
  a `\\r` redraw split off, a long line shortened with " …");
- noise that the analyzer is meant to see through (ANSI colour codes, CRLF line endings)
  does not change the root cause found in the real lines.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import forensics

from .conftest import CORPUS, SAMPLES

REAL_LINES = [line.rstrip(b"\r\n") + b"\n"
              for path in [*SAMPLES.glob("*.log"), *CORPUS.glob("c0[0-4]*/log.txt")]
              for line in path.read_bytes().splitlines(keepends=True)][:3000]
VERDICTS = ("failed", "completed", "interrupted", "unknown")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")  # what "colour codes" means
METRICS_RECORD = " (metrics record)"  # evidence quoted from a metrics row, not a log line
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="forensics-props-") as folder:
        yield Path(folder)


def report_of(folder: Path, data: bytes, name: str = "fuzz.log") -> dict:
    path = folder / name
    path.write_bytes(data)
    return forensics.analyze(path, redact=False).to_dict()


def evidence_of(report: dict) -> list[dict]:
    root = report["root_cause"]
    return [*(root["evidence"] if root else []), *(f["first"] for f in report["findings"])]


def check_consistent(report: dict, data: bytes, name: str) -> None:
    assert report["schema_version"] == 2
    assert report["verdict"] in VERDICTS
    roots = [f["signature"] for f in report["findings"] if f["role"] == "root"]
    root = report["root_cause"]
    assert (report["verdict"] == "failed") == (root is not None)
    assert roots == ([root["signature"]] if root else [])
    (source,) = [s for s in report["sources"] if not s["name"].startswith("<")]
    assert source["name"].endswith(name)
    assert source["bytes"] <= len(data)
    lines = data.decode("utf-8", "replace").split("\n")
    for evidence in evidence_of(report):
        assert evidence["source"] == source["name"]
        assert 1 <= evidence["line"] <= source["lines"] <= len(lines)
        text = evidence["text"]
        if text.endswith(METRICS_RECORD):
            continue
        if text.endswith(" …"):
            text = text[:-2]
        assert text in ANSI.sub("", lines[evidence["line"] - 1]), evidence


@FAST
@given(st.binary(max_size=4096))
def test_random_bytes(workdir, data):
    report = report_of(workdir, data)
    check_consistent(report, data, "fuzz.log")


@FAST
@given(st.lists(st.sampled_from(REAL_LINES), min_size=1, max_size=80))
# a paste that begins inside a traceback: its evidence is that frame, not a header it lacks
@example(lines=[b'  File "/opt/conda/envs/axolotl/bin/torchrun", line 8, in <module>\n'])
def test_mixtures_of_real_lines(workdir, lines):
    data = b"".join(lines)
    check_consistent(report_of(workdir, data), data, "fuzz.log")


COLOURS = [b"", b"\x1b[31m", b"\x1b[0m", b"\x1b[1;33m", b"\x1b[2K"]


@FAST
@given(st.lists(st.tuples(st.sampled_from(REAL_LINES), st.sampled_from(COLOURS),
                          st.sampled_from(COLOURS), st.booleans()), min_size=1, max_size=80))
def test_colour_codes_and_crlf_do_not_change_the_root_cause(workdir, picks):
    clean = b"".join(line for line, *_ in picks)
    noisy = b"".join(before + line[:-1] + after + (b"\r\n" if crlf else b"\n")
                     for line, before, after, crlf in picks)
    expected, found = report_of(workdir, clean), report_of(workdir, noisy)
    check_consistent(found, noisy, "fuzz.log")

    def root(report: dict) -> tuple | None:
        cause = report["root_cause"]
        return cause and (cause["signature"], cause["rank"], cause["exception_type"],
                          [e["line"] for e in cause["evidence"]])

    assert root(found) == root(expected)
