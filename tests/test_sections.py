"""One section model behind Markdown, JSON and the terminal view (issue 13). For every bundled
sample, 23 corpus logs with different sets of sections, and a job given every section (the
artifacts and input problems no sample has): the Markdown headings, the JSON "sections"
titles and the terminal view's titles (80 and 200 columns) are the same sequence; the
terminal view shows no Markdown syntax for the model's code and strong spans; at 80 columns
every `file:line` of the "first seen" column is there whole (wrapped, not cut); the rank
table holds the same ranks in both views. And the parts: `inline`, the column widths, the
line breaks inside a long path."""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import re
from collections.abc import Iterator

import pytest
from markdown_it import MarkdownIt
from rich.text import Text

from forensics import analyze
from forensics.model import (
    Analysis,
    CollectiveMismatch,
    FlightRecord,
    MemoryHolder,
    MemorySummary,
)
from forensics.report import render
from forensics.report.blocks import Bullets, Code, Line, Paragraph, Span, Table, inline
from forensics.report.sections import job_sections
from forensics.report.terminal import MARK, broken, column_widths

from .conftest import ROOT, SAMPLES

GFM = MarkdownIt("commonmark").enable("table")
SAMPLE_NAMES = sorted(p.name for p in SAMPLES.iterdir() if p.name not in ("golden", "fleet"))
# one log of each of the corpus' most common sets of sections (verdicts: failed, completed,
# interrupted, unknown; with and without Also found, Ranks, Timeline, Environment)
CORPUS_IDS = ("mc-035", "mf-048", "mj-029", "mu-012", "mj-007", "mr-009", "mu-007", "mg-026",
              "mg-034", "nb-007", "mu-010", "mp-015", "mj-037", "mz-020", "na-011", "mt-017",
              "ma-006", "mf-007", "mf-014", "mc-003", "mm-002", "mx-022", "nc-012")
CASES = [*SAMPLE_NAMES, *CORPUS_IDS, "every-section"]
WIDTHS = (80, 200)


@functools.cache
def analysis_of(case: str) -> Analysis:
    if case == "every-section":
        return _every_section()
    if case in CORPUS_IDS:
        return analyze(ROOT / "tests" / "corpus" / case / "log.txt")
    return analyze(SAMPLES / case)


def _every_section() -> Analysis:
    """The CUDA OOM sample with a Flight Recorder record, a memory snapshot and an input
    problem added."""
    base = analyze(SAMPLES / "cuda-oom-nccl-timeout.log")
    flight = FlightRecord((0, 1, 2), CollectiveMismatch("missing-ranks", "0", 4, "nccl:all_reduce",
                                                        (2,), (0, 1, 2), "rank 2 never ran it"))
    memory = MemorySummary(64 << 20, 40 << 20, 12 << 20, 20 << 20, 5 << 20,
                           (MemoryHolder("/work/train.py:88 (step)", 40 << 20, 1),), 1,
                           ("the trace was cut",), "memory_snapshot.pickle")
    source = dataclasses.replace(base.sources[0], problems=("a line longer than 1 MiB",))
    return dataclasses.replace(base, flight=flight, memory=(memory,), sources=(source,))


# -- reading each view back -------------------------------------------------------------------


def markdown_titles(markdown: str) -> list[str]:
    """The text of each heading and of each folded section's summary, in order."""
    titles = []
    tokens = GFM.parse(markdown)
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            children = tokens[index + 1].children or []
            titles.append("".join(c.content for c in children
                                  if c.type in ("text", "code_inline")))
        elif token.type == "html_block" and "<summary>" in token.content:
            summary = re.search(r"<summary>(.*?)</summary>", token.content).group(1)
            titles.append(html.unescape(re.sub(r"</?code>", "", summary)))
    return titles


def terminal_sections(text: str) -> list[tuple[str, list[str]]]:
    """Each section of the terminal view: its title (from the line starting with the mark to
    the blank line after it) and its lines."""
    sections: list[tuple[str, list[str]]] = []
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        if not lines[index].startswith(MARK):
            sections[-1][1].append(lines[index])
            index += 1
            continue
        title = [lines[index][len(MARK):]]
        index += 1
        while lines[index].strip():
            title.append(lines[index])
            index += 1
        sections.append((" ".join(part.strip() for part in title), []))
    return sections


def first_lower(title: str) -> str:
    """A title with its first letter in lower case (the terminal writes a first word such as
    `Root` or `What` in lower case, an acronym as it is)."""
    return title[:1].lower() + title[1:]


def table_column(lines: list[str], column: int) -> list[str]:
    """One column of the first rich table in `lines`, a row's wrapped pieces joined (a row
    starts where its first cell is not empty)."""
    cells: list[str] = []
    for line in lines:
        if "│" not in line:
            continue
        parts = line.split("│")
        if parts[0].strip():
            cells.append("")
        cells[-1] += parts[column].strip()
    return cells


def markdown_table_column(markdown: str, heading: str, column: int) -> list[str]:
    """One column of the table under the `### heading`."""
    body = markdown.split(f"### {heading}\n\n", 1)[1].split("\n\n", 1)[0]
    return [re.split(r"(?<!\\)\|", row)[column + 1].strip()
            for row in body.split("\n")[2:]]


def spans_of(analysis: Analysis, prose_only: bool = False) -> Iterator[Span]:
    """Every span of the model (only those of paragraphs and lists when `prose_only`)."""
    for section in job_sections(analysis):
        lines: list[Line] = [] if prose_only else [section.title]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines += block.lines
            elif isinstance(block, Bullets):
                lines += [block.lead, *block.items]
            elif isinstance(block, Table) and not prose_only:
                lines += [*block.header, *(cell for row in block.rows for cell in row)]
        for line in lines:
            yield from line


def quoted_lines(analysis: Analysis) -> str:
    """The log lines the model quotes as they are (they may hold backticks of their own)."""
    return "\n".join(line for section in job_sections(analysis) for block in section.blocks
                     if isinstance(block, Code) for line in block.lines)


# -- the three views agree ------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_markdown_json_and_terminal_show_the_same_sections(case):
    analysis = analysis_of(case)
    markdown = render(analysis, "md")
    assert "report cut" not in markdown
    titles = [s["title"] for s in json.loads(render(analysis, "json"))["sections"]]
    assert titles[0].startswith("forensics: ") and len(titles) >= 2
    assert markdown_titles(markdown) == titles
    for width in WIDTHS:
        shown = [title for title, _ in terminal_sections(render(analysis, "text", width))]
        assert [first_lower(t) for t in shown] == [first_lower(t) for t in titles], width


def test_every_section_is_in_every_view():
    analysis = analysis_of("every-section")
    names = [s["name"] for s in json.loads(render(analysis, "json"))["sections"]]
    assert names == ["Verdict", "Root cause", "Also found", "Ranks", "What to change",
                     "Timeline", "Environment", "Artifacts", "Artifacts", "Input problems",
                     "Last lines"]
    text = render(analysis, "text", 80)
    for shown in ("rank 2 never ran it", "Suspect rank(s): 2", "Fragmentation",
                  "/work/train.py:88 (step)", "the trace was cut", "a line longer than 1 MiB"):
        assert shown in text and shown in render(analysis, "md")


@pytest.mark.parametrize("case", CASES)
def test_the_terminal_shows_no_markdown_syntax(case):
    analysis = analysis_of(case)
    quoted = quoted_lines(analysis)
    spans = list(spans_of(analysis))
    assert any(s.kind == "code" for s in spans)
    for width in WIDTHS:
        text = render(analysis, "text", width)
        squeezed = re.sub(r"\s", "", text)
        for span in spans:
            if span.kind == "code" and f"`{span.text}`" not in quoted:
                assert f"`{span.text}`" not in text, (width, span)
            if span.kind == "strong" and f"**{span.text}**" not in quoted:
                assert f"**{span.text}**" not in text, (width, span)
        for span in spans_of(analysis, prose_only=True):  # shown, as text
            assert re.sub(r"\s", "", span.text) in squeezed, (width, span)
        assert not re.search(r"(?m)^#{2,3} |^\|---|^<details>", text)


@pytest.mark.parametrize("case", [c for c in CASES
                                  if any(f.role != "root" for f in analysis_of(c).findings)])
def test_first_seen_survives_whole_at_80_columns(case):
    analysis = analysis_of(case)
    expected = [f"{f.first.source}:{f.first.line}" for f in analysis.findings
                if f.role != "root"]
    sections = dict(terminal_sections(render(analysis, "text", 80)))
    assert table_column(sections["also found"], 5) == expected
    wide = render(analysis, "text", 200)
    assert all(location in wide for location in expected)


@pytest.mark.parametrize("case", CASES)
def test_the_rank_table_has_the_same_ranks_in_both_views(case):
    analysis = analysis_of(case)
    markdown = render(analysis, "md")
    sections = dict(terminal_sections(render(analysis, "text", 80)))
    assert ("### Ranks" in markdown) == ("ranks" in sections)
    if "ranks" not in sections:
        return
    ranks = [str(r.rank) for r in analysis.ranks]
    assert markdown_table_column(markdown, "Ranks", 0) == ranks
    assert table_column(sections["ranks"], 0) == ranks


# -- the parts ------------------------------------------------------------------------------


def test_inline_reads_code_and_emphasis_of_catalog_prose():
    assert inline("set `a_b=1` (*exit*, **not** `` x`y ``) * 2") == (
        Span("set "), Span("a_b=1", "code"), Span(" ("), Span("exit", "emphasis"),
        Span(", "), Span("not", "strong"), Span(" "), Span("x`y", "code"), Span(") * 2"))
    assert inline("no markup: a * b") == (Span("no markup: a * b"),)


def test_column_widths_wrap_prose_before_cutting_a_word():
    columns = [["role", "symptom"], ["what", "NCCL collective timed out (watchdog)"],
               ["first seen", "sample_logs/cuda-oom-nccl-timeout.log:14"]]
    assert column_widths(columns, 200) == [7, 36, 40]
    assert column_widths(columns, 60) == [7, 13, 40]  # the prose wraps, the path stays
    narrow = column_widths(columns, 40)
    assert sum(narrow) == 40 and narrow[1] == 10  # down to its longest word, then the path


def test_a_long_path_breaks_after_a_separator():
    cell = Text("sample_logs/cuda-oom-nccl-timeout.log:14", style="cyan")
    pieces = broken(cell, 20).plain.split("\n")
    assert pieces == ["sample_logs/cuda-", "oom-nccl-timeout.", "log:14"]
    assert broken(cell, 40) is cell and broken(Text("a b " * 20), 10).plain == "a b " * 20
