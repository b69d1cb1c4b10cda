"""The Markdown report, made to be pasted into a GitHub issue: the section model
(`report.sections`) written as Markdown. Every span goes in through `forensics.text`
(`md_text`, `md_code`, `md_fence`, `html_text`); only the templates' own markup (headings,
`**`, list and table syntax, fences, the `<details>` of a folded section) is written
literally."""

from __future__ import annotations

import math

from forensics.model import Analysis
from forensics.report.blocks import (
    Block,
    Bullets,
    Chart,
    Code,
    Line,
    Note,
    Paragraph,
    Section,
    Span,
    Table,
)
from forensics.report.fit import Part, fit
from forensics.report.sections import job_sections
from forensics.text import html_text, md_code, md_fence, md_text, one_line
from forensics.version import __version__

MAX_CHARS = 60_000  # below GitHub's 65,536-character limit on an issue body


def render_markdown(analysis: Analysis, max_chars: int = MAX_CHARS) -> str:
    """The whole report; never longer than `max_chars`: cut between blocks, the verdict and
    "What to change" kept, with a note saying what was cut."""
    footer = (f"<sub>forensics {__version__} · "
              f"{sum(s.lines for s in analysis.sources):,} lines read from "
              f"{sum(1 for s in analysis.sources if s.name != '<inputs>')} file(s)</sub>")
    parts = [Part(s.name, section_markdown(s), keep=s.keep, whole=s.folded)
             for s in job_sections(analysis)]
    return fit(parts, footer, max_chars)


def section_markdown(section: Section) -> str:
    """One section: its heading (or, folded, a `<details>` summary) and its blocks."""
    body = "\n\n".join(block_markdown(block) for block in section.blocks)
    if section.folded:
        summary = "".join(f"<code>{html_text(s.text)}</code>" if s.kind == "code"
                          else html_text(s.text) for s in section.title)
        return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"
    heading = "##" if section.headline else "###"
    return f"{heading} {line_markdown(section.title, start=False)}\n\n{body}"


def block_markdown(block: Block) -> str:
    """One block as Markdown."""
    if isinstance(block, Paragraph):
        return "\n".join(line_markdown(line) for line in block.lines)
    if isinstance(block, Bullets):
        lead = [line_markdown(block.lead)] if block.lead else []
        return "\n".join([*lead, *(f"- {line_markdown(item)}" for item in block.items)])
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Code):
        return md_fence(code_lines(block))
    if isinstance(block, Chart):
        return "\n\n".join(chart for metric, points in block.series
                           if (chart := _mermaid(metric, points)))
    if isinstance(block, Note):
        return f"_{md_text(block.text)}_"
    raise TypeError(f"not a block: {block!r}")


def line_markdown(line: Line, start: bool = True, in_table: bool = False) -> str:
    """Spans as Markdown inline text; `start`: the line begins a Markdown line (a paragraph's
    line, a list item), where its first words must not start a heading, list or quote."""
    return "".join(_span(span, start and index == 0, in_table)
                   for index, span in enumerate(line))


def _span(span: Span, start: bool, in_table: bool) -> str:
    if span.kind == "code":
        return md_code(span.text, in_table=in_table)
    if span.kind in ("emphasis", "strong"):
        mark = "*" if span.kind == "emphasis" else "**"
        return f"{mark}{_text(span.text, start=False)}{mark}"
    return _text(span.text, start)


def _text(text: str, start: bool) -> str:
    """`md_text` of a span, the whitespace at its ends kept (it joins other spans); in the
    middle of a line a span cannot start a block, so none of `md_text`'s block-start escapes
    is added (it is given a leading word and the word taken off again)."""
    text = one_line(text)
    core = text.strip()
    if not core:
        return text
    lead, trail = text[:len(text) - len(text.lstrip())], text[len(text.rstrip()):]
    escaped = md_text(core) if start else md_text("a " + core)[2:]
    return lead + escaped + trail


def _table(table: Table) -> str:
    # an empty header cell is written `| |`, an empty body cell `|  |`
    head = "|" + "".join(f" {line_markdown(cell, start=False, in_table=True)} |" if cell
                         else " |" for cell in table.header)
    rule = "|---" * len(table.header) + "|"
    rows = ["| " + " | ".join(line_markdown(cell, start=False, in_table=True) for cell in row)
            + " |" for row in table.rows]
    return "\n".join([head, rule, *rows])


def code_lines(block: Code) -> str:
    """A code block's lines, each after its number (`> ` before the marked one)."""
    if not block.numbers:
        return "\n".join(block.lines)
    width = len(str(max(block.numbers)))
    marked = block.mark is not None
    return "\n".join(
        f"{('> ' if n == block.mark else '  ') if marked else ''}{n:>{width}} | {text}"
        for n, text in zip(block.numbers, block.lines, strict=True))


def _mermaid(metric: str, points: tuple[tuple[int, float], ...]) -> str:
    """One metric's values by step as a Mermaid chart GitHub draws: one point per step
    (the last value logged for it), finite values only, and plain decimals (Mermaid reads no
    `2.5e-05`): a metric far from 1 is drawn scaled, and the title says by what."""
    by_step = {step: value for step, value in points if math.isfinite(value)}
    if not by_step:
        return ""
    exponent = _exponent(list(by_step.values()))
    values = [v / 10.0 ** exponent for v in by_step.values()]
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    bottom = max(0.0, low - pad) if low >= 0 else low - pad
    xs = ", ".join(str(step) for step in by_step)
    ys = ", ".join(_decimal(v) for v in values)
    label = one_line(metric).replace('"', "'")[:80]  # one line, no quote to end it early
    scale = f" (x 10^{exponent})" if exponent else ""
    return md_fence("xychart-beta\n"
                    f'    title "{label} by step{scale}"\n'
                    f"    x-axis [{xs}]\n"
                    f'    y-axis "{label}" {_decimal(bottom)} --> {_decimal(high + pad)}\n'
                    f"    line [{ys}]", "mermaid")


def _exponent(values: list[float]) -> int:
    """The power of ten to draw a metric in: 0 unless its largest magnitude is below 0.01 or
    above a million."""
    peak = max(abs(v) for v in values)
    if peak == 0 or 0.01 <= peak < 1e6:
        return 0
    return math.floor(math.log10(peak))


def _decimal(value: float) -> str:
    """A number in plain decimals, six significant digits at most."""
    text = f"{value:.{max(0, 5 - math.floor(math.log10(abs(value))))}f}" if value else "0"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text
