"""The job report as data: `job_sections(analysis)` decides once which sections exist, in
which order, what each says, which rows its tables keep and which evidence it quotes;
Markdown, the terminal view and JSON only render it (`report.blocks` holds the types). The
sections about the failure are here; those about its context (timeline, environment,
artifacts, input problems, last lines) in `report.sections_context`."""

from __future__ import annotations

from forensics.model import Analysis, Evidence, Finding, RootCause
from forensics.report.blocks import (
    Block,
    Bullets,
    Code,
    Line,
    Paragraph,
    Section,
    Table,
    code,
    inline,
    joined,
    para,
    plain,
    strong,
)
from forensics.report.sections_context import (
    artifact_sections,
    environment_section,
    problems_section,
    tail_section,
    timeline_section,
)
from forensics.text import rank_list, scrub

HEADLINES = {
    "failed": "run failed",
    "completed": "run completed, no failure found",
    "interrupted": "run stopped early without an error",
    "unknown": "no failure found",
}


def job_sections(analysis: Analysis) -> tuple[Section, ...]:
    """The report of one job, in order (from a `scrub`bed copy of `analysis`)."""
    analysis = scrub(analysis)
    others = [f for f in analysis.findings if f.role != "root"]
    candidates = [
        verdict_section(analysis),
        root_section(analysis.root_cause) if analysis.root_cause is not None else None,
        also_found_section(others) if others else None,
        ranks_section(analysis) if len(analysis.ranks) > 1 or (analysis.ranks and others)
        else None,
        fixes_section(analysis.fixes) if analysis.fixes else None,
        timeline_section(analysis),
        environment_section(analysis),
        *artifact_sections(analysis),
        problems_section(analysis),
        tail_section(analysis.tail),
    ]
    return tuple(section for section in candidates if section is not None)


def verdict_section(analysis: Analysis) -> Section:
    """The headline: how the run ended and, when it failed, its root cause."""
    root = analysis.root_cause
    if root is None:
        title: Line = (plain(f"forensics: {HEADLINES[analysis.verdict]}"),)
        body = (strong(f"Verdict: {analysis.verdict}."), plain(" "), *_no_root(analysis))
    else:
        finding = root.finding
        title = (plain(f"forensics: {HEADLINES['failed']}: "), plain(finding.title),
                 plain(" ("), code(finding.signature), plain(")"))
        body = (strong("Verdict: failed."), plain(" Root cause "), code(finding.signature),
                plain(" ("), plain(finding.category),
                plain(f"), confidence {root.confidence:.2f}."))
    return Section("Verdict", title, (para(body),), headline=True, keep=True)


def _no_root(analysis: Analysis) -> Line:
    if analysis.verdict == "completed":
        text = "The trainer printed its completion summary; no failure was found."
        if analysis.anomalies:
            text += (f" But {len(analysis.anomalies)} metric(s) were unhealthy: see the "
                     "Timeline.")
        return (plain(text),)
    if analysis.verdict == "interrupted":
        return _interrupted(analysis)
    return (plain("No known failure signature and no uncaught exception were found."),)


def _interrupted(analysis: Analysis) -> Line:
    timeline = analysis.timeline
    text = "The run was training, then the log stops with no error and no completion summary"
    if timeline.last_step is not None:
        text += f": last progress step {timeline.last_step}"
        if timeline.max_steps:
            percent = 100 * timeline.last_step / timeline.max_steps
            text += f" of {timeline.max_steps} ({percent:.0f}%)"
    spans = [plain(text)]
    if timeline.last_time:
        spans += [plain("; last timestamp "), plain(timeline.last_time)]
    if timeline.lines_after_last_step is not None:
        spans.append(plain(f"; {timeline.lines_after_last_step} line(s) after the last step"))
    return (*spans, plain(". It was probably killed from outside (scheduler, OOM killer, node "
                          "loss): check the scheduler's accounting and "), code("dmesg"),
            plain(" on the node."))


def root_section(root: RootCause) -> Section:
    """Where the root cause was seen, what its line captured, the catalog's cause, why it is
    the root, and its evidence: the first quote with its context, the others below."""
    finding = root.finding
    blocks: list[Block] = [Paragraph(_root_facts(root)),
                           Paragraph(tuple(inline(line) for line in root.cause.split("\n"))),
                           Bullets(tuple(inline(reason) for reason in root.reasons),
                                   lead=(plain("Why this is the root cause:"),))]
    blocks += evidence_blocks(finding.evidence[0])
    if len(finding.evidence) > 1:
        blocks += [para((plain("Also seen:"),)),
                   Code(tuple(f"{e.source}:{e.line}: {e.text}" for e in finding.evidence[1:]))]
    return Section("Root cause", (plain("Root cause: "), plain(finding.title)), tuple(blocks))


def _root_facts(root: RootCause) -> tuple[Line, ...]:
    finding = root.finding
    seen = [plain("Seen at "), *_where(finding)]
    if finding.count > 1:
        seen.append(plain(f"; {finding.count} matching lines"))
    lines: list[Line] = [(*seen, plain("."))]
    if finding.exception_type:
        lines.append((plain("Exception: "), code(finding.exception_type), plain(".")))
    if finding.captures:
        details = joined([(plain(k), plain(" = "), code(v)) for k, v in finding.captures])
        lines.append((plain("Details: "), *details, plain(".")))
    if root.missing_evidence:
        lines.append((strong("Not confirmed:"), plain(" "), *inline(root.missing_evidence)))
    return tuple(lines)


def _where(finding: Finding) -> Line:
    first = finding.first
    parts: list[Line] = [(code(f"{first.source}:{first.line}"),)]
    who = finding.who
    if finding.rank is not None:
        parts.append((plain(f"rank {finding.rank}"),))
    elif who.local_rank is not None:
        parts.append((plain(f"local rank {who.local_rank}"),))
    if who.host:
        parts.append((plain("host "), plain(who.host)))
    if who.pid is not None:
        parts.append((plain(f"pid {who.pid}"),))
    if who.time:
        parts.append((plain(who.time),))
    return joined(parts)


def evidence_blocks(evidence: Evidence) -> list[Block]:
    """A quoted line with the lines around it, numbered, the line itself marked."""
    first = evidence.line - len(evidence.before)
    lines = (*evidence.before, evidence.text, *evidence.after)
    return [para((code(evidence.source), plain(":"))),
            Code(lines, tuple(range(first, first + len(lines))), mark=evidence.line)]


def also_found_section(others: list[Finding]) -> Section:
    """Every finding but the root, one row each."""
    header = tuple((plain(h),) for h in ("role", "signature", "what", "lines", "ranks",
                                          "first seen"))
    rows = tuple(((plain(f.role),), (code(f.signature),), (plain(f.title),),
                  (plain(f.count),), (plain(rank_list(f.ranks) or "-"),),
                  (code(f"{f.first.source}:{f.first.line}"),)) for f in others)
    return Section("Also found", (plain("Also found"),), (Table(header, rows),))


def ranks_section(analysis: Analysis) -> Section:
    """One row per rank: where it ran, how it ended, what it last said."""
    header = tuple((plain(h),) for h in ("rank", "host", "exit code", "role", "last event",
                                          "where"))
    rows = tuple(((plain(r.rank),), (plain(r.host or "-"),),
                  (plain("-" if r.exitcode is None else r.exitcode),), (plain(r.role or "-"),),
                  (plain(r.last_event),), (code(r.where),)) for r in analysis.ranks)
    return Section("Ranks", (plain("Ranks"),), (Table(header, rows),))


def fixes_section(fixes: tuple[str, ...]) -> Section:
    """The catalog's fixes for the root cause."""
    return Section("What to change", (plain("What to change"),),
                   (Bullets(tuple(inline(fix) for fix in fixes)),), keep=True)
