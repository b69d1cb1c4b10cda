"""Report: an `Analysis` (or a fleet summary, the catalog, an artifact) in, text out. The
job report is one section model (`report.sections`: which sections, in which order, saying
what) rendered by one renderer per format behind `render()`: Markdown for GitHub issues, JSON
for tools (`Analysis.to_dict()` and the sections' names and titles), and the rich terminal
view. The model is built from `forensics.text.scrub`bed data (strings clipped, terminal
controls gone); Markdown writes every span through `forensics.text` (`md_text`, `md_code`,
`md_fence`), the terminal view as rich `Text`, never markup."""

from __future__ import annotations

from collections.abc import Callable

from forensics.model import Analysis

FORMATS = ("md", "json", "text")


def report_title(analysis: Analysis) -> str:
    """The report's headline as one plain line, an issue's title: `forensics: run failed:
    CUDA out of memory (cuda-oom)`."""
    from forensics.report.sections import verdict_section

    return "".join(span.text for span in verdict_section(analysis).title)


def _markdown(analysis: Analysis, width: int, color: bool) -> str:
    from forensics.report.markdown import render_markdown

    return render_markdown(analysis)


def _json(analysis: Analysis, width: int, color: bool) -> str:
    from forensics.report.json import render_json

    return render_json(analysis)


def _text(analysis: Analysis, width: int, color: bool) -> str:
    from forensics.report.terminal import render_text

    return render_text(analysis, width, color)


_RENDERERS: dict[str, Callable[[Analysis, int, bool], str]] = {
    "md": _markdown, "json": _json, "text": _text,
}


def render(analysis: Analysis, fmt: str, width: int = 120, color: bool = False) -> str:
    """The job report in `fmt` (one of FORMATS)."""
    return _RENDERERS[fmt](analysis, width, color)
