"""Secrets out of everything forensics prints or writes.

The rules are data, gitleaks-style: `secrets.toml` beside this module holds one rule per kind
of secret (an id, keywords, a regex whose `secret` group is masked, an optional entropy and
mixing floor, allowlists, and the true examples and near misses tests/test_redact.py runs).
A rule's regex runs only on a line that holds one of its keywords; the two bare-key rules (a
40-hex W&B key, a 32+ character base64 secret such as an AWS secret access key) have none and
rely on Shannon entropy and character mixing instead. A 40-hex string after `commit`, `sha`,
`revision` and the like, or inside a path or URL (`snapshots/<sha>/`, `@<sha>`), is a commit,
not a key, and is kept: it says which code ran.

Lines are read together, not one by one: a private key's body is masked up to its END line,
and a secret a terminal hard-wrapped over two lines is masked on both (a line's last word is
joined to the next line's first; a rule that finds a secret across the join, and did not
already find one ending the first line, masks both halves).

Where it runs: `pipeline` redacts the `Analysis` before any renderer sees it (so Markdown
escaping, clipping and terminal wrapping never split a secret), and every output is redacted
again where it leaves: `cli_common.write` (all text, stdout and `-o`), `cli_common.warn`
(stderr), `fleet.dataset` (each Parquet row), `pipeline.export_timeline` (the frame every
timeline format is made from).

detect-secrets 1.5.0 was weighed and left out. Its file scanner flagged 14 of the 29 planted
lines and gave the secret itself for 11 (`ghp` for a GitHub token, the header for a private
key; no Hugging Face, Google or OpenAI project keys, no CLI flags, no bare W&B or AWS keys:
its entropy plugins look only inside quotes), took ~450 us a line against ~11 us here (a
2,000-job scan redacts every report and row), flagged paths and a Metal error as secrets on
the corpus, reports values rather than positions, and pulls in PyYAML and requests.
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from enum import Enum
from functools import cache, lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from forensics import tomlfile
from forensics.errors import CatalogError

MASK = "[REDACTED]"
RULES_FILE = Path(__file__).with_name("secrets.toml")
BLOCK_LINES = 200  # the most lines a private-key block masks without its END line
REMEMBERED_CHARS = 2048  # lines up to this long are remembered with their secrets
_FIELDS = {"id", "description", "keywords", "regex", "entropy", "mixing", "require", "allow",
           "allow_before", "until", "example", "counterexample"}
_BLOCK_RUN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "+/=_.-")
_LINE_START_RUN = re.compile(r"[A-Za-z0-9+/=_.-]{4,300}")
_LINE_END_RUN = re.compile(r"[A-Za-z0-9+/=_.-]{1,300}")  # matched on the reversed line end
_JOIN_WINDOW = 300  # characters of the first line looked at when two lines are joined
JOINED_CHARS = 16  # a word cut by a line end is looked for only when its parts are this long
_CLASSES = str.maketrans({**{c: "a" for c in string.ascii_lowercase},
                          **{c: "A" for c in string.ascii_uppercase},
                          **{c: "0" for c in string.digits}})

_PLAIN = {int, float, bool, type(None), bytes}  # no text in them
_QUOTED = ("text", "before", "after", "body")  # a quoted line's fields, masked together
T = TypeVar("T")


class Example(NamedTuple):
    """A rule's example: a line, and the secret in it (or why a near miss is not one)."""

    line: str
    secret: str = ""
    why: str = ""


@dataclasses.dataclass(frozen=True)
class Rule:
    """One kind of secret (see the header of secrets.toml for each field)."""

    id: str
    description: str
    regex: re.Pattern[str]
    keywords: tuple[str, ...] = ()
    entropy: float = 0.0
    mixing: float = 0.0
    require: tuple[re.Pattern[str], ...] = ()
    allow: tuple[re.Pattern[str], ...] = ()
    allow_before: tuple[re.Pattern[str], ...] = ()
    until: re.Pattern[str] | None = None
    examples: tuple[Example, ...] = ()
    counterexamples: tuple[Example, ...] = ()

    def wanted(self, lowered: str) -> bool:
        """Whether the regex should run on a line (given lower-cased)."""
        return not self.keywords or any(k in lowered for k in self.keywords)

    def accepts(self, secret: str, before: str) -> bool:
        """Whether a match is a secret: entropy, mixing, character classes, allowlists."""
        return (entropy(secret) >= self.entropy and mixing(secret) >= self.mixing
                and all(p.search(secret) for p in self.require)
                and not any(p.search(secret) for p in self.allow)
                and not any(p.search(before) for p in self.allow_before))

    def spans(self, line: str) -> list[tuple[int, int]]:
        """Where this rule finds a secret in `line`."""
        found = []
        for match in self.regex.finditer(line):
            start, end = match.span("secret") if "secret" in self.regex.groupindex \
                else match.span()
            if start < end and self.accepts(line[start:end], line[:start]):
                found.append((start, end))
        return found


class Hit(NamedTuple):
    """A secret found on a line: the rule and where."""

    rule: str
    start: int
    end: int


def entropy(text: str) -> float:
    """Shannon entropy of `text`, in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def mixing(text: str) -> float:
    """The share of neighbouring characters of `text` that differ in class (upper case,
    lower case, digit, other): about 2 in 3 in a random key, far fewer in words, class names
    and paths."""
    if len(text) < 2:
        return 0.0
    classes = text.translate(_CLASSES)
    return sum(a != b for a, b in pairwise(classes)) / (len(text) - 1)


def load_rules(path: Path = RULES_FILE) -> tuple[Rule, ...]:
    """The rules of a secrets file. Raises CatalogError with `path: field: reason` lines."""
    try:
        data = tomlfile.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomlfile.TOMLDecodeError) as err:
        raise CatalogError([f"{path}: file: cannot read ({err})"]) from err
    problems: list[str] = []
    rules = [_rule(entry, f"{path}: rule {n}", problems)
             for n, entry in enumerate(data.get("rule", []), 1)]
    ids = [r.id for r in rules if r is not None]
    problems += [f"{path}: id: {i} is used twice" for i in sorted({i for i in ids
                                                                    if ids.count(i) > 1})]
    if problems:
        raise CatalogError(problems)
    return tuple(r for r in rules if r is not None)


def _rule(entry: dict, where: str, problems: list[str]) -> Rule | None:
    unknown = set(entry) - _FIELDS
    missing = {"id", "description", "regex", "example"} - set(entry)
    if unknown or missing:
        problems.append(f"{where}: fields: unknown {sorted(unknown)}, missing {sorted(missing)}")
        return None
    where = f"{where} ({entry['id']})"
    try:
        rule = Rule(
            id=entry["id"], description=entry["description"], regex=re.compile(entry["regex"]),
            keywords=tuple(k.lower() for k in entry.get("keywords", [])),
            entropy=float(entry.get("entropy", 0.0)), mixing=float(entry.get("mixing", 0.0)),
            require=tuple(re.compile(p) for p in entry.get("require", [])),
            allow=tuple(re.compile(p) for p in entry.get("allow", [])),
            allow_before=tuple(re.compile(p) for p in entry.get("allow_before", [])),
            until=re.compile(entry["until"]) if "until" in entry else None,
            examples=tuple(Example(e["line"], e["secret"]) for e in entry["example"]),
            counterexamples=tuple(Example(c["line"], why=c["why"])
                                  for c in entry.get("counterexample", [])))
    except (re.error, KeyError, TypeError, ValueError) as err:
        problems.append(f"{where}: {type(err).__name__}: {err}")
        return None
    if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", rule.id):
        problems.append(f"{where}: id: not kebab-case")
    if any(not rule.wanted(e.line.lower()) for e in rule.examples):
        problems.append(f"{where}: keywords: an example holds none of them")
    return rule


@cache
def rules() -> tuple[Rule, ...]:
    """The built-in rules (read once)."""
    return load_rules()


class _Index(NamedTuple):
    """The rules arranged for speed: each keyword with the line rules it starts, the line
    rules without keywords, and the block rules."""

    by_keyword: tuple[tuple[str, tuple[Rule, ...]], ...]
    any_keyword: re.Pattern[str]
    always: tuple[Rule, ...]
    blocks: tuple[Rule, ...]


@cache
def _index() -> _Index:
    line_rules = [r for r in rules() if r.until is None]
    keywords = dict.fromkeys(k for r in line_rules for k in r.keywords)
    return _Index(tuple((k, tuple(r for r in line_rules if k in r.keywords)) for k in keywords),
                  re.compile("|".join(map(re.escape, keywords))),
                  tuple(r for r in line_rules if not r.keywords),
                  tuple(r for r in rules() if r.until is not None))


def find_secrets(line: str) -> tuple[Hit, ...]:
    """Every secret the line-by-line rules find in one line (block rules aside). A short line
    met again (a quoted line is in a finding, the root cause and a Parquet row; a fleet's
    logs share most lines) is looked up, not scanned."""
    return _find_remembered(line) if len(line) <= REMEMBERED_CHARS else _find(line)


def _find(line: str) -> tuple[Hit, ...]:
    index = _index()
    lowered = line.lower()
    wanted: dict[Rule, None] = {}
    if index.any_keyword.search(lowered):  # most lines hold none
        for keyword, keyed in index.by_keyword:
            if keyword in lowered:
                wanted.update(dict.fromkeys(keyed))
    return tuple(Hit(rule.id, start, end) for rule in (*wanted, *index.always)
                 for start, end in rule.spans(line))


_find_remembered = lru_cache(maxsize=8192)(_find)


def scan_lines(lines: Sequence[str]) -> list[list[Hit]]:
    """The secrets of consecutive lines, line by line: each line's own, a private key's body
    up to its END line, and both halves of a secret wrapped over a line end."""
    hits = [list(find_secrets(line)) for line in lines]
    if len(lines) > 1:
        _blocks(lines, hits)
        _wraps(lines, hits)
    return hits


def _blocks(lines: Sequence[str], hits: list[list[Hit]]) -> None:
    """Mask what follows a block rule's header (a PEM body) up to its `until` line."""
    for rule in _index().blocks:
        open_at: int | None = None
        for i, line in enumerate(lines):
            if open_at is not None:
                if rule.until.search(line) or i - open_at > BLOCK_LINES:
                    open_at = None
                    continue
                hits[i] += [Hit(rule.id, *m.span()) for m in _BLOCK_RUN.finditer(line)]
            elif rule.wanted(line.lower()) and (header := rule.regex.search(line)):
                rest = line[header.end():]
                if rule.until.search(rest) is None:  # not a key on one line
                    hits[i] += [Hit(rule.id, header.end() + m.start(), header.end() + m.end())
                                for m in _BLOCK_RUN.finditer(rest)]
                    open_at = i


def _wraps(lines: Sequence[str], hits: list[list[Hit]]) -> None:
    """A line ending in a word and the next starting with one (not with `Word:`, which starts
    a record of its own) are joined; a secret that a
    rule finds across the join, and did not already find ending the first line, is masked
    on both lines."""
    for i in range(1, len(lines)):
        first, second = lines[i - 1], lines[i]
        head = _LINE_START_RUN.match(second)
        if head is None or not first or first[-1] not in _WORD_CHARS:
            continue
        if second[head.end():head.end() + 1] == ":":
            continue  # `ModuleNotFoundError: ...`, `key: value`: a record of its own starts
        window = first[-_JOIN_WINDOW:]
        end = _LINE_END_RUN.match(window[::-1])
        if end is None or end.end() + head.end() < JOINED_CHARS:
            continue
        offset, cut = len(first) - len(window), len(window)
        ended = {h.rule for h in hits[i - 1] if h.end == len(first)}
        for hit in find_secrets(window + head.group()):
            if hit.start < cut < hit.end and hit.rule not in ended:
                hits[i - 1].append(Hit(hit.rule, offset + hit.start, len(first)))
                hits[i].append(Hit(hit.rule, 0, hit.end - cut))


def mask(line: str, hits: Sequence[Hit]) -> str:
    """`line` with every hit (overlapping ones merged) replaced by MASK; a hit inside a MASK
    already there is no hit (redacting twice changes nothing)."""
    if MASK in line:
        masks = [(m.start(), m.end()) for m in re.finditer(re.escape(MASK), line)]
        hits = [h for h in hits if not any(s <= h.start and h.end <= e for s, e in masks)]
    if not hits:
        return line
    out, position = [], 0
    for start, end in _merged(hits):
        out += [line[position:start], MASK]
        position = end
    out.append(line[position:])
    return "".join(out)


def _merged(hits: Sequence[Hit]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for _, start, end in sorted(hits, key=lambda h: (h.start, h.end)):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def redact_lines(lines: Sequence[str]) -> list[str]:
    """Consecutive lines with their secrets masked."""
    return [mask(line, found) for line, found in zip(lines, scan_lines(lines), strict=True)]


def redact_text(text: str) -> str:
    """`text` (one line or many) with tokens, keys and passwords replaced by MASK."""
    if not text:
        return text
    if "\n" not in text:
        return mask(text, find_secrets(text))
    return "\n".join(redact_lines(text.split("\n")))


def redact(value: T) -> T:
    """A copy of `value` (frozen dataclasses, tuples, lists and dicts of them) with every
    string redacted; enums, numbers and dict keys are kept. A sequence of strings is read as
    consecutive lines, and so are a quoted line's `before`, `text` and `after`, and the
    `text` of quoted lines (records with `text` and `line`) whose numbers follow each other
    in one source (a report's tail)."""
    return _Redactor().walk(value)


class _Redactor:
    """One walk over a tree; a string met twice is redacted once."""

    def __init__(self) -> None:
        self.done: dict[str, str] = {}

    def walk(self, value: Any) -> Any:
        if type(value) in _PLAIN or isinstance(value, Enum):
            return value
        if isinstance(value, str):
            if value not in self.done:
                self.done[value] = redact_text(value)
            return self.done[value]
        if isinstance(value, (tuple, list)):
            return type(value)(self.sequence(value))
        if isinstance(value, dict):
            return {key: self.walk(item) for key, item in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self.record(value, _context_hits(value))
        return value

    def sequence(self, items: Sequence[Any]) -> list[Any]:
        if all(type(item) in _PLAIN for item in items):
            return list(items)
        if len(items) > 1 and all(isinstance(item, str) for item in items):
            return redact_lines(items)
        if not items or not all(_is_quote(item) for item in items):
            return [self.walk(item) for item in items]
        own = [_context_hits(item) for item in items]
        for run in _runs(items):
            for i, found in zip(run, scan_lines([items[i].text for i in run]), strict=True):
                own[i][len(_context(items[i])[0])] += found
        return [self.record(item, found) for item, found in zip(items, own, strict=True)]

    def record(self, value: Any, hits: list[list[Hit]] | None) -> Any:
        """A dataclass with its fields redacted; for a quoted line, its `before`, `text`,
        `after` (and `body`, the text's tail) masked where `hits` say, line by line."""
        quoted = _QUOTED if hits is not None else ()
        changes = {f.name: self.walk(getattr(value, f.name))
                   for f in dataclasses.fields(value) if f.init and f.name not in quoted}
        if hits is None:
            return dataclasses.replace(value, **changes)
        before, after = _context(value)
        text_hits = hits[len(before)]
        changes["text"] = mask(value.text, text_hits)
        for name, lines, found in (("before", before, hits[:len(before)]),
                                   ("after", after, hits[len(before) + 1:])):
            if lines:
                changes[name] = tuple(mask(line, h) for line, h in zip(lines, found,
                                                                        strict=True))
        body = getattr(value, "body", "")
        if body and value.text.endswith(body):
            shift = len(value.text) - len(body)
            changes["body"] = mask(body, [Hit(h.rule, max(h.start - shift, 0), h.end - shift)
                                          for h in text_hits if h.end > shift])
        elif body:
            changes["body"] = self.walk(body)
        return dataclasses.replace(value, **changes)


def _is_quote(value: Any) -> bool:
    """A quoted log line: a dataclass with a `text` string and a `line` number."""
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)
            and isinstance(getattr(value, "text", None), str)
            and isinstance(getattr(value, "line", None), int))


def _context(value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A quoted line's lines before and after it (none when it has no such fields)."""
    return tuple(getattr(value, "before", ())), tuple(getattr(value, "after", ()))


def _context_hits(value: Any) -> list[list[Hit]] | None:
    """A quoted line's secrets, line by line over its before, text and after."""
    if not _is_quote(value):
        return None
    before, after = _context(value)
    return scan_lines([*before, value.text, *after])


def _runs(items: Sequence[Any]) -> list[list[int]]:
    """Indexes of quoted lines that follow each other (same source, next line number)."""
    runs: list[list[int]] = []
    for i, item in enumerate(items):
        previous = items[i - 1] if i else None
        if previous is not None and item.line == previous.line + 1 \
                and getattr(item, "source", None) == getattr(previous, "source", None):
            runs[-1].append(i)
        else:
            runs.append([i])
    return [run for run in runs if len(run) > 1]


def redact_frame(frame: Any) -> Any:
    """A pandas DataFrame with its column names and text cells redacted (pandas itself is not
    imported here); the frame is returned as it is when nothing in it is secret."""
    names = [redact_text(c) if isinstance(c, str) else c for c in frame.columns]
    if names != list(frame.columns):
        frame = frame.set_axis(names, axis="columns")
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        if column.dtype.kind in "biufcmM":  # numbers, booleans, times
            continue
        changed = {v: redact_text(v) for v in column.unique() if isinstance(v, str)}
        changed = {v: r for v, r in changed.items() if r != v}
        if changed:
            frame = frame.copy()
            frame.isetitem(position, column.astype(object).replace(changed))
    return frame
