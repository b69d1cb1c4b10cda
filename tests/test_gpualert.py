"""The peer tool's labelled corpus (../shared/external/gpualert-eval): our root causes,
mapped to its 15 classes by bench/accuracy.py's table, reach the issue's bar on all logs
and on the wild subset; and both engines agree on every one of its logs."""

from __future__ import annotations

import importlib.util
import json

import pytest

from forensics.catalog import load_catalog
from forensics.inputs.sources import discover
from forensics.lines.engine import available_engines
from forensics.lines.linepass import compile_plan
from forensics.pipeline import Analyzer

from .conftest import GPUALERT, ROOT

pytestmark = pytest.mark.skipif(not GPUALERT.is_dir(), reason="gpualert-eval not present")


def _bench():
    spec = importlib.util.spec_from_file_location("accuracy", ROOT / "bench" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows():
    return [json.loads(line) for line in (GPUALERT / "labels.jsonl").read_text().splitlines()]


def test_accuracy_bar():
    bench = _bench()
    analyzer = Analyzer(load_catalog())
    results = []
    for row in _rows():
        sources, problems = discover([str(GPUALERT.parent / row["log_path"])])
        report = analyzer.analyze_sources(sources, problems).to_dict()
        results.append((row["mode"], bench.gpualert_class(report), row["source"]))
    overall = sum(want == got for want, got, _ in results) / len(results)
    wild = [(w, g) for w, g, source in results if source == "wild"]
    assert overall >= 0.99
    assert sum(w == g for w, g in wild) / len(wild) >= 0.96


@pytest.mark.skipif("hyperscan" not in available_engines(), reason="hyperscan not installed")
def test_engines_agree_on_every_log():
    catalog = load_catalog()
    hs, py = compile_plan(catalog, "hyperscan").engine, compile_plan(catalog, "python").engine
    for row in _rows():
        data = (GPUALERT.parent / row["log_path"]).read_bytes()
        assert hs.scan(data) == py.scan(data), row["id"]
