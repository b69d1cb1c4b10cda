"""Logical lines from damaged pastes, before anything is matched: logs reach issue threads
copied from terminals, boxed by rich/typer tracebacks and hard-wrapped at the terminal's
width, typed into editors that curl quotes (`‘evaluation_strategy’`) or quoted back in bold
(`**RuntimeError: ...**`). This step strips the box drawing, joins wrapped rows back into one
line, straightens typographic quotes and drops bold around a whole message. Line
numbers are kept: a joined row leaves an empty line behind, so evidence still points at the
row the message started on. Both run only on inputs of paste size: a log a program wrote
to a file is neither boxed by a terminal nor wrapped at its width."""

from __future__ import annotations

import re

#: inputs above this size are log files, not pastes: no wrap detection (it is per-line work,
#: and a program's log of fixed-width lines repeated can pass for a wrapped screen). A GitHub
#: comment holds at most 65,536 characters; a terminal's scrollback copy rarely 256 KiB.
PASTE_BYTES = 256 * 1024
#: the widths terminals wrap at; any other width needs several full rows to count
COMMON_WIDTHS = frozenset({80, 100, 120, 132, 140, 160, 180, 200, 220, 240, 250})
MIN_WIDTH = 60
MAX_WIDTH = 400  # wider than any terminal a log is copied from
MIN_FULL_ROWS = 3
_VERTICAL = "│┃"
_BOLD_LINE = re.compile(rb"(?m)^([^*\n]{0,80}?)\*\*(?=[^*\s])([^\n]*?[^*\s])\*\*[ \t]*$")
_TYPOGRAPHIC_QUOTES = tuple((curly.encode(), straight.encode())
                            for curly, straight in (("‘", "'"), ("’", "'"), ("“", '"'), ("”", '"')))
_BOX_BYTES = ("│".encode(), "┃".encode())
# a border row, with an optional title: ╭──── Traceback (most recent call last) ────╮
_BORDER = re.compile(r"^\s*[╭╰┏┗┌└][─━]*\s?(?P<title>[^─━╮╯┓┛┐┘]*?)\s?[─━]*[╮╯┓┛┐┘]\s*$")
_ROW = re.compile(rf"^(?P<indent>\s*)[{_VERTICAL}] ?(?P<content>.*?) ?[{_VERTICAL}]\s*$")
# a row that starts a new record rather than continuing a wrapped one
_RECORD_START = re.compile(
    r"^(?:\[|\{'|\d{4}-\d\d-\d\d|\d\d/\d\d/\d{4}|[VIWEF]\d{4} |Traceback |\s*File \"|"
    r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\b|NCCL |"
    # a program that names itself first ("ssh: connect to host ...", "srun: error: ...")
    r"(?:ssh|scp|nslookup|srun|sbatch|slurmstepd|bash|zsh|sh|mpirun|pdsh(?:@[\w.-]+)?|wandb"
    r"|torchrun|deepspeed|accelerate|python[\d.]*): )")


def normalize(block: bytes, small: bool) -> bytes:
    """The block with rich boxes stripped and (for paste-sized inputs) wrapped rows joined."""
    if not small:
        return block
    for curly, straight in _TYPOGRAPHIC_QUOTES:
        if curly in block:
            block = block.replace(curly, straight)
    if b"**" in block:  # Markdown bold around a message: "[rank0]: **RuntimeError: ...**"
        block = _BOLD_LINE.sub(rb"\1\2", block)
    rows = block.decode("utf-8", "surrogateescape").split("\n")
    boxed = any(mark in block for mark in _BOX_BYTES)
    if boxed:
        rows = _unbox(rows)
    width = wrap_width(rows)
    if width is None and not boxed:
        return block  # nothing to repair
    if width is not None:
        rows = _join_full_rows(rows, width, padded=False)
    return "\n".join(rows).encode("utf-8", "surrogateescape")


def _unbox(rows: list[str]) -> list[str]:
    """Box borders become their title (or nothing); `│ text │` rows become `text`, nested
    boxes too; then rows wrapped inside one box are joined at the box's inner width."""
    out = []
    inner_width = 0
    for row in rows:
        border = _BORDER.match(row)
        if border is not None:
            out.append(border["title"].strip())
            continue
        level = 0
        while (found := _ROW.match(row)) is not None and level < 3:
            content = found["content"]
            inner_width = max(inner_width, len(content))
            row = content
            level += 1
        out.append(row)
    if inner_width >= MIN_WIDTH:
        out = _join_full_rows(out, inner_width, padded=True)
    return [row.rstrip() for row in out]


def wrap_width(rows: list[str]) -> int | None:
    """The width the rows were hard-wrapped at: no row is longer, and rows of exactly that
    width occur (once is enough at a common terminal width, else several different ones)."""
    if any("\r" in row.rstrip("\r") or "%|" in row or "\x1b[" in row for row in rows):
        # progress bars, colour codes not yet rendered: a file a program wrote (or a raw
        # capture such as `script`'s), not a terminal's screen, which wraps what it renders
        return None
    lengths = [len(row) for row in rows if row and not row.endswith("\r")]
    if not lengths:
        return None
    width = max(lengths)
    full = len({row for row in rows if len(row) == width})  # one line repeated is no wrap
    if (width < MIN_WIDTH or width > MAX_WIDTH
            or (width not in COMMON_WIDTHS and full < MIN_FULL_ROWS)):
        return None
    return width


def _join_full_rows(rows: list[str], width: int, padded: bool) -> list[str]:
    """Join each wrapped row with the next, unless the next row starts a new record; the
    joined row's place is left empty so later line numbers stay right. A terminal cuts rows
    at exactly `width` characters, mid-word; a box (`padded`) also wraps at a word, when the
    next word would not have fitted."""
    out = list(rows)
    i = 0
    while i < len(rows) - 1:
        j = i
        while j < len(rows) - 1 and (glue := _glue(rows[j], rows[j + 1], width,
                                                   padded)) is not None:
            out[i] = (out[i].rstrip() + " " if glue else out[i]) + rows[j + 1]
            out[j + 1] = ""
            j += 1
        i = j + 1
    return out


def _whole_dict(row: str) -> bool:
    """Whether the row is one printed dict from `{'` to its closing `}`."""
    text = row.strip()
    return text.startswith("{'") and text.endswith("}") and text.count("{") == text.count("}")


def _glue(row: str, nxt: str, width: int, padded: bool) -> str | None:
    """How `row` continues on `nxt`: "" (cut mid-word), " " (wrapped at a space), or None
    (`nxt` is a line of its own)."""
    if not nxt.strip() or _RECORD_START.match(nxt) or nxt[:3] == row[:3] or row.endswith("\r") \
            or _whole_dict(row):
        return None  # a row of its own: empty, a new record, another row of the same kind,
        # a row a program ended (CRLF): a terminal's wrap leaves no carriage return, or a
        # printed dict whole on its row (a trainer prints one a line)
    if len(row) == width and not (padded and row.endswith(" ")):
        # an indented row is a line of its own (a frame, quoted source); a cut leaves at
        # most the one space it fell on
        return None if nxt.startswith("  ") and not padded else ""
    if padded and row.strip():
        words = nxt.split()
        if len(row.rstrip()) + 1 + len(words[0]) > width:
            return " "
    return None
