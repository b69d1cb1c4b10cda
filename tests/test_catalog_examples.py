"""Every signature's true examples match it and its near misses do not, in every engine,
and every one of its regexes is matched by one of its examples.

Test ids carry the signature id, so `pytest -k cuda-oom` runs one signature's examples.
"""

from __future__ import annotations

import pytest

from forensics.catalog import load_catalog
from forensics.lint import example_tokens, matched_signatures, regex_problems, related

CATALOG = load_catalog()
EXAMPLES = [
    pytest.param(s.id, text, id=f"{s.id}-example-{i}")
    for s in CATALOG.signatures for i, text in enumerate(s.examples)
]
SIGNATURES = [pytest.param(s.id, id=f"{s.id}-regexes") for s in CATALOG.signatures]
COUNTEREXAMPLES = [
    pytest.param(s.id, text, id=f"{s.id}-counterexample-{i}")
    for s in CATALOG.signatures for i, text in enumerate(s.counterexamples)
]


@pytest.mark.parametrize(("signature_id", "text"), EXAMPLES)
def test_example_matches_its_signature_only(signature_id, text, catalog, plan):
    matched = matched_signatures(text, catalog, plan)
    assert signature_id in matched
    signature = catalog.get(signature_id)
    unrelated = {m for m in matched - {signature_id} if not related(signature, catalog.get(m))}
    assert not unrelated


@pytest.mark.parametrize(("signature_id", "text"), COUNTEREXAMPLES)
def test_counterexample_does_not_match(signature_id, text, catalog, plan):
    assert signature_id not in matched_signatures(text, catalog, plan)


@pytest.mark.parametrize("signature_id", SIGNATURES)
def test_every_regex_is_matched_by_an_example(signature_id, catalog, plan):
    signature = catalog.get(signature_id)
    hits = {(index, token.line, token.text): token
            for index, text in enumerate(signature.examples)
            for token in example_tokens(text, plan)
            if any(m.signature == signature_id for m in token.matches)}
    assert regex_problems(signature, hits) == []


def test_every_signature_documents_itself(catalog):
    for signature in catalog.signatures:
        assert len(signature.examples) >= 2, signature.id
        assert signature.counterexamples, signature.id
        assert signature.references, signature.id
        assert signature.cause and signature.fix, signature.id
