"""The rich terminal view. Log text is always printed as plain Text: rich would read
`[rank0]` or `[c10d]` as markup and drop them."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from forensics.model import Analysis, Evidence
from forensics.report.artifacts import artifact_sections

_STYLE = {"failed": "bold red", "completed": "bold green", "interrupted": "bold yellow",
          "unknown": "bold"}


def render_text(analysis: Analysis, width: int = 120, color: bool = False) -> str:
    """The terminal view as text (with colour codes when `color`)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color,
                      color_system="truecolor" if color else None)
    render_terminal(analysis, console)
    return buffer.getvalue()


def render_terminal(analysis: Analysis, console: Console) -> None:
    """Print the analysis to a terminal."""
    root = analysis.root_cause
    headline = Text(f"verdict: {analysis.verdict}", style=_STYLE[analysis.verdict])
    if root is not None:
        finding = root.finding
        headline.append(f"  {finding.title} ", style="bold")
        headline.append(f"({finding.signature}, confidence {root.confidence:.2f})")
    console.print(headline)
    if root is not None:
        finding = root.finding
        where = f"{finding.first.source}:{finding.first.line}"
        if finding.who.rank is not None:
            where += f"  rank {finding.who.rank}"
        if finding.who.host:
            where += f"  host {finding.who.host}"
        body = [Text(where, style="cyan")]
        if finding.exception_type:
            body.append(Text(f"exception: {finding.exception_type}"))
        if root.missing_evidence:
            body.append(Text(f"not confirmed: {root.missing_evidence}", style="yellow"))
        body.append(Text(" ".join(root.cause.split())))
        body += [Text(f"• {reason}") for reason in root.reasons]
        body.append(_evidence(finding.evidence[0]))
        console.print(Panel(Group(*body), title="root cause", title_align="left",
                            border_style="red"))
    others = [f for f in analysis.findings if f.role != "root"]
    if others:
        table = Table(title="also found", title_justify="left", show_edge=False)
        for column in ("role", "signature", "lines", "ranks", "first seen"):
            table.add_column(column)
        for f in others:
            table.add_row(str(f.role), f.signature, str(f.count),
                          ", ".join(str(r) for r in f.ranks[:8]) or "-",
                          Text(f"{f.first.source}:{f.first.line}"))
        console.print(table)
    if len(analysis.ranks) > 1:
        table = Table(title="ranks", title_justify="left", show_edge=False)
        for column in ("rank", "host", "exit", "role", "last event"):
            table.add_column(column)
        for r in analysis.ranks:
            table.add_row(str(r.rank), Text(r.host or "-"),
                          "-" if r.exitcode is None else str(r.exitcode), str(r.role or "-"),
                          Text(r.last_event))
        console.print(table)
    if analysis.fixes:
        console.print(Text("what to change", style="bold"))
        for fix in analysis.fixes:
            console.print(Text(f"  • {fix}"))
    timeline = analysis.timeline
    for metric, points in timeline.series:
        line = Text(f"{metric:>12} ", style="bold")
        line.append(sparkline([v for _, v in points]))
        line.append(f"  {points[0][1]:.4g} → {points[-1][1]:.4g} (steps {points[0][0]}-"
                    f"{points[-1][0]})", style="dim")
        console.print(line)
    for anomaly in analysis.anomalies:
        console.print(Text(f"⚠ {anomaly.kind} of {anomaly.metric} at step {anomaly.step}: "
                           f"{anomaly.value:.4g} (healthy {anomaly.healthy})", style="yellow"))
    if timeline.steps_logged or timeline.last_step is not None:
        progress = f"{timeline.steps_logged} metrics records"
        if timeline.last_step is not None:
            progress += f", last step {timeline.last_step}"
            if timeline.max_steps:
                progress += f" of {timeline.max_steps}"
        console.print(Text(f"timeline: {progress}", style="dim"))
    sections = artifact_sections(analysis)
    if sections:
        from rich.markdown import Markdown

        for section in sections:
            console.print(Markdown(section))
    for source in analysis.sources:
        for problem in (*source.problems, *source.notes):
            console.print(Text(f"note: {problem}", style="yellow"))


BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """A one-line chart of `values`."""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(BARS[min(len(BARS) - 1, int((v - low) / span * len(BARS)))] for v in values)


def _evidence(evidence: Evidence) -> Text:
    text = Text()
    first = evidence.line - len(evidence.before)
    for i, line in enumerate(evidence.before):
        text.append(f"{first + i:>7} | {line}\n", style="dim")
    text.append(f"{evidence.line:>7} > {evidence.text}\n", style="bold")
    for i, line in enumerate(evidence.after):
        text.append(f"{evidence.line + 1 + i:>7} | {line}\n", style="dim")
    text.rstrip()
    return text
