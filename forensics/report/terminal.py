"""The rich terminal view: the section model (`report.sections`) as plain rich text, the same
sections as the Markdown in the same order. Titles are in the terminal's lower-case heading
style after a `▌` bar; code spans are styled, never shown with backticks; tables are rich
Tables whose columns get widths that wrap prose first and never cut a cell (a path too long
for its column folds onto the next line). Everything is built as `Text` from a `scrub`bed
analysis (no terminal control or bidi override left): rich would read `[rank0]` or `[c10d]`
as markup and drop them."""

from __future__ import annotations

import io

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text

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
    Table,
    text_of,
)
from forensics.report.sections import job_sections
from forensics.text import one_line

MARK = "▌ "
_VERDICT_STYLE = {"failed": "bold red", "completed": "bold green", "interrupted": "bold yellow",
                  "unknown": "bold"}
_SPAN_STYLE = {"plain": "", "code": "cyan", "emphasis": "italic", "strong": "bold"}


def render_text(analysis: Analysis, width: int = 120, color: bool = False) -> str:
    """The terminal view as text (with colour codes when `color`)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color,
                      color_system="truecolor" if color else None)
    render_terminal(analysis, console)
    if color:
        return buffer.getvalue()
    return "\n".join(line.rstrip() for line in buffer.getvalue().split("\n"))


def render_terminal(analysis: Analysis, console: Console) -> None:
    """Print the analysis to a terminal, section by section."""
    style = _VERDICT_STYLE[analysis.verdict]
    for index, section in enumerate(job_sections(analysis)):
        if index:
            console.print()
        console.print(heading(section, style if section.headline else "bold"))
        for block in section.blocks:
            console.print()
            console.print(block_renderable(block, console.width))


def terminal_title(section: Section) -> str:
    """A section's title as the terminal shows it: a first word in capitals and lower case
    (`Root`, `What`) in lower case, an acronym (`NCCL`) as it is."""
    title = one_line(text_of(section.title))
    if title[:1].isupper() and title[1:2].islower():
        return title[0].lower() + title[1:]
    return title


def heading(section: Section, style: str) -> Text:
    """A section's title line(s)."""
    return Text(MARK + terminal_title(section), style=style)


def line_text(line: Line) -> Text:
    """Spans as one rich Text (line breaks and tabs as spaces)."""
    text = Text()
    for span in line:
        text.append(one_line(span.text), style=_SPAN_STYLE[span.kind])
    return text


def block_renderable(block: Block, width: int) -> RenderableType:
    """One block for the console."""
    if isinstance(block, Paragraph):
        return Text(" ").join(line_text(line) for line in block.lines)
    if isinstance(block, Bullets):
        return _bullets(block)
    if isinstance(block, Table):
        return table(block, width)
    if isinstance(block, Code):
        return _code(block)
    if isinstance(block, Chart):
        return Text("\n").join(_sparkline_row(metric, points) for metric, points in block.series)
    if isinstance(block, Note):
        return Text(one_line(block.text), style="italic")
    raise TypeError(f"not a block: {block!r}")


def _bullets(block: Bullets) -> RenderableType:
    grid = RichTable.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for item in block.items:
        grid.add_row("•", line_text(item))
    return Group(line_text(block.lead), grid) if block.lead else grid


def table(block: Table, width: int) -> RichTable:
    """A table whose columns fit `width`: prose columns wrap at spaces first; a cell is
    only folded (never cut) when a word is wider than any width left for its column."""
    header = [line_text(cell) for cell in block.header]
    rows = [[line_text(cell) for cell in row] for row in block.rows]
    columns = list(zip(header, *rows, strict=True))
    widths = column_widths([[cell.plain for cell in column] for column in columns],
                           width - 3 * len(columns) + 1)
    result = RichTable(show_edge=False, header_style="bold")
    for cell, column_width in zip(header, widths, strict=True):
        result.add_column(cell, width=column_width, overflow="fold")
    for row in rows:
        result.add_row(*(broken(cell, w) for cell, w in zip(row, widths, strict=True)))
    return result


def column_widths(columns: list[list[str]], room: int) -> list[int]:
    """Widths for columns of cell texts within `room` characters: each column's longest
    cell; when they do not fit, the widest column that can still wrap at a space gives way
    first (down to its longest word), then the widest of all (its cells fold)."""
    widths = [max((cell_len(cell) for cell in column), default=0) or 1 for column in columns]
    words = [max((cell_len(word) for cell in column for word in cell.split()), default=0) or 1
             for column in columns]
    for floors in (words, [1] * len(columns)):
        while sum(widths) > room:
            shrinkable = [i for i, w in enumerate(widths) if w > floors[i]]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            widths[widest] -= 1
    return widths


_BREAK_AFTER = "/:.-_"


def broken(cell: Text, width: int) -> Text:
    """A one-word cell wider than its column (a path, `file:line`) broken into lines after a
    `/`, `:`, `.`, `-` or `_` where it can be, rather than at the column's edge."""
    plain = cell.plain
    if cell_len(plain) <= width or any(c.isspace() for c in plain) or len(plain) != cell_len(
            plain):
        return cell
    offsets = []
    start = 0
    while len(plain) - start > width:
        window = plain[start:start + width]
        cut = max(window.rfind(c) for c in _BREAK_AFTER) + 1
        start += cut if cut > 0 else width
        offsets.append(start)
    return Text("\n").join(cell.divide(offsets))


def _code(block: Code) -> RenderableType:
    grid = RichTable.grid(padding=(0, 1))
    if not block.numbers:
        grid.add_column(overflow="fold")
        for text in block.lines:
            grid.add_row(Text(text, style="dim"))
        return grid
    grid.add_column(no_wrap=True, justify="right")
    grid.add_column(overflow="fold")
    width = len(str(max(block.numbers)))
    for number, text in zip(block.numbers, block.lines, strict=True):
        marked = number == block.mark
        gutter = f"{'>' if marked else ' '} {number:>{width}} |" if block.mark is not None \
            else f"{number:>{width}} |"
        grid.add_row(Text(gutter, style="dim"), Text(text, style="bold" if marked else ""))
    return grid


BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """A one-line chart of `values`."""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(BARS[min(len(BARS) - 1, int((v - low) / span * len(BARS)))] for v in values)


def _sparkline_row(metric: str, points: tuple[tuple[int, float], ...]) -> Text:
    line = Text(f"{one_line(metric):>12} ", style="bold")
    line.append(sparkline([v for _, v in points]))
    line.append(f"  {points[0][1]:.4g} → {points[-1][1]:.4g} (steps {points[0][0]}-"
                f"{points[-1][0]})", style="dim")
    return line
