"""Plain-text helpers every stage shares, and the output-safety functions every renderer
goes through: log text is data, never markup or a terminal command.

- `term_safe`: no terminal control survives (escape sequences whole, C0/C1 controls, bidi
  overrides and isolates); every report string passes through it.
- `clip`: one evidence line's length limit, the same in every format.
- `scrub`: both, over every string of an `Analysis` (or any data): what each renderer starts
  from, so none can forget a field.
- `md_text`, `md_code`, `md_fence`, `html_text`: log text in Markdown, as inline text, an
  inline code span, a fenced block, or inside our own HTML. A token GitHub would turn into a
  mention, an issue reference or a link (`@name`, `#123`, `GH-123`, `owner/repo#123`, an
  e-mail address, a URL) is shown as inline code, where GitHub links nothing: the text stays
  exactly as logged and copies cleanly, with no invisible character added.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterable
from enum import Enum
from typing import TypeVar

RANKS_SHOWN = 8
LINE_CHARS = 1_000  # the longest log-derived string any report prints

T = TypeVar("T")


def rank_list(ranks: Iterable[int], limit: int = RANKS_SHOWN) -> str:
    """Ranks as `0, 1, 2 …`: sorted, the first `limit`, an ellipsis when there are more."""
    shown = sorted(ranks)
    text = ", ".join(str(r) for r in shown[:limit])
    return text + (" …" if len(shown) > limit else "")


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit] + " …"


def clip(text: str, limit: int = LINE_CHARS) -> str:
    """`text` cut to at most `limit` characters, ending `… (N more characters)` when cut
    (so clipping twice changes nothing)."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - len(f" … ({len(text):,} more characters)"))
    return text[:keep] + f" … ({len(text) - keep:,} more characters)"


# ESC or its 8-bit C1 form, then the whole sequence: CSI (parameters, intermediates, final);
# OSC, DCS, SOS, PM and APC strings up to BEL or ST (or the end of the line, where a terminal
# would swallow what follows); any other escape (ESC c, ESC ( B, ESC 7).
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\n]*?(?:\x07|\x1b\\|\x9c|(?=\n)|\Z)"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)
# C0 but tab and newline, DEL, C1; the bidi marks, embeddings, overrides and isolates
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def term_safe(text: str) -> str:
    """`text` with every terminal control removed: escape sequences whole, C0 controls but
    `\\n` and `\\t`, DEL, C1 controls, and the bidi controls that reorder what is shown."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


def scrub(value: T, limit: int = LINE_CHARS) -> T:
    """`value` with every string in it (through dataclasses, tuples, lists and dicts, keys
    included) clipped to `limit` and made `term_safe`; enums and numbers as they are."""
    if isinstance(value, Enum):
        return value
    if isinstance(value, str):
        return term_safe(clip(value, limit))  # type: ignore[return-value]
    if isinstance(value, tuple | list):
        return type(value)(scrub(item, limit) for item in value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {scrub(k, limit): scrub(v, limit) for k, v in value.items()}  # type: ignore[return-value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: scrub(getattr(value, f.name), limit)
                   for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)  # type: ignore[type-var]
    return value


_LINE_BREAK = re.compile(r"[\n\t\u2028\u2029]")


def one_line(text: object) -> str:
    """`text` clipped, made terminal-safe, its line breaks and tabs turned into spaces."""
    return _LINE_BREAK.sub(" ", term_safe(clip(str(text))))


# a word GitHub links: a mention or an e-mail address, an issue or pull request reference
# (#1, GH-1, owner/repo#1), a URL
_LINKED = re.compile(r"@[0-9A-Za-z]|#\d|\bGH-\d|://|\bwww\.", re.IGNORECASE)
_WORD = re.compile(r"[^\s|]+")
_WORD_EDGES = re.compile(r"^([(\[{<\"']*)(.*?)([)\]}>\"'.,;:!?]*)$")
# inline markup anywhere: backslash before punctuation (or last), backticks, emphasis and
# strikethrough, a link's or image's bracket, a table cell's pipe, math; an HTML tag,
# comment or autolink; an entity
_INLINE = re.compile(r"\\(?=[!-/:-@\[-`{-~]|$)|[`*~\[|$]|<(?=[A-Za-z/!?])|&(?=#?\w+;)")
_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")  # not inside a word
# what starts a block at the beginning of a line: heading, quote, list item, thematic break
# or setext underline, ordered list item (`*` and `_` are escaped anywhere)
_BLOCK_START = re.compile(
    r"^(?:#{1,6}(?=[ \t]|$)|>|[-+](?=[ \t]|$)|(?=[- ]+$)-|=+$|\d{1,9}(?=[.)](?:[ \t]|$)))")


def md_text(value: object) -> str:
    """Log text as Markdown inline text outside code, on one line: markup characters
    backslash-escaped where they would be markup, no line can start a heading, list or quote,
    and each word GitHub would link (mention, issue reference, URL) as inline code."""
    text = one_line(value).strip()
    out: list[str] = []
    position = 0
    for word in _WORD.finditer(text):
        if _LINKED.search(word.group()) is None:
            continue
        edges = _WORD_EDGES.match(word.group())
        assert edges is not None
        head, core, tail = edges.groups()
        out.append(_escape(text[position:word.start()] + head))
        out.append(md_code(core))
        position = word.end() - len(tail)
    out.append(_escape(text[position:]))
    escaped = "".join(out)
    start = _BLOCK_START.match(escaped)
    if start is not None:
        cut = start.end() if start.group()[:1].isdigit() else 0
        escaped = escaped[:cut] + "\\" + escaped[cut:]
    return escaped


def _escape(text: str) -> str:
    return _UNDERSCORE.sub(r"\\_", _INLINE.sub(lambda m: "\\" + m.group(), text))


_BACKTICKS = re.compile(r"`+")


def md_code(value: object, in_table: bool = False) -> str:
    """Log text as one inline code span, on one line: delimited by a backtick run longer than
    any inside it (CommonMark), padded where an end is a backtick or both ends are spaces;
    `in_table`: its pipes escaped, as a GitHub table cell needs even inside code."""
    text = one_line(value)
    if in_table:
        text = text.replace("|", "\\|")
    if not text:
        return "` `"
    fence = "`" * (1 + max((len(run) for run in _BACKTICKS.findall(text)), default=0))
    # CommonMark drops one space at each end when both ends have one (unless all are spaces)
    pad = " " if "`" in (text[0], text[-1]) or (text[0] == text[-1] == " " and text.strip()) \
        else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_fence(text: str, info: str = "text") -> str:
    """Log lines as a fenced code block whose fence no line inside can close."""
    body = term_safe(text)
    fence = "`" * max(3, 1 + max((len(run) for run in _BACKTICKS.findall(body)), default=0))
    return f"{fence}{info}\n{body}\n{fence}"


def html_text(value: object) -> str:
    """Log text inside our own HTML (a `<summary>`): one line, `&`, `<`, `>` and quotes as
    entities."""
    return html.escape(one_line(value))
