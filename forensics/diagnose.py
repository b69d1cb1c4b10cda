"""From findings to a diagnosis: which finding is the root cause, which are its symptoms,
how sure we are and why. The relations come from the catalog (`symptom_of`, `priority`),
not from code."""

from __future__ import annotations

from dataclasses import dataclass, replace

from forensics.catalog import ANY, Catalog, Signature
from forensics.events import EXCEPTION_LINE
from forensics.model import Attribution, Finding, RootCause, Traceback, WorkerFailure

_EXCEPTION_SUFFIXES = ("Error", "Exception", "Interrupt", "Exit", "Failure", "Failed")


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The root cause (or None) and the findings with their roles set."""

    root: RootCause | None
    findings: tuple[Finding, ...]


def diagnose(findings: list[Finding], catalog: Catalog, tracebacks: list[Traceback],
             worker_failures: list[WorkerFailure] = ()) -> Diagnosis:
    """Pick the originating failure among the findings and label the rest."""
    signatures = {s.id: s for s in catalog.signatures}
    findings = [replace(f, exception_type=exception_type(f, tracebacks),
                        who=_attribution(f, worker_failures)) for f in findings]
    failures = [f for f in findings if signatures[f.signature].is_failure(f.count)]
    present = {f.signature for f in failures}
    specific_present = {f.signature for f in failures
                        if ANY not in signatures[f.signature].symptom_of}

    def explained_by(finding: Finding) -> list[str]:
        signature = signatures[finding.signature]
        causes = [other for other in signature.symptom_of
                  if other != finding.signature and other in present]
        if ANY in signature.symptom_of:
            causes += sorted(specific_present - {finding.signature})
        return causes

    candidates = [f for f in failures if not explained_by(f)] or failures
    if not candidates:
        return Diagnosis(None, tuple(replace(f, role="context") for f in findings))
    order = {f.signature: i for i, f in enumerate(findings)}
    root = max(candidates, key=lambda f: (signatures[f.signature].priority, -order[f.signature]))
    root_signature = signatures[root.signature]

    labelled = []
    for finding in findings:
        if finding is root:
            role = "root"
        elif finding in failures:
            role = "symptom" if explained_by(finding) else "contributing"
        else:
            role = "context"
        labelled.append(replace(finding, role=role))
    rivals = [f for f in candidates if f is not root]
    reasons = _reasons(root, root_signature, labelled, rivals, signatures)
    confidence = _confidence(root_signature, rivals, signatures)
    root_labelled = next(f for f in labelled if f.role == "root")
    return Diagnosis(
        RootCause(root_labelled, confidence, root_signature.cause, tuple(reasons)),
        tuple(labelled),
    )


def _attribution(finding: Finding, worker_failures: list[WorkerFailure]) -> Attribution:
    """Fill in rank and host from the launcher's report of the same exit, when the matching
    line itself does not say (the torchrun block names the failed worker's rank and host)."""
    who = finding.who
    code = finding.capture_dict.get("exitcode")
    if who.rank is not None or code is None or not code.lstrip("-").isdigit():
        return who
    same = [w for w in worker_failures if w.exitcode == int(code)]
    if not same:
        return who
    best = next((w for w in same if w.root_cause_block), same[0])
    return Attribution(rank=best.rank, local_rank=best.local_rank,
                       host=best.host or who.host, pid=best.pid or who.pid,
                       time=best.time or who.time)


def exception_type(finding: Finding, tracebacks: list[Traceback]) -> str | None:
    """The Python exception a finding's first line belongs to, when there is one."""
    first = finding.first
    body = first.text.split("]: ", 1)[-1] if first.text.startswith("[") else first.text
    own = _exception_name(body)
    if own is not None:
        return own
    for tb in tracebacks:
        if tb.source != first.source or not tb.start_line <= first.line <= tb.end_line:
            continue
        for part in tb.parts:
            if part.line >= first.line:
                return part.exception_type
        return tb.final.exception_type if tb.final else None
    return None


def _exception_name(text: str) -> str | None:
    found = EXCEPTION_LINE.match(text.strip())
    if found is None:
        head = text.strip().split(":", 1)[0]
        found = EXCEPTION_LINE.match(head) if head != text.strip() else None
    if found is None:
        return None
    name = found["type"]
    return name if name.rsplit(".", 1)[-1].endswith(_EXCEPTION_SUFFIXES) else None


def _reasons(root: Finding, signature: Signature, findings: list[Finding],
             rivals: list[Finding], signatures: dict[str, Signature]) -> list[str]:
    reasons = []
    if signature.generic:
        reasons.append(f"no known signature explains it: an uncaught "
                       f"`{root.exception_type or 'exception'}` ended the run")
    else:
        reasons.append(f"the most specific failure signature found (`{root.signature}`, "
                       f"priority {signature.priority})")
    symptoms = [f.signature for f in findings if f.role == "symptom"]
    if symptoms:
        reasons.append("explains what followed: " + ", ".join(f"`{s}`" for s in symptoms))
    if rivals:
        reasons.append("other independent failures were found too: "
                       + ", ".join(f"`{f.signature}`" for f in rivals))
    elif root.ranks and len(root.ranks) == 1:
        reasons.append(f"seen on rank {root.ranks[0]} only")
    return reasons


def _confidence(signature: Signature, rivals: list[Finding],
                signatures: dict[str, Signature]) -> float:
    score = 0.5 + 0.45 * signature.priority / 100
    if signature.generic:
        score = 0.5
    close = [f for f in rivals if signatures[f.signature].priority >= signature.priority - 10]
    score -= 0.1 * len(close)
    return round(max(0.2, min(score, 0.97)), 2)
