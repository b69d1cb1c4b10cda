"""The report's section model: a section is a title and typed blocks (paragraphs and list
items made of inline spans, tables of span cells, numbered code, charts, notes). Spans hold
plain text: escaping is each renderer's (`report.markdown`, `report.terminal`), so log text
is never markup in any format. Catalog and diagnosis prose (causes, fixes, reasons, advice) is
written with backtick code spans and `*emphasis*`; `inline()` reads those into spans."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SpanKind = Literal["plain", "code", "emphasis", "strong"]


@dataclass(frozen=True, slots=True)
class Span:
    """A run of inline text: plain, code (a name, a path, a value), emphasis (italic) or
    strong (bold)."""

    text: str
    kind: SpanKind = "plain"


Line = tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class Paragraph:
    """Lines of one paragraph: Markdown keeps the line breaks, the terminal reflows them."""

    lines: tuple[Line, ...]


@dataclass(frozen=True, slots=True)
class Bullets:
    """A bullet list, with an optional line right above its items."""

    items: tuple[Line, ...]
    lead: Line = ()


@dataclass(frozen=True, slots=True)
class Table:
    """A table: its header cells and its rows (a cell is a line of spans)."""

    header: tuple[Line, ...]
    rows: tuple[tuple[Line, ...], ...]


@dataclass(frozen=True, slots=True)
class Code:
    """Log lines quoted as they are, each with its line number when `numbers` are given;
    `mark` is the number of the line the block is about."""

    lines: tuple[str, ...]
    numbers: tuple[int, ...] = ()
    mark: int | None = None


@dataclass(frozen=True, slots=True)
class Chart:
    """Metric series by step: a Mermaid chart in Markdown, a sparkline in a terminal."""

    series: tuple[tuple[str, tuple[tuple[int, float], ...]], ...]


@dataclass(frozen=True, slots=True)
class Note:
    """An aside (a reader's caveat), shown in italics."""

    text: str


Block = Paragraph | Bullets | Table | Code | Chart | Note


@dataclass(frozen=True, slots=True)
class Section:
    """One section of the report. `name` is short and stable (the JSON "sections" entry and
    the Markdown cut note use it); `headline` is the report's first heading; `keep` sections
    get room first when the Markdown is cut; a `folded` one is collapsed in Markdown
    (`<details>`) and cut as a whole."""

    name: str
    title: Line
    blocks: tuple[Block, ...]
    headline: bool = False
    keep: bool = False
    folded: bool = False


def plain(text: object) -> Span:
    """A plain span."""
    return Span(str(text))


def code(text: object) -> Span:
    """A code span."""
    return Span(str(text), "code")


def strong(text: object) -> Span:
    """A strong (bold) span."""
    return Span(str(text), "strong")


def text_of(line: Line) -> str:
    """A line's text without any styling."""
    return "".join(span.text for span in line)


def para(*lines: Line) -> Paragraph:
    """A paragraph of these lines."""
    return Paragraph(tuple(lines))


def joined(parts: list[Line], separator: str = ", ") -> Line:
    """Lines run together into one, `separator` between them."""
    out: list[Span] = []
    for index, part in enumerate(parts):
        if index:
            out.append(plain(separator))
        out += part
    return tuple(out)


_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
_EMPHASIS = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*|\*(\S(?:.*?\S)?)\*")


def inline(prose: str) -> Line:
    """Catalog or diagnosis prose as spans: its backtick code spans as code, `*x*` as
    emphasis, `**x**` as strong, the rest plain (log text quoted inside stays text)."""
    spans: list[Span] = []
    position = 0
    for found in _CODE_SPAN.finditer(prose):
        spans += _emphasis(prose[position:found.start()])
        body = found.group(2)
        if body.startswith(" ") and body.endswith(" ") and body.strip():
            body = body[1:-1]  # CommonMark drops one space at each end
        spans.append(code(body))
        position = found.end()
    spans += _emphasis(prose[position:])
    return tuple(spans)


def _emphasis(text: str) -> list[Span]:
    spans: list[Span] = []
    position = 0
    for found in _EMPHASIS.finditer(text):
        if found.start() > position:
            spans.append(plain(text[position:found.start()]))
        spans.append(strong(found.group(1)) if found.group(1) is not None
                     else Span(found.group(2), "emphasis"))
        position = found.end()
    if position < len(text):
        spans.append(plain(text[position:]))
    return spans
