"""The versioned JSON report: `Analysis.to_dict()` as indented text, and after its keys
`"sections"`: the report's sections in order (`report.sections`), each its short `name` and
its `title` as the Markdown and terminal views show it, so a script sees the same sections.
Its strings are `scrub`bed like every report's: each cut to `LINE_CHARS`, and no terminal
control or bidi override left, even as a `\\u` escape, so `forensics analyze --format json |
jq -r` cannot drive the terminal either (json.dumps does the JSON escaping)."""

from __future__ import annotations

import json
from typing import Any

from forensics.model import Analysis
from forensics.report.blocks import text_of
from forensics.report.sections import job_sections
from forensics.text import scrub


def render_json(analysis: Analysis) -> str:
    """The report as indented JSON text."""
    data: dict[str, Any] = scrub(analysis.to_dict())
    data["sections"] = [{"name": s.name, "title": text_of(s.title)}
                        for s in job_sections(analysis)]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
