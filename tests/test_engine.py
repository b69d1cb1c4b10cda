"""The Hyperscan and pure-Python engines give identical line hits (differential test)."""

from __future__ import annotations

import pytest

from forensics.catalog import load_catalog
from forensics.lines.engine import Keyword, PythonEngine, available_engines, build_engine
from forensics.lines.linepass import compile_plan

from .conftest import CORPUS, SAMPLES

pytestmark = pytest.mark.skipif("hyperscan" not in available_engines(),
                                reason="hyperscan not installed here")

CATALOG = load_catalog()
TEXTS = [pytest.param(t.encode(), id=f"{s.id}-{i}") for s in CATALOG.signatures
         for i, t in enumerate(s.examples + s.counterexamples)]
LOGS = sorted(CORPUS.glob("*/log.txt")) + sorted(SAMPLES.glob("*.log"))


@pytest.fixture(scope="module")
def engines():
    hs = compile_plan(CATALOG, "hyperscan").engine
    py = compile_plan(CATALOG, "python").engine
    return hs, py


@pytest.mark.parametrize("data", TEXTS)
def test_engines_agree_on_examples(engines, data):
    hs, py = engines
    assert hs.scan(data) == py.scan(data)


@pytest.mark.parametrize("path", LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_engines_agree_on_real_logs(engines, path):
    hs, py = engines
    data = path.read_bytes()
    assert hs.scan(data) == py.scan(data)


def test_hyperscan_engine_is_safe_across_threads(engines):
    from concurrent.futures import ThreadPoolExecutor

    hs, py = engines
    data = b"".join(path.read_bytes() for path in LOGS[:20])
    expected = py.scan(data)
    with ThreadPoolExecutor(4) as pool:
        assert all(r == expected for r in pool.map(hs.scan, [data] * 16))


def test_once_keywords_report_their_first_line_only():
    keywords = [Keyword(b"nranks", once=True), Keyword(b"boom")]
    data = b"a nranks 8\nb nranks 8\nboom nranks 8\nnranks\n"
    expected = [(0, 10, frozenset({0})), (22, 35, frozenset({1}))]
    assert PythonEngine(keywords).scan(data) == expected
    assert build_engine(keywords, "hyperscan").scan(data) == expected


def test_short_keywords_are_found_wherever_they_stand():
    """A two-byte keyword is compiled as its extensions by the byte before it: found at the
    block's start, after a line break, a space, a bracket, a letter, a NUL, and caseless."""
    keywords = [Keyword(b"^C"), Keyword(b"boom"), Keyword(b"xY", caseless=True)]
    data = (b"^Cfoo\nPress ^C to stop\n^C boom\nboom\nXy z\n zxy\n\n^C\n"
            b" 45%|####5 | 450/1000 [01:23<01:40]^C[x] Killing\nstep 3\r^CTrace\n\x1b[0m^C\n"
            b"a\x00^C\n^C")
    expected = PythonEngine(keywords).scan(data)
    assert [ids for _, _, ids in expected] == [
        {0}, {0}, {0, 1}, {1}, {2}, {2}, {0}, {0}, {0}, {0}, {0}, {0}]
    assert build_engine(keywords, "hyperscan").scan(data) == expected
    assert build_engine(keywords, "hyperscan").scan(b"xy\x00xy") == [(0, 5, frozenset({2}))]


def test_overlapping_and_caseless_keywords():
    keywords = [Keyword(b"abc"), Keyword(b"bcd"), Keyword(b"XyZ", caseless=True)]
    data = b"zzabcd\nnothing\nxyz here\nabc\n"
    expected = [(0, 6, frozenset({0, 1})), (15, 23, frozenset({2})), (24, 27, frozenset({0}))]
    assert PythonEngine(keywords).scan(data) == expected
    assert build_engine(keywords, "hyperscan").scan(data) == expected


@pytest.mark.skipif("hyperscan" not in available_engines(), reason="no Hyperscan here")
def test_compiled_keywords_are_kept_and_read_back(tmp_path, monkeypatch):
    from forensics.lines import engine as engine_module

    monkeypatch.setenv("FORENSICS_CACHE_DIR", str(tmp_path))
    keywords = [Keyword(b"CUDA out of memory"), Keyword(b"nccl", caseless=True)]
    block = b"x\nRuntimeError: CUDA out of memory.\nNCCL WARN\n"
    first = build_engine(keywords, "hyperscan").scan(block)
    (cached,) = tmp_path.iterdir()

    class NoCompiling:  # a second engine of the same keywords must not compile them
        def __init__(self, *args, **kwargs):
            raise AssertionError("compiled again")

    with monkeypatch.context() as patch:
        patch.setattr(engine_module.hyperscan, "Database", NoCompiling)
        assert build_engine(keywords, "hyperscan").scan(block) == first
    cached.write_bytes(cached.read_bytes()[:100])  # torn: compiled again, and replaced
    assert build_engine(keywords, "hyperscan").scan(block) == first
    assert len(cached.read_bytes()) > 100
    assert list(tmp_path.iterdir()) == [cached]


@pytest.mark.skipif("hyperscan" not in available_engines(), reason="no Hyperscan here")
def test_an_empty_cache_setting_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("FORENSICS_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    build_engine([Keyword(b"some keyword nobody compiled before")], "hyperscan")
    assert not list(tmp_path.iterdir())
