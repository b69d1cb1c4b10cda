"""Load and validate the signature catalog: `patterns/<category>/<id>.toml`, one signature
per file, the id being the file name."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import regex

from forensics.errors import CatalogError
from forensics.model import Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SEVERITIES = tuple(s.value for s in Severity)
ANY = "*"
ENV_VAR = "FORENSICS_PATTERNS"
_ID = regex.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_REQUIRED = ("id", "title", "category", "severity", "priority", "keywords", "cause", "fix")
_KNOWN = {*_REQUIRED, "symptom_of", "also_matches", "patterns", "generic",
          "min_count", "corroborating_lines", "corroborating_signatures", "if_uncorroborated",
          "onset_anomaly", "stalled_collective", "references",
          "examples", "counterexamples"}
#: named captures the diagnosis reads (any other named capture is a detail in the report);
#: every capture whose name starts with `exitcode` is an exit status
RESERVED_CAPTURES = ("exitcode", "node", "host", "time", "exception_type")
_PLACEHOLDER = regex.compile(r"\{[^{}]*\}")
_PLACEHOLDERS = {"{host}", "{time}"}


@dataclass(frozen=True, slots=True)
class Signature:
    """One known failure: how to spot it, what it means and what to change."""

    id: str
    title: str
    category: str
    severity: Severity
    priority: int
    keywords: tuple[str, ...]
    patterns: tuple[regex.Pattern[str], ...]
    cause: str
    fix: str
    path: Path
    symptom_of: tuple[str, ...] = ()
    also_matches: tuple[str, ...] = ()
    generic: bool = False
    min_count: int = 1
    corroborating_lines: tuple[regex.Pattern[str], ...] = ()
    corroborating_signatures: tuple[str, ...] = ()
    if_uncorroborated: str = ""
    onset_anomaly: str = ""  # its step is the first step with this anomaly kind (e.g. nan)
    stalled_collective: bool = False  # a Flight Recorder dump names its rank
    references: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    counterexamples: tuple[str, ...] = ()

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
            found = search_line(pattern, text, body)
            if found is not None:
                return found
        return None


_KEYWORD_ONLY = regex.compile(r"")


def search_line(pattern: regex.Pattern[str], text: str, body: str) -> regex.Match[str] | None:
    """One pattern on a line: its body (prefixes stripped) first, then its whole text."""
    found = pattern.search(body)
    if found is None and body is not text:
        found = pattern.search(text)
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


def builtin_dir() -> Path:
    """The catalog that ships with forensics (inside the wheel, or the source tree)."""
    packaged = Path(__file__).resolve().parent / "patterns"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "patterns"


def user_dirs(extra: tuple[str, ...] | list[str] = ()) -> list[Path]:
    """User catalog folders: FORENSICS_PATTERNS first, then --patterns in order."""
    env = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return [Path(p) for p in (*env, *extra)]


def load_catalog(*dirs: str | Path, builtin: bool = True) -> Catalog:
    """Load the built-in catalog, then each folder in `dirs` (later ids replace earlier ones).

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
        for path in sorted(root.rglob("*.toml")):
            signature = load_signature(path, root, problems)
            if signature is None:
                continue
            if signature.id in seen_here:
                problems.append(f"{path}: id: duplicate id {signature.id!r}")
                continue
            seen_here.add(signature.id)
            by_id[signature.id] = signature
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


def load_signature(path: Path, root: Path, problems: list[str]) -> Signature | None:
    """Parse and validate one signature file; problems are appended, None on failure."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        problems.append(f"{path}: file: cannot read ({err})")
        return None
    except tomllib.TOMLDecodeError as err:
        problems.append(f"{path}: toml: {err}")
        return None
    start = len(problems)
    for key in _REQUIRED:
        if key not in data:
            problems.append(f"{path}: {key}: missing")
    for key in sorted(set(data) - _KNOWN):
        problems.append(f"{path}: {key}: unknown field")
    if len(problems) > start:
        return None

    def text(key: str) -> str:
        value = data.get(key, "")
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{path}: {key}: must be a non-empty string")
            return ""
        return value.strip()

    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            problems.append(f"{path}: {key}: must be a list of non-empty strings")
            return ()
        return tuple(value)

    sig_id, title, category = text("id"), text("title"), text("category")
    cause, fix = text("cause"), text("fix")
    severity = data["severity"]
    priority = data["priority"]
    keywords = strings("keywords")
    if sig_id and not _ID.match(sig_id):
        problems.append(f"{path}: id: {sig_id!r} is not kebab-case")
    if sig_id and sig_id != path.stem:
        problems.append(f"{path}: id: {sig_id!r} differs from the file name {path.stem!r}")
    if path.parent != root and category and category != path.parent.name:
        problems.append(f"{path}: category: {category!r} differs from its folder "
                        f"{path.parent.name!r}")
    if severity not in SEVERITIES:
        problems.append(f"{path}: severity: {severity!r} is not one of {', '.join(SEVERITIES)}")
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 100:
        problems.append(f"{path}: priority: must be a whole number from 0 to 100")
    if not keywords:
        problems.append(f"{path}: keywords: at least one keyword is needed")
    for keyword in keywords:
        if "\n" in keyword or "\r" in keyword:
            problems.append(f"{path}: keywords: {keyword!r} spans lines")
    def compiled(key: str) -> tuple[regex.Pattern[str], ...]:
        out = []
        for source in strings(key):
            try:
                out.append(regex.compile(source))
            except regex.error as err:
                problems.append(f"{path}: {key}: {source!r} does not compile ({err})")
                continue
            for name in out[-1].groupindex:
                reserved = reserved_lookalike(name)
                if reserved is not None:
                    problems.append(f"{path}: {key}: capture {name!r} looks like the reserved "
                                    f"name {reserved!r}; spell it exactly or rename it")
        return tuple(out)

    def ids(key: str) -> tuple[str, ...]:
        out = strings(key)
        for other in out:
            if other == ANY and key != "symptom_of":
                problems.append(f"{path}: {key}: {ANY!r} is only meaningful in symptom_of")
            elif other == sig_id:
                problems.append(f"{path}: {key}: names the signature itself")
        return out

    patterns, corroborating_lines = compiled("patterns"), compiled("corroborating_lines")
    for key in ("generic", "stalled_collective"):
        if not isinstance(data.get(key, False), bool):
            problems.append(f"{path}: {key}: must be true or false")
    min_count = data.get("min_count", 1)
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
        problems.append(f"{path}: min_count: must be a whole number of at least 1")
    symptom_of, also_matches = ids("symptom_of"), ids("also_matches")
    corroborating_signatures = ids("corroborating_signatures")
    if_uncorroborated = data.get("if_uncorroborated", "")
    if not isinstance(if_uncorroborated, str):
        problems.append(f"{path}: if_uncorroborated: must be a string")
        if_uncorroborated = ""
    elif if_uncorroborated.strip() and not (data.get("corroborating_lines")
                                            or data.get("corroborating_signatures")):
        problems.append(f"{path}: if_uncorroborated: needs corroborating_lines or "
                        f"corroborating_signatures (it is said when neither is found)")
    for placeholder in sorted(set(_PLACEHOLDER.findall(if_uncorroborated)) - _PLACEHOLDERS):
        problems.append(f"{path}: if_uncorroborated: unknown placeholder {placeholder}; "
                        f"only {{host}} and {{time}} are filled in")
    onset_anomaly = data.get("onset_anomaly", "")
    if not isinstance(onset_anomaly, str) or (onset_anomaly and not _ID.match(onset_anomaly)):
        problems.append(f"{path}: onset_anomaly: must be an anomaly kind (a kebab-case "
                        f"string such as \"nan\")")
    references, examples = strings("references"), strings("examples")
    for reference in references:
        if not reference.startswith(("https://", "http://")):
            problems.append(f"{path}: references: {reference!r} is not an http(s) address")
    counterexamples = strings("counterexamples")
    if len(problems) > start:
        return None
    return Signature(
        id=sig_id, title=title, category=category, severity=Severity(severity),
        priority=priority,
        keywords=keywords, patterns=patterns, cause=cause, fix=fix, path=path,
        symptom_of=symptom_of, also_matches=also_matches,
        generic=data.get("generic", False), min_count=min_count,
        corroborating_lines=corroborating_lines, corroborating_signatures=corroborating_signatures,
        if_uncorroborated=if_uncorroborated.strip(), onset_anomaly=onset_anomaly,
        stalled_collective=bool(data.get("stalled_collective", False)),
        references=references, examples=examples, counterexamples=counterexamples,
    )
