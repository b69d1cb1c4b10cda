"""The versioned JSON report: `Analysis.to_dict()` as indented text. Its strings are
`scrub`bed like every report's: each cut to `LINE_CHARS`, and no terminal control or bidi
override left, even as a `\\u` escape, so `forensics analyze --format json | jq -r` cannot
drive the terminal either (json.dumps does the JSON escaping)."""

from __future__ import annotations

import json

from forensics.model import Analysis
from forensics.text import scrub


def render_json(analysis: Analysis) -> str:
    """The report as indented JSON text."""
    return json.dumps(scrub(analysis.to_dict()), indent=2, ensure_ascii=False) + "\n"
