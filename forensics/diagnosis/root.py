"""From findings to a diagnosis: which finding is the root cause, which are its symptoms,
how sure we are and why. The relations come from the catalog (`symptom_of`, `priority`,
`corroborating_*`, `onset_anomaly`, `stalled_collective`), not from code: a finding is a
symptom when a signature it names as a possible cause is present; a catch-all ("*"),
group or two-way relation only holds when the cause came first (or, on neighbouring lines of one
event, when the cause is the more specific). Among the rest the highest priority
wins, then the odd rank out, then the earliest."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from forensics.catalog import ANY, Catalog, Signature
from forensics.diagnosis.findings import captured
from forensics.lines.blocks import exception_name
from forensics.model import (
    Anomaly,
    Attribution,
    CollectiveMismatch,
    Finding,
    FlightRecord,
    Role,
    RootCause,
    Traceback,
    WorkerFailure,
)
from forensics.text import rank_list


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The root cause (or None) and the findings with their roles set."""

    root: RootCause | None
    findings: tuple[Finding, ...]


def earlier(a: Finding, b: Finding) -> bool:
    """Whether `a` was seen before `b`: by time when both lines carry one and they come from
    different files, else by position (file order, then line)."""
    if a.when is not None and b.when is not None and a.first.source != b.first.source:
        return a.when < b.when
    return a.order < b.order


def known_earlier(a: Finding, b: Finding) -> bool:
    """Whether `a` is known to come before `b`: by line within one file, by time across
    files (files without times, such as one log per rank, say nothing about order)."""
    if a.first.source == b.first.source:
        return a.order < b.order
    return a.when is not None and b.when is not None and a.when < b.when


#: lines this close in one file are one event told in parts (`terminate called after
#: throwing ...` and its `what(): ...`); their order says nothing about cause
ONE_EVENT_LINES = 2


def one_event(a: Finding, b: Finding) -> bool:
    """Whether two findings begin on neighbouring lines of one file, printed by one process
    (as far as the lines' prefixes tell: the same rank and host)."""
    return (a.first.source == b.first.source
            and abs(a.first.line - b.first.line) <= ONE_EVENT_LINES
            and (a.who.rank, a.who.host) == (b.who.rank, b.who.host))


class _Relations:
    """The catalog's cause-and-symptom relations among the failures of one job."""

    def __init__(self, signatures: dict[str, Signature], failures: list[Finding]) -> None:
        self.signatures = signatures
        self.failures = failures

    def causes_of(self, finding: Finding) -> list[Finding]:
        """The failures present that the catalog names as possible causes of `finding`."""
        signature = self.signatures[finding.signature]
        causes = []
        for other in self.failures:
            if other is finding:
                continue
            other_signature = self.signatures[other.signature]
            named = other.signature in signature.symptom_of and other.signature != finding.signature
            wildcard = ANY in signature.symptom_of and ANY not in other_signature.symptom_of
            if not (named or wildcard):
                continue
            if _plainly(finding, signature) and not other.definite:
                continue  # a hint (a cut message, a hedge) explains nothing stated plainly
            mutual = finding.signature in other_signature.symptom_of
            if mutual and one_event(finding, other):
                if other_signature.priority > signature.priority:
                    causes.append(other)  # `terminate called ...` then `what(): <why>`
                continue
            by_group = other.signature in signature.symptom_by_group
            if (mutual or by_group or not named) and known_earlier(finding, other):
                continue  # a consequence cannot come first (for "*", group and two-way
                # relations; a cause named alone is trusted whatever the order)
            causes.append(other)
        return causes

    def role(self, finding: Finding, root: Finding) -> Role:
        if finding is root:
            return Role.ROOT
        if any(f is finding for f in self.failures):
            return Role.SYMPTOM if self.causes_of(finding) else Role.CONTRIBUTING
        return Role.CONTEXT


def diagnose(findings: list[Finding], catalog: Catalog, tracebacks: list[Traceback],
             worker_failures: list[WorkerFailure] = (),
             anomalies: tuple[Anomaly, ...] = (),
             flight: FlightRecord | None = None) -> Diagnosis:
    """Pick the originating failure among the findings and label the rest; a Flight
    Recorder dump names the culprit rank of a stalled collective."""
    signatures = {s.id: s for s in catalog.signatures}
    findings = [replace(f, exception_type=exception_type(f, tracebacks),
                        who=_attribution(f, worker_failures)) for f in findings]
    failures = [f for f in findings if signatures[f.signature].is_failure(f.root_lines)]
    relations = _Relations(signatures, failures)
    candidates = [f for f in failures if not relations.causes_of(f)] or failures
    if not candidates:
        return Diagnosis(None, tuple(replace(f, role=Role.CONTEXT) for f in findings))
    root = _pick_root(candidates, signatures)
    root_signature = signatures[root.signature]
    confirmed = _is_confirmed(root, root_signature, {f.signature for f in failures})
    labelled = [replace(f, role=relations.role(f, root),
                        confirmed=confirmed if f is root else f.confirmed) for f in findings]
    root = next(f for f in labelled if f.role == Role.ROOT)
    onset = next((a for a in anomalies if a.kind == root_signature.onset_anomaly), None)
    if onset is not None:
        root = replace(root, step=onset.step)
    rivals = [f for f in candidates if f.signature != root.signature or f.order != root.order]
    reasons = _reasons(root, root_signature, labelled, rivals, failures, worker_failures)
    reasons += _preceded_by(root, anomalies)
    confidence = _confidence(root_signature, rivals, signatures, confirmed)
    if not root.loud:
        confidence = round(max(0.2, confidence * 0.8), 2)
    mismatch = flight.mismatch if flight is not None else None
    if mismatch is not None and root_signature.stalled_collective:
        root, reason = _flight_culprit(root, mismatch)
        reasons.append(reason)
        confidence = round(min(0.97, confidence + 0.15), 2)
    labelled = [root if f.role == Role.ROOT else f for f in labelled]
    missing = "" if confirmed is not False else _missing(root_signature, root)
    return Diagnosis(
        RootCause(root, confidence, root_signature.cause, tuple(reasons), missing),
        tuple(labelled),
    )


def _pick_root(candidates: list[Finding], signatures: dict[str, Signature]) -> Finding:
    """A failure stated as an error before one only warned about (a warning the run went
    past did not end it), one stated plainly before a hint (a message cut short, a hedge),
    then the highest priority, then the odd rank out (fewest ranks),
    then the earliest."""
    chronological = sorted(candidates, key=functools.cmp_to_key(
        lambda a, b: -1 if earlier(a, b) else (1 if earlier(b, a) else 0)))
    position = {id(f): i for i, f in enumerate(chronological)}
    return max(candidates, key=lambda f: (f.loud, _plainly(f, signatures[f.signature]),
                                          signatures[f.signature].priority,
                                          -len(f.ranks), -position[id(f)]))


def _plainly(finding: Finding, signature: Signature) -> bool:
    """Whether a finding states a specific failure plainly: not only as a hint (a message
    cut short, a hedge), and not as the catch-all that any exception is (which a specific
    hint still says more than)."""
    return finding.definite and not signature.generic


def _flight_culprit(root: Finding, mismatch: CollectiveMismatch) -> tuple[Finding, str]:
    """The rank a Flight Recorder dump names as the one the others waited for."""
    culprits = ", ".join(str(r) for r in mismatch.ranks)
    reason = (f"Flight Recorder: rank {culprits} {mismatch.detail.split(':')[0]} at "
              f"`{mismatch.op}` sequence {mismatch.seq} (process group "
              f"{mismatch.process_group}); the other ranks waited for it")
    if len(mismatch.ranks) == 1:
        root = replace(root, who=replace(root.who, rank=mismatch.ranks[0]))
    return root, reason


def _is_confirmed(finding: Finding, signature: Signature, present: set[str]) -> bool | None:
    if finding.confirmed is None:
        return None
    return finding.confirmed or any(s in present for s in signature.corroborating_signatures)


def _missing(signature: Signature, finding: Finding) -> str:
    where = finding.who.host or "the node"
    when = finding.who.time or "the time of the failure"
    text = " ".join(signature.if_uncorroborated.split())
    return text.replace("{host}", where).replace("{time}", when)


def _attribution(finding: Finding, worker_failures: list[WorkerFailure]) -> Attribution:
    """Fill in rank and host from the launcher's report of the same exit, when the matching
    line itself does not say (the torchrun block names the failed worker's rank and host)."""
    who = finding.who
    if who.rank is not None or not finding.exit_codes:
        return who
    same = [w for w in worker_failures if w.exitcode in finding.exit_codes]
    if not same:
        return who
    best = next((w for w in same if w.root_cause_block), same[0])
    return Attribution(rank=best.rank, local_rank=best.local_rank,
                       host=best.host or who.host, pid=best.pid or who.pid,
                       time=best.time or who.time)


def exception_type(finding: Finding, tracebacks: list[Traceback]) -> str | None:
    """The Python exception a finding's first line belongs to, when there is one."""
    first = finding.first
    own = exception_name(first.body or first.text)
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


def _reasons(root: Finding, signature: Signature, findings: list[Finding],
             rivals: list[Finding], failures: list[Finding],
             worker_failures: list[WorkerFailure]) -> list[str]:
    reasons = []
    if signature.generic and root.exception_type is None:
        reasons.append("no known signature explains it: the run died in a traceback whose "
                       "exception line is missing (cut off)")
    elif signature.generic:
        reasons.append(f"no known signature explains it: an uncaught "
                       f"`{root.exception_type}` ended the run")
    else:
        reasons.append(f"the most specific failure signature found (`{root.signature}`, "
                       f"priority {signature.priority})")
    if captured(root.captures, "waiting"):
        reasons.append("the log ends while it is still waiting: the wait never ended")
    elif not root.loud:
        reasons.append("stated only as a warning: no error line names the failure (the run "
                       "died after it, or its exception line is missing)")
    others = [f for f in failures if f.order != root.order or f.signature != root.signature]
    if others and all(earlier(root, f) for f in others):
        reasons.append("the earliest failure in the job")
    symptoms = sorted({f.signature for f in findings if f.role == Role.SYMPTOM})
    if symptoms:
        reasons.append("explains what followed: " + ", ".join(f"`{s}`" for s in symptoms))
    other_ranks = {r for f in others for r in f.ranks}
    if len(root.ranks) == 1 and other_ranks - set(root.ranks):
        reasons.append(f"the odd rank out: only rank {root.ranks[0]} reported it; ranks "
                       f"{rank_list(other_ranks - set(root.ranks))} failed afterwards")
    if rivals:
        reasons.append("other independent failures were found too: "
                       + ", ".join(f"`{f.signature}`" for f in rivals))
    blamed = next((w for w in worker_failures if w.root_cause_block), None)
    rank = root.rank
    if blamed is not None and blamed.rank is not None and rank is not None:
        if blamed.rank == rank:
            reasons.append(f"torchrun's failure block agrees: rank {rank} "
                           f"(exitcode {blamed.exitcode})")
        else:
            reasons.append(f"torchrun's \"Root Cause\" block names rank {blamed.rank} "
                           f"(exitcode {blamed.exitcode}), the first worker *exit* it saw, "
                           f"not the first error")
    return reasons


def _preceded_by(root: Finding, anomalies: tuple[Anomaly, ...]) -> list[str]:
    """Unhealthy metrics before the failure (or at its very step): contributing evidence."""
    limit = root.step
    earlier_ones = [a for a in anomalies if a.kind != "nan"
                    and (limit is None or a.step <= limit)]
    out = []
    for anomaly in earlier_ones[:2]:
        seen = f"({anomaly.value:.4g}; healthy {anomaly.healthy})"
        if anomaly.step == limit:  # what went wrong with it, not before it
            out.append(f"together with a {anomaly.kind} of `{anomaly.metric}` at the same "
                       f"step {seen}")
            continue
        gap = f", {limit - anomaly.step} step(s) before" if limit is not None else ""
        out.append(f"preceded by a {anomaly.kind} of `{anomaly.metric}` at step "
                   f"{anomaly.step} {seen}{gap}")
    return out


def _confidence(signature: Signature, rivals: list[Finding],
                signatures: dict[str, Signature], confirmed: bool | None) -> float:
    score = 0.5 + 0.45 * signature.priority / 100
    if signature.generic:
        score = 0.5
    close = [f for f in rivals if signatures[f.signature].priority >= signature.priority - 10]
    score -= 0.1 * len(close)
    if confirmed is False:
        score *= 0.8
    return round(max(0.2, min(score, 0.97)), 2)
