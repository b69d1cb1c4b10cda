"""The rich terminal view. It renders a `scrub`bed analysis (every string clipped, no
terminal control or bidi override left), and log text is always printed as plain Text: rich
would read `[rank0]` or `[c10d]` as markup and drop them."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from forensics.model import Analysis, Evidence, Finding, Role, RootCause
from forensics.report.artifacts import artifact_sections
from forensics.text import rank_list, scrub

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
    analysis = scrub(analysis)
    console.print(_headline(analysis))
    if analysis.root_cause is not None:
        console.print(_root_panel(analysis.root_cause))
    others = [f for f in analysis.findings if f.role != Role.ROOT]
    if others:
        console.print(_findings_table(others))
    if len(analysis.ranks) > 1:
        console.print(_rank_table(analysis))
    if analysis.fixes:
        console.print(Text("what to change", style="bold"))
        for fix in analysis.fixes:
            console.print(Text(f"  • {fix}"))
    for line in _timeline_lines(analysis):
        console.print(line)
    sections = artifact_sections(analysis)
    if sections:
        from rich.markdown import Markdown

        for section in sections:
            console.print(Markdown(section))
    for source in analysis.sources:
        for problem in (*source.problems, *source.notes):
            console.print(Text(f"note: {problem}", style="yellow"))


def _headline(analysis: Analysis) -> Text:
    headline = Text(f"verdict: {analysis.verdict}", style=_STYLE[analysis.verdict])
    root = analysis.root_cause
    if root is not None:
        headline.append(f"  {root.finding.title} ", style="bold")
        headline.append(f"({root.finding.signature}, confidence {root.confidence:.2f})")
    return headline


def _root_panel(root: RootCause) -> Panel:
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
    return Panel(Group(*body), title="root cause", title_align="left", border_style="red")


def _findings_table(others: list[Finding]) -> Table:
    table = Table(title="also found", title_justify="left", show_edge=False)
    for column in ("role", "signature", "lines", "ranks", "first seen"):
        table.add_column(column)
    for f in others:
        table.add_row(str(f.role), Text(f.signature), str(f.count), rank_list(f.ranks) or "-",
                      Text(f"{f.first.source}:{f.first.line}"))
    return table


def _rank_table(analysis: Analysis) -> Table:
    table = Table(title="ranks", title_justify="left", show_edge=False)
    for column in ("rank", "host", "exit", "role", "last event"):
        table.add_column(column)
    for r in analysis.ranks:
        table.add_row(str(r.rank), Text(r.host or "-"),
                      "-" if r.exitcode is None else str(r.exitcode), str(r.role or "-"),
                      Text(r.last_event))
    return table


def _timeline_lines(analysis: Analysis) -> list[Text]:
    timeline = analysis.timeline
    lines = []
    for metric, points in timeline.series:
        line = Text(f"{metric:>12} ", style="bold")
        line.append(sparkline([v for _, v in points]))
        line.append(f"  {points[0][1]:.4g} → {points[-1][1]:.4g} (steps {points[0][0]}-"
                    f"{points[-1][0]})", style="dim")
        lines.append(line)
    lines += [Text(f"⚠ {a.kind} of {a.metric} at step {a.step}: {a.value:.4g} "
                   f"(healthy {a.healthy})", style="yellow") for a in analysis.anomalies]
    if timeline.steps_logged or timeline.last_step is not None:
        progress = f"{timeline.steps_logged} metrics records"
        if timeline.last_step is not None:
            progress += f", last step {timeline.last_step}"
            if timeline.max_steps:
                progress += f" of {timeline.max_steps}"
        lines.append(Text(f"timeline: {progress}", style="dim"))
    return lines


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
