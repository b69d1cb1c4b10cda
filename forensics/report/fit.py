"""Fitting a Markdown report into a size limit (GitHub refuses an issue body over 65,536
characters): whole sections where they fit, the rest cut between lines and never inside a
code fence left open, the sections that must stay (the verdict, what to change) given room
first, and a note that says what was cut, last and outside any code."""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^(`{3,}|~{3,})(\S*)")


@dataclass(frozen=True)
class Part:
    """One section of a report as Markdown text: `keep` ones get room first, a `whole` one
    is cut as a whole (an HTML `<details>` block must be closed)."""

    name: str
    text: str
    keep: bool = False
    whole: bool = False


def fit(sections: list[Part], footer: str, limit: int) -> str:
    """The sections and the footer, one blank line apart; within `limit` characters, with a
    cut note at the end when some had to be shortened or left out."""
    sections = [s for s in sections if s.text]
    full = "\n\n".join([*(s.text for s in sections), footer]) + "\n"
    if len(full) <= limit:
        return full
    names = [s.name for s in sections]
    budget = limit - len(footer) - len(cut_note(limit, names, names)) - 5
    kept: dict[int, str] = {}
    for index in sorted(range(len(sections)), key=lambda i: not sections[i].keep):
        section = sections[index]
        text = section.text
        if len(text) + 2 > budget:
            text = "" if section.whole else cut_blocks(text, budget - 2)
        if any(line.strip() for line in text.split("\n")[1:]):  # more than its heading
            kept[index] = text
            budget -= len(text) + 2
    shortened = [s.name for i, s in enumerate(sections) if i in kept and kept[i] != s.text]
    left_out = [s.name for i, s in enumerate(sections) if i not in kept]
    body = [kept[i] for i in sorted(kept)]
    return "\n\n".join([*body, footer, cut_note(limit, shortened, left_out)]) + "\n"


def cut_note(limit: int, shortened: list[str], left_out: list[str]) -> str:
    """What the cut took out of a report, and where to find everything."""
    parts = []
    if shortened:
        parts.append(", ".join(shortened) + " shortened")
    if left_out:
        parts.append(", ".join(left_out) + " left out")
    return (f"*(report cut at {limit:,} characters: {'; '.join(parts)}. Run "
            "`forensics analyze --format json` for everything.)*")


def cut_blocks(text: str, limit: int) -> str:
    """The longest head of `text` within `limit` characters that ends at a line break and
    outside any code fence: a `text` block cut inside is closed after its last whole line;
    any other fenced block (a chart) is left out whole; a table's head without a row and a
    label whose block was cut (a line ending in `:`) are left out too."""
    kept: list[str] = []
    size = -1
    opened: tuple[str, int, str] | None = None  # fence, its line in `kept`, info string
    for line in text.split("\n"):
        after = _fence_after(opened, line, len(kept))
        closing = 0 if after is None else len(after[0]) + 1  # room to close it there
        if size + 1 + len(line) + closing > limit:
            break
        kept.append(line)
        size += 1 + len(line)
        opened = after
    else:
        return text
    if opened is not None:
        fence, start, info = opened
        if info == "text" and len(kept) > start + 1:
            kept.append(fence)
        else:
            del kept[start:]
    return _trim("\n".join(kept))


_DANGLING = re.compile(r"(?:\n\|[^\n]*\|\n\|(?:-+\|)+|\n[^\n]*:)\s*$")


def _trim(text: str) -> str:
    """`text` without what a cut left with nothing under it."""
    text = text.rstrip()
    while (found := _DANGLING.search(text)) is not None:
        text = text[:found.start()].rstrip()
    return text


def _fence_after(opened: tuple[str, int, str] | None, line: str,
                 index: int) -> tuple[str, int, str] | None:
    """The fence open after `line` (CommonMark: a closing fence is a run of the opening
    character at least as long, alone on its line)."""
    found = _FENCE.match(line)
    if opened is None:
        return None if found is None else (found.group(1), index, found.group(2))
    fence = opened[0]
    stripped = line.strip()
    closes = (stripped[:1] == fence[0] and len(stripped) >= len(fence)
              and stripped == fence[0] * len(stripped))
    return None if closes else opened
