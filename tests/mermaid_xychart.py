"""The statements of Mermaid's `xychart-beta` grammar that a report's charts use, checked
the way Mermaid's own lexer reads them (mermaid-js/mermaid, diagrams/xychart/parser/
xychart.jison): inside a `line [...]`/`bar [...]` and after `y-axis`, only
NUMBER_WITH_DECIMAL (`[+-]?(\\d+(\\.\\d+)?|\\.\\d+)`) is a number, so `2.5e-05`, `nan` or
`inf` there is the syntax-error box GitHub shows instead of the chart."""

from __future__ import annotations

import re

NUMBER = r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)"
TEXT = r'(?:"[^"\n]*"|[A-Za-z0-9&+=*.#_-]+)'  # STR, or alphaNum tokens
_NUMBERS = rf"\[\s*{NUMBER}(?:\s*,\s*{NUMBER})*\s*\]"
_BAND = rf"\[\s*{TEXT}(?:\s*,\s*{TEXT})*\s*\]"
STATEMENTS = (
    re.compile(rf"title\s+{TEXT}(?:\s+{TEXT})*"),
    re.compile(rf"x-axis(?:\s+{TEXT})?\s*(?:{_BAND}|{NUMBER}\s*-->\s*{NUMBER})?"),
    re.compile(rf"y-axis(?:\s+{TEXT})?\s*(?:{NUMBER}\s*-->\s*{NUMBER})?"),
    re.compile(rf"(?:line|bar)(?:\s+{TEXT})?\s*{_NUMBERS}"),
)


def problems(chart: str) -> list[str]:
    """What in one chart's source Mermaid would not parse (empty if it all does)."""
    lines = [line.strip() for line in chart.strip().splitlines() if line.strip()]
    if not lines or lines[0] not in ("xychart-beta", "xychart"):
        return [f"not an xychart: {lines[:1]}"]
    return [line for line in lines[1:]
            if not any(statement.fullmatch(line) for statement in STATEMENTS)]
