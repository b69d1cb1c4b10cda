"""The per-rank view of a job: for every rank the logs name, its host, the last thing it
reported, its exit code and its part in the failure (root, symptom, ...)."""

from __future__ import annotations

from forensics.model import Finding, RankRow, Role, Token, Traceback, WorkerFailure

MAX_ROWS = 64
_ROLE_ORDER = {role: i for i, role in enumerate(Role)}  # root first


def _roles(findings: tuple[Finding, ...] | list[Finding]) -> dict[int, Role]:
    """Each rank's most important part in the failure."""
    role: dict[int, Role] = {}
    for finding in findings:
        for rank in finding.ranks or ((finding.rank,) if finding.rank is not None else ()):
            if rank not in role or _ROLE_ORDER[finding.role] < _ROLE_ORDER[role[rank]]:
                role[rank] = finding.role
    return role


def rank_table(tokens: list[Token], findings: tuple[Finding, ...] | list[Finding],
               worker_failures: list[WorkerFailure], tracebacks: list[Traceback],
               source_order: dict[str, int]) -> tuple[RankRow, ...]:
    """One row per rank seen in the logs, by rank number."""
    role = _roles(findings)
    last: dict[int, tuple[tuple[int, int], str, str]] = {}
    hosts: dict[int, str] = {}

    def note(rank: int, source: str, line: int, event: str) -> None:
        key = (source_order.get(source, 0), line)
        if rank not in last or key >= last[rank][0]:
            last[rank] = (key, event, f"{source}:{line}")

    for token in tokens:
        rank = token.who.rank
        if rank is None:
            continue
        if token.who.host:
            hosts.setdefault(rank, token.who.host)
        if token.matches:
            note(rank, token.source, token.line,
                 ", ".join(sorted(m.signature for m in token.matches)))
    for tb in tracebacks:
        if tb.who.rank is not None and tb.final is not None and not tb.ignored:
            note(tb.who.rank, tb.source, tb.final.line, tb.final.exception_type)
    exits: dict[int, WorkerFailure] = {}
    for failure in worker_failures:
        if failure.rank is None:
            continue
        exits.setdefault(failure.rank, failure)
        if failure.host:
            hosts.setdefault(failure.rank, failure.host)
        if failure.rank not in last:
            note(failure.rank, failure.source, failure.line, f"exitcode {failure.exitcode}")
    ranks = sorted(set(last) | set(role))[:MAX_ROWS]
    return tuple(
        RankRow(
            rank=rank, host=hosts.get(rank),
            last_event=last[rank][1] if rank in last else "-",
            where=last[rank][2] if rank in last else "-",
            role=role.get(rank),
            exitcode=exits[rank].exitcode if rank in exits else None,
        )
        for rank in ranks
    )
