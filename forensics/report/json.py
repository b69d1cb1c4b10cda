"""The versioned JSON report: `Analysis.to_dict()` as indented text."""

from __future__ import annotations

import json

from forensics.model import Analysis


def render_json(analysis: Analysis) -> str:
    """The report as indented JSON text."""
    return json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n"
