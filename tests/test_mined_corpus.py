"""The project's own mined corpus (tests/corpus): real logs from public issue threads and
committed job logs, labelled from their threads. Guards, not tuning targets: no healthy run
raises a failure, and each batch stays at or above the score it has today (every batch's
first look is in first_look.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forensics import analyze

CORPUS = Path(__file__).parent / "corpus"
#: top-1 per batch at the last commit, rounded down: a change that loses cases fails here
FLOOR = {"ma": 0.93, "mb": 0.94, "mc": 0.85, "md": 0.97, "me": 0.95, "mf": 0.92, "mg": 0.97,
         "mh": 0.91, "mi": 0.97, "mj": 0.9, "mk": 0.85, "ml": 0.93, "mm": 0.88, "mn": 0.95,
         "mo": 0.96, "mp": 1.0, "mq": 0.96, "mr": 1.0, "ms": 1.0, "mt": 0.96, "mu": 1.0,
         "mv": 1.0, "mw": 1.0, "mx": 0.96, "my": 1.0, "mz": 0.86, "na": 0.96,
         "nb": 0.8, "nc": 0.93, "nd": 0.95, "ne": 1.0, "nf": 1.0, "ng": 0.96, "nh": 1.0,
         "ni": 0.96, "nj": 1.0, "nk": 0.96, "nl": 0.96, "nm": 0.88,
         "no": 1.0, "np": 0.95, "nq": 1.0, "nr": 0.95, "ns": 1.0, "nt": 1.0, "nu": 1.0,
         "nv": 0.94, "nw": 1.0, "nx": 1.0, "ny": 1.0, "nz": 1.0}


def _cases(batch: str):
    """A batch's cases: `tests/corpus/<batch>-NNN/`."""
    for case in sorted(p for p in CORPUS.glob(f"{batch}-*") if (p / "meta.json").is_file()):
        meta = json.loads((case / "meta.json").read_text())
        if meta.get("evidence_in_log") is not False:
            yield case, meta


def _report(case: Path) -> dict:
    return analyze(*[p for p in sorted(case.iterdir()) if p.name != "meta.json"]).to_dict()


@pytest.mark.parametrize("batch", sorted(FLOOR))
def test_batch_keeps_its_score(batch):
    scored = [(meta, _report(case)) for case, meta in _cases(batch)]
    right = sum((report["root_cause"] or {}).get("signature", "none")
                in [meta["signatures"][0], *meta.get("accept", [])] for meta, report in scored)
    assert right / len(scored) >= FLOOR[batch]
    for meta, report in scored:
        if meta["signatures"][0] == "none":
            assert report["root_cause"] is None, meta["id"]  # no false alarm on a healthy run


def test_every_batch_has_a_floor_and_a_first_look():
    batches = {p.name.split("-")[0] for p in CORPUS.iterdir() if p.is_dir()}
    first = json.loads((CORPUS / "first_look.json").read_text())["batches"]
    assert batches == set(FLOOR) == set(first)


def test_a_death_no_signature_knows_is_still_a_failure(tmp_path):
    """How the process ended decides: an uncaught exception of an unknown kind is `failed`,
    with its exception line as the evidence, never `unknown`."""
    log = tmp_path / "run.log"
    log.write_text("step 10 done\nTraceback (most recent call last):\n"
                   '  File "train.py", line 3, in <module>\n    main()\n'
                   "mylib.Stopped: the frobnicator gave up\n")
    report = analyze(log).to_dict()
    assert report["verdict"] == "failed"
    assert report["root_cause"]["evidence"][0]["text"] == "mylib.Stopped: the frobnicator gave up"
