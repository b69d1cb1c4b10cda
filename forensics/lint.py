"""`forensics patterns check`: the catalog linted like code. Every example must match its
own signature (in every engine) and no unrelated one; no counterexample may match."""

from __future__ import annotations

from forensics.catalog import Catalog, Signature
from forensics.diagnosis.findings import match_tokens
from forensics.inputs.sources import Source
from forensics.lines.engine import available_engines
from forensics.lines.linepass import ScanPlan, plan_scan, scan_source

MIN_EXAMPLES = 2
MIN_COUNTEREXAMPLES = 1


def matched_signatures(text: str, catalog: Catalog, plan: ScanPlan) -> frozenset[str]:
    """The signature ids whose patterns match somewhere in `text` (run as a whole log)."""
    scan = scan_source(Source("<example>", data=text.encode("utf-8")), plan)
    return frozenset(hit.signature.id for hit in match_tokens(scan.tokens, catalog))


def related(a: Signature, b: Signature) -> bool:
    """Signatures that may legitimately fire on the same line."""
    return (b.generic or a.generic or b.id in a.also_matches or a.id in b.also_matches
            or b.id in a.symptom_of or a.id in b.symptom_of)


def check_catalog(catalog: Catalog, engines: list[str] | None = None) -> list[str]:
    """Every lint problem as a `path: field: reason` line (empty when the catalog is clean)."""
    problems: list[str] = []
    by_id = {s.id: s for s in catalog.signatures}
    plans = {name: plan_scan(catalog, name) for name in (engines or available_engines())}
    for signature in catalog.signatures:
        where = signature.path
        if len(signature.examples) < MIN_EXAMPLES:
            problems.append(f"{where}: examples: needs at least {MIN_EXAMPLES} true examples")
        if len(signature.counterexamples) < MIN_COUNTEREXAMPLES:
            problems.append(f"{where}: counterexamples: needs at least one near miss")
        if not signature.references:
            problems.append(f"{where}: references: needs at least one reference")
        for index, example in enumerate(signature.examples):
            if not any(k in example for k in signature.keywords):
                problems.append(f"{where}: examples[{index}]: holds none of the keywords")
            for name, plan in plans.items():
                matched = matched_signatures(example, catalog, plan)
                if signature.id not in matched:
                    problems.append(f"{where}: examples[{index}]: does not match ({name} engine)")
                for other in sorted(matched - {signature.id}):
                    if not related(signature, by_id[other]):
                        problems.append(f"{where}: examples[{index}]: also matches unrelated "
                                        f"signature {other!r} ({name} engine)")
        for index, counter in enumerate(signature.counterexamples):
            for name, plan in plans.items():
                if signature.id in matched_signatures(counter, catalog, plan):
                    problems.append(f"{where}: counterexamples[{index}]: matches ({name} engine)")
    return problems

