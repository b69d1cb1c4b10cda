"""The multi-literal scanner: one pass over a block of bytes finds the lines that hold any
keyword of the catalog or of the lexer, and which keywords each holds.

Hyperscan compiles every keyword into one automaton; a pure-Python engine gives the same
answer where Hyperscan is missing (a differential test keeps the two equal).

Hyperscan's fast literal matchers want literals of three bytes or more: one two-byte keyword
(a terminal's `^C`) anywhere in the database made its pass over a block of progress bars a
fifth slower. A short keyword is therefore compiled as its extensions by every byte that can
come before it (a line break, a space, a prefix's bracket, an ANSI code's letter...), and
looked for apart where nothing comes before it (the block's start) or a NUL does (a literal
cannot hold one): it is found wherever it stands, as fast as a long one.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from typing import Protocol

from forensics.files import read_cached, write_cached
from forensics.inputs.bytesearch import count_byte

try:  # Hyperscan has wheels for x86-64 and aarch64 only.
    import hyperscan
except ImportError:  # pragma: no cover - exercised where hyperscan is absent
    hyperscan = None


@dataclass(frozen=True, slots=True)
class Keyword:
    """A literal to find; `caseless` folds ASCII case only (as Hyperscan does); a `once`
    keyword is reported on its first line of each block only (facts that need one sighting)."""

    text: bytes
    caseless: bool = False
    once: bool = False


#: literals shorter than this are compiled as their extensions by the byte before them
SHORT = 3
_BEFORE = [bytes([b]) for b in range(1, 256)]  # every byte a literal can hold

#: (line start offset, line end offset, ids of the keywords found on that line)
LineHit = tuple[int, int, frozenset[int]]


class Engine(Protocol):
    """What both engines offer."""

    name: str

    def scan(self, block: bytes) -> list[LineHit]:
        """Return the lines of `block` that hold a keyword, in order."""
        ...


class HyperscanEngine:
    """All keywords in one Hyperscan literal database."""

    name = "hyperscan"

    def __init__(self, keywords: list[Keyword], ids: list[int] | None = None) -> None:
        ids = list(range(len(keywords))) if ids is None else ids
        self._db = _database(keywords, ids)
        self._local = threading.local()  # a Hyperscan scratch serves one scan at a time
        self._short = [(k, i) for k, i in zip(keywords, ids, strict=True) if len(k.text) < SHORT]

    def _scratch(self) -> object:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        return scratch

    def scan(self, block: bytes) -> list[LineHit]:
        lines = _LineGrouper(block)
        for keyword, keyword_id in self._short:  # where no literal byte comes before it
            for end in _unextended_ends(block, keyword):
                lines.on_match(keyword_id, end - len(keyword.text), end, 0, None)
        self._db.scan(block, match_event_handler=lines.on_match, scratch=self._scratch())
        return lines.hits()


def _unextended_ends(block: bytes, keyword: Keyword) -> list[int]:
    """The ends of a short keyword where its compiled extensions cannot see it: at the
    block's start, and after a NUL byte."""
    text = keyword.text.lower() if keyword.caseless else keyword.text
    head = block[:len(text)]
    ends = [len(text)] if (head.lower() if keyword.caseless else head) == text else []
    if count_byte(block, 0):  # numpy lets go of the GIL; `in` would hold it
        haystack = block.lower() if keyword.caseless else block
        start = haystack.find(b"\0" + text)
        while start >= 0:
            ends.append(start + 1 + len(text))
            start = haystack.find(b"\0" + text, start + 1)
    return ends


def _database(keywords: list[Keyword], ids: list[int]) -> object:
    """The keywords compiled by Hyperscan, or read back from the cache where an earlier run
    compiled the same ones (compiling ~400 literals takes 0.2 s; loading, microseconds)."""
    expressions, flags, ids = _literals(keywords, ids)
    key = hashlib.sha256(repr((hyperscan.__version__, expressions, ids, flags))
                         .encode("utf-8")).hexdigest()[:32]
    name = f"hyperscan-{key}.db"
    cached = read_cached(name)
    if cached is not None:
        try:
            return hyperscan.loadb(cached, hyperscan.HS_MODE_BLOCK)
        except hyperscan.error:  # torn, or written by another platform: compile again
            pass
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=expressions, ids=ids, elements=len(expressions), flags=flags,
                     literal=True)
    write_cached(name, hyperscan.dumpb(database))
    return database


def _literals(keywords: list[Keyword],
              ids: list[int]) -> tuple[list[bytes], list[int], list[int]]:
    """What Hyperscan compiles: each keyword's text (a short one's extensions, all under its
    id), its flags and its id."""
    expressions: list[bytes] = []
    flags: list[int] = []
    out_ids: list[int] = []
    for keyword, keyword_id in zip(keywords, ids, strict=True):
        flag = (hyperscan.HS_FLAG_CASELESS if keyword.caseless else 0) \
            | (hyperscan.HS_FLAG_SINGLEMATCH if keyword.once else 0)
        texts = [b + keyword.text for b in _BEFORE] if len(keyword.text) < SHORT \
            else [keyword.text]
        expressions += texts
        flags += [flag] * len(texts)
        out_ids += [keyword_id] * len(texts)
    return expressions, flags, out_ids


class _LineGrouper:
    """Hyperscan's matches grouped by line as they come (in order of their end), so that
    memory grows with the flagged lines, not with the matches: a line that repeats a keyword
    thousands of times is one entry."""

    def __init__(self, block: bytes) -> None:
        self.block = block
        self.done: list[LineHit] = []
        self.start = self.end = -1
        self.ids: set[int] = set()
        self.late: list[tuple[int, int]] = []  # a match before the current line (not expected)

    def on_match(self, pattern_id: int, start: int, end: int, flags: int,
                 _context: object) -> None:
        pos = end - 1
        if self.start <= pos < self.end:
            self.ids.add(pattern_id)
        elif pos >= self.end:
            self._close()
            self.start = self.block.rfind(b"\n", 0, pos) + 1
            found = self.block.find(b"\n", pos)
            self.end = len(self.block) if found < 0 else found
            self.ids = {pattern_id}
        else:
            self.late.append((pos, pattern_id))

    def _close(self) -> None:
        if self.ids:
            self.done.append((self.start, self.end, frozenset(self.ids)))

    def hits(self) -> list[LineHit]:
        self._close()
        if not self.late:
            return self.done
        ends = sorted(self.late + [(start, i) for start, _, ids in self.done for i in ids])
        return _group_by_line(self.block, ends)


class PythonEngine:
    """The same answers from Python's `re`: an alternation finds candidate lines, then each
    keyword is tested on each candidate line."""

    name = "python"

    def __init__(self, keywords: list[Keyword], ids: list[int] | None = None) -> None:
        ids = list(range(len(keywords))) if ids is None else ids
        alternatives = [
            (b"(?i:" + re.escape(k.text) + b")") if k.caseless else re.escape(k.text)
            for k in sorted(keywords, key=lambda k: -len(k.text))
        ]
        self._any = re.compile(b"|".join(alternatives)) if alternatives else None
        self._exact = [(i, k.text) for i, k in zip(ids, keywords, strict=True) if not k.caseless]
        self._folded = [(i, k.text.lower()) for i, k in zip(ids, keywords, strict=True)
                        if k.caseless]
        self._once = frozenset(i for i, k in zip(ids, keywords, strict=True) if k.once)

    def scan(self, block: bytes) -> list[LineHit]:
        hits: list[LineHit] = []
        if self._any is None:
            return hits
        pos = 0
        search = self._any.search
        reported: set[int] = set()
        while True:
            match = search(block, pos)
            if match is None:
                return hits
            start = block.rfind(b"\n", 0, match.start()) + 1
            end = block.find(b"\n", match.start())
            if end < 0:
                end = len(block)
            line = block[start:end]
            ids = {i for i, text in self._exact if text in line}
            if self._folded:
                lowered = line.lower()
                ids.update(i for i, text in self._folded if text in lowered)
            if self._once:
                once_here = ids & self._once
                ids -= reported
                reported |= once_here
            if ids:
                hits.append((start, end, frozenset(ids)))
            pos = end + 1


def _group_by_line(block: bytes, ends: list[tuple[int, int]]) -> list[LineHit]:
    hits: list[LineHit] = []
    line_start = line_end = -1
    ids: set[int] = set()
    for pos, pattern_id in ends:
        if line_start <= pos < line_end:
            ids.add(pattern_id)
            continue
        if ids:
            hits.append((line_start, line_end, frozenset(ids)))
        line_start = block.rfind(b"\n", 0, pos) + 1
        line_end = block.find(b"\n", pos)
        if line_end < 0:
            line_end = len(block)
        ids = {pattern_id}
    if ids:
        hits.append((line_start, line_end, frozenset(ids)))
    return hits


def available_engines() -> list[str]:
    """Names of the engines this installation can run."""
    return ["hyperscan", "python"] if hyperscan is not None else ["python"]


def build_engine(keywords: list[Keyword], name: str = "auto",
                 ids: list[int] | None = None) -> Engine:
    """The fastest engine available, or the one named; `ids` are the numbers its matches
    report for the keywords (default: their positions)."""
    if name == "auto":
        name = "hyperscan" if hyperscan is not None else "python"
    if name == "hyperscan":
        if hyperscan is None:
            raise RuntimeError("hyperscan is not installed")
        return HyperscanEngine(keywords, ids)
    return PythonEngine(keywords, ids)
