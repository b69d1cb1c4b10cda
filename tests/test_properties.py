"""Property tests: random bytes and random mixtures of real lines never crash the analyzer,
and always give a valid JSON report."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forensics.catalog import load_catalog
from forensics.inputs.sources import Source
from forensics.pipeline import Analyzer
from forensics.report.json import render_json
from forensics.report.markdown import render_markdown

from .conftest import CORPUS, SAMPLES

ANALYZER = Analyzer(load_catalog())
REAL_LINES = [line for path in [*SAMPLES.glob("*.log"), *CORPUS.glob("c0[0-4]*/log.txt")]
              for line in path.read_bytes().splitlines(keepends=True)][:3000]


def check(data: bytes) -> None:
    analysis = ANALYZER.analyze_sources([Source("fuzz.log", data=data)])
    report = json.loads(render_json(analysis))
    assert report["schema_version"] == 1
    assert report["verdict"] in ("failed", "completed", "interrupted", "unknown")
    assert len(render_markdown(analysis)) <= 60_000


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    check(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(REAL_LINES), max_size=80),
       st.lists(st.sampled_from([b"\r", b"\x1b[31m", b"\xff\xfe", b"\x00", b"[rank3]: ", b""]),
                max_size=80))
def test_mixtures_of_real_lines(lines, noise):
    data = b"".join(noise[i % len(noise)] + line if noise else line
                    for i, line in enumerate(lines))
    check(data)
