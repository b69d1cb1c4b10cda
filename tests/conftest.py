"""Shared fixtures: the built-in catalog, a compiled scan plan per engine, and paths."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from forensics.catalog import load_catalog
from forensics.lines.engine import available_engines
from forensics.lines.linepass import compile_plan

# compiled data a run keeps for the next (forensics.files.cache_dir) goes to a folder of
# this test session, not the user's ~/.cache
os.environ.setdefault("FORENSICS_CACHE_DIR", tempfile.mkdtemp(prefix="forensics-tests-"))

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_logs"
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"
GPUALERT = SHARED / "external" / "gpualert-eval" / "corpus"


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture(scope="session", params=available_engines())
def plan(request, catalog):
    return compile_plan(catalog, request.param)


@pytest.fixture(scope="session")
def plans(catalog):
    return {name: compile_plan(catalog, name) for name in available_engines()}
