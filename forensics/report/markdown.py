"""The Markdown report, made to be pasted into a GitHub issue. Every value from the
`Analysis` goes in through `forensics.text` (`md_text`, `md_code`, `md_fence`, `html_text`),
after `scrub`; only the templates' own text is written literally."""

from __future__ import annotations

from forensics.model import Analysis, Evidence, Finding, RootCause
from forensics.report.artifacts import artifact_sections
from forensics.report.fit import Section, fit
from forensics.report.timeline_md import render_timeline
from forensics.text import html_text, md_code, md_fence, md_text, rank_list, scrub
from forensics.version import __version__

MAX_CHARS = 60_000  # below GitHub's 65,536-character limit on an issue body
TAIL_IN_REPORT = 30
_HEADLINES = {
    "failed": "run failed",
    "completed": "run completed, no failure found",
    "interrupted": "run stopped early without an error",
    "unknown": "no failure found",
}


def render_markdown(analysis: Analysis, max_chars: int = MAX_CHARS) -> str:
    """The whole report; never longer than `max_chars`: cut between blocks, the verdict and
    "What to change" kept, with a note saying what was cut."""
    analysis = scrub(analysis)
    footer = (f"<sub>forensics {__version__} · "
              f"{sum(s.lines for s in analysis.sources):,} lines read from "
              f"{sum(1 for s in analysis.sources if s.name != '<inputs>')} file(s)</sub>")
    return fit(_sections(analysis), footer, max_chars)


def _sections(analysis: Analysis) -> list[Section]:
    sections = [Section("Verdict", _verdict(analysis), keep=True)]
    if analysis.root_cause is not None:
        sections.append(Section("Root cause", _root_cause(analysis.root_cause)))
    others = [f for f in analysis.findings if f.role != "root"]
    if others:
        sections.append(Section("Also found", _other_findings(others)))
    if len(analysis.ranks) > 1 or (analysis.ranks and others):
        sections.append(Section("Ranks", _rank_table(analysis)))
    if analysis.fixes:
        sections.append(Section("What to change", "### What to change\n\n"
                                + "\n".join(f"- {fix}" for fix in analysis.fixes), keep=True))
    sections.append(Section("Timeline", render_timeline(analysis)))
    if analysis.environment:
        rows = "\n".join(f"| {md_text(k)} | {md_text(v)} |" for k, v in analysis.environment)
        sections.append(Section("Environment",
                                "### Environment (from the log)\n\n| | |\n|---|---|\n" + rows))
    sections += [Section("Artifacts", section.replace("## ", "### ", 1).rstrip())
                 for section in artifact_sections(analysis)]
    problems = [p for s in analysis.sources for p in (*s.problems, *s.notes)]
    if problems:
        sections.append(Section("Input problems", "### Input problems\n\n"
                                + "\n".join(f"- {md_text(p)}" for p in problems)))
    sections.append(Section("Last lines", _tail(analysis.tail), whole=True))
    return sections


def _verdict(analysis: Analysis) -> str:
    root = analysis.root_cause
    if root is None:
        line = f"## forensics: {_HEADLINES[analysis.verdict]}"
        detail = "No known failure signature and no uncaught exception were found."
        if analysis.verdict == "completed":
            detail = "The trainer printed its completion summary; no failure was found."
            if analysis.anomalies:
                detail += (f" But {len(analysis.anomalies)} metric(s) were unhealthy: see the "
                           "Timeline.")
        elif analysis.verdict == "interrupted":
            detail = _interrupted(analysis)
        return f"{line}\n\n**Verdict: {analysis.verdict}.** {detail}"
    finding = root.finding
    signature = md_code(finding.signature)
    return (f"## forensics: {_HEADLINES['failed']}: {md_text(finding.title)} ({signature})\n\n"
            f"**Verdict: failed.** Root cause {signature} ({md_text(finding.category)}), "
            f"confidence {root.confidence:.2f}.")


def _interrupted(analysis: Analysis) -> str:
    timeline = analysis.timeline
    text = "The run was training, then the log stops with no error and no completion summary"
    if timeline.last_step is not None:
        text += f": last progress step {timeline.last_step}"
        if timeline.max_steps:
            percent = 100 * timeline.last_step / timeline.max_steps
            text += f" of {timeline.max_steps} ({percent:.0f}%)"
    if timeline.last_time:
        text += f"; last timestamp {md_text(timeline.last_time)}"
    if timeline.lines_after_last_step is not None:
        text += f"; {timeline.lines_after_last_step} line(s) after the last step"
    return text + (". It was probably killed from outside (scheduler, OOM killer, node loss): "
                   "check the scheduler's accounting and `dmesg` on the node.")


def _rank_table(analysis: Analysis) -> str:
    rows = ["| rank | host | exit code | role | last event | where |", "|---|---|---|---|---|---|"]
    for r in analysis.ranks:
        code = "-" if r.exitcode is None else str(r.exitcode)
        host = md_text(r.host) if r.host else "-"
        rows.append(f"| {r.rank} | {host} | {code} | {r.role or '-'} | "
                    f"{md_text(r.last_event)} | {md_code(r.where, in_table=True)} |")
    return "### Ranks\n\n" + "\n".join(rows)


def _where(finding: Finding) -> str:
    first = finding.first
    parts = [md_code(f"{first.source}:{first.line}")]
    who = finding.who
    rank = finding.rank
    if rank is not None:
        parts.append(f"rank {rank}")
    elif who.local_rank is not None:
        parts.append(f"local rank {who.local_rank}")
    if who.host:
        parts.append(f"host {md_text(who.host)}")
    if who.pid is not None:
        parts.append(f"pid {who.pid}")
    if who.time:
        parts.append(md_text(who.time))
    return ", ".join(parts)


def _root_cause(root: RootCause) -> str:
    """The root cause: where, what the line captured, the catalog's cause, why it is the
    root (diagnosis text), the evidence."""
    finding = root.finding
    seen = f"Seen at {_where(finding)}"
    if finding.count > 1:
        seen += f"; {finding.count} matching lines"
    lines = [f"### Root cause: {md_text(finding.title)}", "", seen + "."]
    if finding.exception_type:
        lines.append(f"Exception: {md_code(finding.exception_type)}.")
    if finding.captures:
        lines.append("Details: " + ", ".join(f"{md_text(k)} = {md_code(v)}"
                                             for k, v in finding.captures) + ".")
    if root.missing_evidence:
        lines.append(f"**Not confirmed:** {root.missing_evidence}")
    lines += ["", root.cause, "", "Why this is the root cause:"]
    lines += [f"- {reason}" for reason in root.reasons]
    lines += ["", _evidence_block(finding.evidence[0])]
    if len(finding.evidence) > 1:
        more = "\n".join(f"{e.source}:{e.line}: {e.text}" for e in finding.evidence[1:])
        lines += ["", "Also seen:", "", md_fence(more)]
    return "\n".join(lines)


def _evidence_block(evidence: Evidence) -> str:
    width = len(str(evidence.line + len(evidence.after)))
    first = evidence.line - len(evidence.before)
    rows = [f"  {first + i:>{width}} | {text}" for i, text in enumerate(evidence.before)]
    rows.append(f"> {evidence.line:>{width}} | {evidence.text}")
    rows += [f"  {evidence.line + 1 + i:>{width}} | {text}"
             for i, text in enumerate(evidence.after)]
    return f"{md_code(evidence.source)}:\n\n" + md_fence("\n".join(rows))


def _other_findings(findings: list[Finding]) -> str:
    rows = ["| role | signature | what | lines | ranks | first seen |", "|---|---|---|---|---|---|"]
    for f in findings:
        ranks = rank_list(f.ranks)
        rows.append(f"| {f.role} | {md_code(f.signature, in_table=True)} | {md_text(f.title)} "
                    f"| {f.count} | {ranks or '-'} "
                    f"| {md_code(f'{f.first.source}:{f.first.line}', in_table=True)} |")
    return "### Also found\n\n" + "\n".join(rows)


def _tail(tail: tuple[Evidence, ...]) -> str:
    if not tail:
        return ""
    shown = tail[-TAIL_IN_REPORT:]
    width = len(str(shown[-1].line))
    body = "\n".join(f"{e.line:>{width}} | {e.text}" for e in shown)
    return (f"<details><summary>Last {len(shown)} lines of "
            f"<code>{html_text(shown[-1].source)}</code>"
            f"</summary>\n\n{md_fence(body)}\n\n</details>")
