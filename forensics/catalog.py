"""Load and validate the signature catalog: `patterns/<category>/<id>.toml`, one signature
per file, the id being the file name."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import regex

from forensics import tomlfile
from forensics.errors import CatalogError
from forensics.model import Level, LineRole, Severity, Verdict
from forensics.stacks import FixItem, parse_fix

SEVERITIES = tuple(s.value for s in Severity)
ANY = "*"
ENV_VAR = "FORENSICS_PATTERNS"
_ID = regex.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_REQUIRED = ("id", "title", "category", "severity", "priority", "keywords", "cause", "fix")
_KNOWN = {*_REQUIRED, "symptom_of", "also_matches", "patterns", "generic",
          "min_count", "corroborating_lines", "corroborating_signatures", "if_uncorroborated",
          "onset_anomaly", "stalled_collective", "references",
          "examples", "counterexamples", "roles", "root_levels", "signals", "groups",
          "verdict"}
GROUP = "group:"  # `symptom_of = ["group:kills-a-rank"]` names every member of a group
#: the group of failures that end the process that hits them; the collective failures they
#: cause on the other ranks (NCCL timeouts, aborts, hangs) name it in `symptom_of`
KILLS_A_RANK = "kills-a-rank"
DEFAULT_ROLES = (LineRole.FRAME, LineRole.EXCEPTION, LineRole.PLAIN)
DEFAULT_ROOT_LEVELS = (Level.ERROR, Level.FATAL, Level.UNMARKED)
#: the fatal signals a signature may declare, by name (POSIX numbers, as Linux prints them)
SIGNAL_NAMES = {"SIGHUP": 1, "SIGINT": 2, "SIGILL": 4, "SIGABRT": 6, "SIGBUS": 7, "SIGFPE": 8,
                "SIGKILL": 9, "SIGSEGV": 11, "SIGTERM": 15}
VERDICTS = (Verdict.FAILED, Verdict.INTERRUPTED)
#: named captures the diagnosis reads (any other named capture is a detail in the report);
#: every capture whose name starts with `exitcode` is an exit status
RESERVED_CAPTURES = ("exitcode", "node", "host", "time", "exception_type", "waiting",
                     "nonfinite")
_PLACEHOLDER = regex.compile(r"\{[^{}]*\}")
_PLACEHOLDERS = {"{host}", "{time}"}


class Patterns(Sequence["regex.Pattern[str]"]):
    """A signature's regexes, compiled when first used: a run meets a few of the built-in
    catalog's ~460 (compiling them all took a fifth of a second), and `forensics patterns
    check` compiles and lints every one before a release."""

    __slots__ = ("_compiled", "sources")

    def __init__(self, sources: tuple[str, ...],
                 compiled: tuple[regex.Pattern[str], ...] | None = None) -> None:
        self.sources = sources
        self._compiled = compiled

    def _all(self) -> tuple[regex.Pattern[str], ...]:
        if self._compiled is None:
            self._compiled = tuple(regex.compile(source) for source in self.sources)
        return self._compiled

    def __getitem__(self, index):  # type: ignore[override]
        return self._all()[index]

    def __len__(self) -> int:
        return len(self.sources)

    def __iter__(self) -> Iterator[regex.Pattern[str]]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Patterns) and other.sources == self.sources

    def __hash__(self) -> int:
        return hash(self.sources)

    def __repr__(self) -> str:
        return f"Patterns({self.sources!r})"


@dataclass(frozen=True, slots=True)
class Signature:
    """One known failure: how to spot it, what it means and what to change."""

    id: str
    title: str
    category: str
    severity: Severity
    priority: int
    keywords: tuple[str, ...]
    patterns: Sequence[regex.Pattern[str]]
    cause: str
    fix: tuple[FixItem, ...]  # bullets, some tagged with the stacks they are for
    path: Path
    symptom_of: tuple[str, ...] = ()
    also_matches: tuple[str, ...] = ()
    generic: bool = False
    min_count: int = 1
    corroborating_lines: Sequence[regex.Pattern[str]] = ()
    corroborating_signatures: tuple[str, ...] = ()
    if_uncorroborated: str = ""
    onset_anomaly: str = ""  # its step is the first step with this anomaly kind (e.g. nan)
    stalled_collective: bool = False  # a Flight Recorder dump names its rank
    references: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    counterexamples: tuple[str, ...] = ()
    roles: tuple[LineRole, ...] = DEFAULT_ROLES  # where its patterns may match
    root_levels: tuple[Level, ...] = DEFAULT_ROOT_LEVELS  # line levels that can make a root
    signals: tuple[int, ...] = ()  # fatal signals (by number) that mean this failure
    groups: tuple[str, ...] = ()  # named groups of causes it belongs to
    verdict: Verdict = Verdict.FAILED  # how a run ends when this is its root cause
    symptom_groups: tuple[str, ...] = ()  # the groups its symptom_of named (before expansion)
    symptom_by_group: tuple[str, ...] = ()  # causes it has only as members of those groups
    builtin: bool = True  # False: from a user's folder, so its regexes are not linted: every
    # search runs under MATCH_SECONDS, whatever the line's length

    def is_failure(self, count: int = 1) -> bool:
        """Whether `count` matching lines make a failure that can be a root cause (warnings
        and info lines are context only; some signatures need many lines, e.g. overflow
        storms)."""
        return self.severity in ("critical", "error") and count >= self.min_count

    def search(self, text: str, body: str) -> regex.Match[str] | None:
        """The first pattern match in a line's body (or, failing that, its whole text)."""
        if not any(k in text for k in self.keywords):
            return None
        if not self.patterns:
            return _KEYWORD_ONLY.match(body)
        for pattern in self.patterns:
            found = search_line(pattern, text, body, always_limit=not self.builtin)
            if found is not None:
                return found
        return None


    def search_cut(self, body: str) -> tuple[tuple[str, str], ...] | None:
        """The captures of a pattern that `body` holds or begins but stops short of (a
        message cut off at the end of a paste, its keyword perhaps cut too): at least
        CUT_MATCH_CHARS of it, holding some of the pattern's own words (not only what its
        wildcards match)."""
        limit = MATCH_SECONDS if len(body) > LONG_LINE_CHARS else None
        for pattern in self.patterns:
            found = pattern.search(body, partial=True, timeout=limit)
            if found is None or found.end() - found.start() < CUT_MATCH_CHARS:
                continue
            if found.partial and open_ended(pattern, body, found.start()):
                continue
            text = found.group()
            phrases = [p for p in literal_phrases(pattern.pattern) if len(p.strip()) >= 4]
            if any(p in text or _ends_with_start_of(text, p, 6) for p in phrases):
                return tuple((k, v) for k, v in found.groupdict().items() if v is not None)
        return None


_META = set("[](){}|*+?.^$")


def literal_phrases(source: str) -> list[str]:
    """The runs of plain text in a regex (escaped punctuation counts as text; a character
    made optional by a quantifier does not)."""
    phrases, current, i = [], [], 0
    while i < len(source):
        char = source[i]
        if char == "(" and source.startswith("?", i + 1):  # a group header: (?:, (?P<name>
            phrases.append("".join(current))
            current = []
            close = source.find(">", i) + 1 if source.startswith("?P<", i + 1) else i + 3
            i = max(close, i + 3)
            continue
        if char == "\\" and i + 1 < len(source):
            nxt = source[i + 1]
            if nxt.isalnum():  # a class (\d, \s, \b ...): the phrase ends here
                phrases.append("".join(current))
                current = []
            else:
                current.append(nxt)
            i += 2
            continue
        if char in "*?{" and current:
            current.pop()  # the quantified character is optional
        if char in _META:
            phrases.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    phrases.append("".join(current))
    return [p for p in phrases if p.strip()]


def open_ended(pattern: regex.Pattern[str], body: str, start: int) -> bool:
    """Whether the line ends where the pattern has a wildcard (`.*`, `\\S+`): any text,
    even none, could follow, so the line is not a message cut inside the pattern's words."""
    again = pattern.search(body + "\x00", pos=start, partial=True)
    return again is not None and again.start() == start


def _ends_with_start_of(text: str, phrase: str, least: int) -> bool:
    """Whether `text` ends in the first `least` or more characters of `phrase`."""
    return any(text.endswith(phrase[:size]) for size in range(least, len(phrase)))


def completed_keyword(body: str, keywords: Iterable[tuple[str, frozenset[str]]]) -> str | None:
    """The one signature whose keyword the end of `body` begins and breaks off inside a word
    ("KeyboardIn", "No CUDA GP", "OUT_OF_M"): the tail of a message cut short, at least
    CUT_KEYWORD_CHARS long and starting at a word boundary. None when no keyword, or the
    keywords of several signatures, fit."""
    keywords = list(keywords)
    longest = max((len(k) for k, _ in keywords), default=0)
    for size in range(min(len(body), longest - 1), CUT_KEYWORD_CHARS - 1, -1):
        tail = body[-size:]
        if size < len(body) and body[-size - 1].isalnum():
            continue  # not where a word starts
        owners = {sid for keyword, sids in keywords
                  if len(keyword) > size and keyword.startswith(tail)
                  and keyword[size].isalnum() and tail[-1].isalnum() for sid in sids}
        if owners:
            return next(iter(owners)) if len(owners) == 1 else None
    return None


_KEYWORD_ONLY = regex.compile(r"")
#: how much of a pattern a cut-off last line must still hold to count as its match
CUT_MATCH_CHARS = 12
#: how much of a keyword a cut-off last line must still hold to name its signature
CUT_KEYWORD_CHARS = 8


#: a line longer than this is matched under a time limit (a user's regex that backtracks)
LONG_LINE_CHARS = 4096
#: the limit: a search past it raises TimeoutError (the catalog's own regexes take
#: milliseconds on 64 KiB lines; `forensics patterns check` times them)
MATCH_SECONDS = 0.1


def search_line(pattern: regex.Pattern[str], text: str, body: str,
                always_limit: bool = False) -> regex.Match[str] | None:
    """One pattern on a line: its body (prefixes stripped) first, then its whole text. On a
    line longer than LONG_LINE_CHARS (on any line with `always_limit`), a search past
    MATCH_SECONDS raises TimeoutError."""
    limit = MATCH_SECONDS if always_limit or len(text) > LONG_LINE_CHARS else None
    found = pattern.search(body, timeout=limit)
    if found is None and body is not text:
        found = pattern.search(text, timeout=limit)
    return found


def reserved_lookalike(name: str) -> str | None:
    """The reserved capture name that `name` spells differently (`exit_code`, `Host`), if
    any: such a capture would silently lose its meaning."""
    folded = name.lower().replace("_", "")
    for reserved in RESERVED_CAPTURES:
        plain = reserved.replace("_", "")
        if reserved == "exitcode":  # a family: exitcode, exitcode2, ...
            if folded.startswith(plain) and not name.startswith(reserved):
                return reserved
        elif folded == plain and name != reserved:
            return reserved
    return None


@dataclass(frozen=True, slots=True)
class Catalog:
    """All signatures in force, built-in ones replaced by user ones of the same id."""

    signatures: tuple[Signature, ...]
    digest: str = ""  # changes whenever any signature file in force changes

    def get(self, signature_id: str) -> Signature:
        for signature in self.signatures:
            if signature.id == signature_id:
                return signature
        raise KeyError(signature_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.signatures)


@functools.cache
def builtin_dir() -> Path:
    """The catalog that ships with forensics (inside the wheel, or the source tree); asked
    for each signature loaded, so found once (resolving the path is a system call each)."""
    packaged = Path(__file__).resolve().parent / "patterns"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "patterns"


def user_dirs(extra: tuple[str, ...] | list[str] = ()) -> list[Path]:
    """User catalog folders: FORENSICS_PATTERNS first, then --patterns in order."""
    env = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return [Path(p) for p in (*env, *extra)]


def toml_files(root: Path) -> list[Path]:
    """The `*.toml` files under `root`, sorted; folders that cannot be read, and entries
    that vanish while they are listed (`/proc`), are passed over."""
    return sorted(Path(folder) / name for folder, _, names in os.walk(root)
                  for name in names if name.endswith(".toml"))


def load_catalog(*dirs: str | Path, builtin: bool = True,
                 compile_builtin: bool = False) -> Catalog:
    """Load the built-in catalog, then each folder in `dirs` (later ids replace earlier ones).
    A user's regexes are compiled and checked now; the built-in ones when first used, unless
    `compile_builtin` (the lint).

    Raises CatalogError with `path: field: reason` lines when anything is wrong.
    """
    roots = ([builtin_dir()] if builtin else []) + [Path(d) for d in dirs]
    by_id: dict[str, Signature] = {}
    problems: list[str] = []
    for root in roots:
        if not root.is_dir():
            problems.append(f"{root}: folder: not a folder")
            continue
        seen_here: set[str] = set()
        for path in toml_files(root):
            signature = load_signature(path, root, problems, lazy=not compile_builtin)
            if signature is None:
                continue
            if signature.id in seen_here:
                problems.append(f"{path}: id: duplicate id {signature.id!r}")
                continue
            seen_here.add(signature.id)
            by_id[signature.id] = signature
    by_id = _expand_groups(by_id, problems)
    for signature in by_id.values():
        for key in ("symptom_of", "also_matches", "corroborating_signatures"):
            for other in getattr(signature, key):
                if other != ANY and other not in by_id:
                    problems.append(f"{signature.path}: {key}: unknown signature {other!r}")
    if problems:
        raise CatalogError(problems)
    ordered = sorted(by_id.values(), key=lambda s: (s.category, s.id))
    digest = hashlib.sha256()
    for signature in ordered:
        digest.update(signature.path.read_bytes())
    return Catalog(tuple(ordered), digest.hexdigest()[:16])


def _expand_groups(by_id: dict[str, Signature], problems: list[str]) -> dict[str, Signature]:
    """`group:NAME` in `symptom_of` stands for every signature in group NAME (except the
    symptom itself): relations are written once, as membership, and cannot drift."""
    members: dict[str, list[str]] = {}
    for signature in by_id.values():
        for group in signature.groups:
            members.setdefault(group, []).append(signature.id)
    out = {}
    for sig_id, signature in by_id.items():
        expanded: list[str] = []
        groups: list[str] = []
        for other in signature.symptom_of:
            if not other.startswith(GROUP):
                expanded.append(other)
                continue
            group = other[len(GROUP):]
            groups.append(group)
            if group not in members:
                problems.append(f"{signature.path}: symptom_of: no signature is in group "
                                f"{group!r}")
            expanded += [m for m in sorted(members.get(group, ())) if m != sig_id]
        named = {o for o in signature.symptom_of if not o.startswith(GROUP)}
        out[sig_id] = replace(signature, symptom_of=tuple(dict.fromkeys(expanded)),
                              symptom_groups=tuple(groups),
                              symptom_by_group=tuple(o for o in dict.fromkeys(expanded)
                                                     if o not in named))
    return out


def load_signature(path: Path, root: Path, problems: list[str],
                   lazy: bool = False) -> Signature | None:
    """Parse and validate one signature file; problems are appended, None on failure.
    `lazy`: a built-in file's regexes are compiled when first used."""
    data = _read_toml(path, problems)
    if data is None:
        return None
    start = len(problems)
    for key in _REQUIRED:
        if key not in data:
            problems.append(f"{path}: {key}: missing")
    for key in sorted(set(data) - _KNOWN):
        problems.append(f"{path}: {key}: unknown field")
    if len(problems) > start:
        return None
    builtin = root.resolve() == builtin_dir().resolve()
    fields = _Fields(path, data, problems, lazy=lazy and builtin)
    sig_id, category = fields.text("id"), fields.text("category")
    _check_place(fields, sig_id, category, root)
    signature = Signature(
        id=sig_id, title=fields.text("title"), category=category,
        severity=fields.severity(), priority=fields.whole("priority", 0, 100),
        keywords=fields.keywords(), patterns=fields.regexes("patterns"),
        cause=fields.text("cause"), fix=fields.fix(), path=path,
        symptom_of=fields.ids("symptom_of", sig_id),
        also_matches=fields.ids("also_matches", sig_id),
        generic=fields.flag("generic"), min_count=fields.whole("min_count", 1, None, 1),
        corroborating_lines=fields.regexes("corroborating_lines"),
        corroborating_signatures=fields.ids("corroborating_signatures", sig_id),
        if_uncorroborated=fields.if_uncorroborated(), onset_anomaly=fields.onset_anomaly(),
        stalled_collective=fields.flag("stalled_collective"),
        references=fields.references(), examples=fields.strings("examples"),
        counterexamples=fields.strings("counterexamples"),
        roles=fields.choices("roles", LineRole, DEFAULT_ROLES),
        root_levels=fields.choices("root_levels", Level, DEFAULT_ROOT_LEVELS),
        signals=fields.signals(), groups=fields.names("groups"),
        verdict=fields.choices("verdict", Verdict, (Verdict.FAILED,), VERDICTS)[0],
        builtin=builtin,
    )
    return signature if len(problems) == start else None


def _read_toml(path: Path, problems: list[str]) -> dict | None:
    try:
        return tomlfile.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        problems.append(f"{path}: file: cannot read ({err})")
    except tomlfile.TOMLDecodeError as err:
        problems.append(f"{path}: toml: {err}")
    return None


def _check_place(fields: _Fields, sig_id: str, category: str, root: Path) -> None:
    """The id is kebab-case and the file's name; the category is the file's folder."""
    path = fields.path
    if sig_id and not _ID.match(sig_id):
        fields.problem("id", f"{sig_id!r} is not kebab-case")
    if sig_id and sig_id != path.stem:
        fields.problem("id", f"{sig_id!r} differs from the file name {path.stem!r}")
    if path.parent != root and category and category != path.parent.name:
        fields.problem("category", f"{category!r} differs from its folder {path.parent.name!r}")


class _Fields:
    """Typed reads of one signature file's fields: a wrong value appends a
    `path: field: reason` problem and reads as the field's empty value."""

    def __init__(self, path: Path, data: dict, problems: list[str], lazy: bool = False) -> None:
        self.path, self.data, self.problems, self.lazy = path, data, problems, lazy

    def problem(self, key: str, reason: str) -> None:
        self.problems.append(f"{self.path}: {key}: {reason}")

    def text(self, key: str) -> str:
        value = self.data.get(key, "")
        if not isinstance(value, str) or not value.strip():
            self.problem(key, "must be a non-empty string")
            return ""
        return value.strip()

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problem(key, "must be a list of non-empty strings")
            return ()
        return tuple(value)

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            self.problem(key, "must be true or false")
            return False
        return value

    def whole(self, key: str, low: int, high: int | None, default: int = 0) -> int:
        value = self.data.get(key, default)
        if (isinstance(value, bool) or not isinstance(value, int) or value < low
                or (high is not None and value > high)):
            self.problem(key, f"must be a whole number from {low} to {high}" if high is not None
                         else f"must be a whole number of at least {low}")
            return default
        return value

    def severity(self) -> Severity:
        value = self.data["severity"]
        if value not in SEVERITIES:
            self.problem("severity", f"{value!r} is not one of {', '.join(SEVERITIES)}")
            return Severity.INFO
        return Severity(value)

    def keywords(self) -> tuple[str, ...]:
        keywords = self.strings("keywords")
        if not keywords:
            self.problem("keywords", "at least one keyword is needed")
        for keyword in keywords:
            if "\n" in keyword or "\r" in keyword:
                self.problem("keywords", f"{keyword!r} spans lines")
        return keywords

    def regexes(self, key: str) -> Patterns:
        """Regexes (compiled when first used, if `lazy`) whose capture names do not misspell
        a reserved one."""
        if self.lazy:
            return Patterns(self.strings(key))
        out = []
        for source in self.strings(key):
            try:
                out.append(regex.compile(source))
            except regex.error as err:
                self.problem(key, f"{source!r} does not compile ({err})")
                continue
            for name in out[-1].groupindex:
                reserved = reserved_lookalike(name)
                if reserved is not None:
                    self.problem(key, f"capture {name!r} looks like the reserved name "
                                      f"{reserved!r}; spell it exactly or rename it")
        return Patterns(tuple(p.pattern for p in out), tuple(out))

    def ids(self, key: str, own_id: str) -> tuple[str, ...]:
        """Other signatures' ids (their existence is checked once all files are loaded)."""
        out = self.strings(key)
        for other in out:
            if other == ANY and key != "symptom_of":
                self.problem(key, f"{ANY!r} is only meaningful in symptom_of")
            elif other == own_id:
                self.problem(key, "names the signature itself")
        return out

    def fix(self) -> tuple[FixItem, ...]:
        """Bullets, whose tags name known stacks."""
        items, problems = parse_fix(self.text("fix"))
        for problem in problems:
            self.problem("fix", problem)
        return items

    def if_uncorroborated(self) -> str:
        value = self.data.get("if_uncorroborated", "")
        if not isinstance(value, str):
            self.problem("if_uncorroborated", "must be a string")
            return ""
        if value.strip() and not (self.data.get("corroborating_lines")
                                  or self.data.get("corroborating_signatures")):
            self.problem("if_uncorroborated", "needs corroborating_lines or "
                         "corroborating_signatures (it is said when neither is found)")
        for placeholder in sorted(set(_PLACEHOLDER.findall(value)) - _PLACEHOLDERS):
            self.problem("if_uncorroborated", f"unknown placeholder {placeholder}; only "
                         "{host} and {time} are filled in")
        return value.strip()

    def onset_anomaly(self) -> str:
        """A kebab-case name; `patterns check` tells whether the health rules produce it."""
        value = self.data.get("onset_anomaly", "")
        if not isinstance(value, str) or (value and not _ID.match(value)):
            self.problem("onset_anomaly", 'must be an anomaly kind (a kebab-case string such '
                         'as "nan")')
            return ""
        return value

    def references(self) -> tuple[str, ...]:
        references = self.strings("references")
        for reference in references:
            if not reference.startswith(("https://", "http://")):
                self.problem("references", f"{reference!r} is not an http(s) address")
        return references

    def choices(self, key: str, enum: type[Enum], default: tuple, allowed: tuple = ()) -> tuple:
        """Names from an enum (a list of them, or one string), default when absent."""
        if key not in self.data:
            return default
        value = self.data[key]
        values = [value] if isinstance(value, str) else value
        allowed = allowed or tuple(enum)
        names = ", ".join(str(a) for a in allowed)
        if not isinstance(values, list) or not values or not all(
                isinstance(v, str) and v in [str(a) for a in allowed] for v in values):
            self.problem(key, f"must be one or more of {names}")
            return default
        return tuple(enum(v) for v in values)

    def signals(self) -> tuple[int, ...]:
        names = self.strings("signals")
        for name in names:
            if name not in SIGNAL_NAMES:
                self.problem("signals", f"{name!r} is not one of {', '.join(SIGNAL_NAMES)}")
        return tuple(SIGNAL_NAMES[n] for n in names if n in SIGNAL_NAMES)

    def names(self, key: str) -> tuple[str, ...]:
        out = self.strings(key)
        for name in out:
            if not _ID.match(name):
                self.problem(key, f"{name!r} is not kebab-case")
        return out
