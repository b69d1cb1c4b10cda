"""`forensics patterns check`: the catalog linted like code. Every example must match its
own signature (in every engine) and no unrelated one; no counterexample may match; every
regex must be matched by one of its signature's own examples; and the named captures the
diagnosis reads must hold what it expects in every example that sets them."""

from __future__ import annotations

import time

import regex

from forensics.catalog import ANY, KILLS_A_RANK, Catalog, Signature, search_line
from forensics.diagnosis.findings import announced
from forensics.errors import CatalogError
from forensics.inputs.sources import Source
from forensics.lines.engine import available_engines
from forensics.lines.linepass import LinePass, LinePlan, compile_plan, line_pass
from forensics.lines.signals import signal_of
from forensics.metrics.health import anomaly_kinds, rule_problems
from forensics.model import Token
from forensics.stacks import fix_problems
from forensics.timeparse import to_epoch

#: the adversarial line every regex must get through quickly (see `backtracking_problems`)
ADVERSARIAL_CHARS = 64 * 1024
#: a regex slower than this on an adversarial line is reported, whatever its growth ...
SLOW_SECONDS = 1.0
#: ... and so is one slower than this whose time grows faster than the line's length
WATCHED_SECONDS = 0.05
_WILDCARD_GAP = regex.compile(r"(?<!\\)(?<!\[[^\]]*)\.[*+]\??")
MIN_EXAMPLES = 2
MIN_COUNTEREXAMPLES = 1
_WHOLE_NUMBER = regex.compile(r"^[+-]?\d+$")
_DOTTED_NAME = regex.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


def example_pass(text: str, plan: LinePlan) -> LinePass:
    """`text` run through the line pass as a whole log."""
    return line_pass(Source("<example>", data=text.encode("utf-8")), plan)


def example_tokens(text: str, plan: LinePlan) -> list[Token]:
    """The flagged lines of `text`, run as a whole log."""
    return example_pass(text, plan).tokens


def matched_signatures(text: str, catalog: Catalog, plan: LinePlan) -> frozenset[str]:
    """The signature ids whose patterns match somewhere in `text` (run as a whole log)."""
    return frozenset(m.signature for token in example_tokens(text, plan) for m in token.matches)


def related(a: Signature, b: Signature) -> bool:
    """Signatures that may legitimately fire on the same line."""
    return (b.generic or a.generic or b.id in a.also_matches or a.id in b.also_matches
            or b.id in a.symptom_of or a.id in b.symptom_of)


def capture_problem(name: str, value: str) -> str | None:
    """Why a captured value cannot mean what its reserved name says (None when it can)."""
    if name.startswith("exitcode") and not _WHOLE_NUMBER.match(value):
        return "an exit status must be a whole number"
    if name == "exception_type" and not _DOTTED_NAME.match(value):
        return "an exception type must be a dotted Python name"
    if name == "time" and to_epoch(value) is None:
        return "a time must be a timestamp with a date"
    return None


def check_catalog(catalog: Catalog, engines: list[str] | None = None) -> list[str]:
    """Every lint problem as a `path: field: reason` line (empty when the catalog is clean)."""
    problems: list[str] = []
    by_id = {s.id: s for s in catalog.signatures}
    plans = {name: compile_plan(catalog, name) for name in (engines or available_engines())}
    problems += rule_problems()  # health.toml: loads, and its rules flag their examples
    try:
        kinds = anomaly_kinds()
    except CatalogError:  # health.toml itself is broken (said above)
        kinds = frozenset()
    for signature in catalog.signatures:
        problems += _field_problems(signature, kinds)
        announcing: set[tuple[int, int]] = set()
        hits = _example_problems(signature, by_id, plans, problems, announcing)
        problems += regex_problems(signature, hits)
        problems += backtracking_problems(signature)
        problems += level_problems(signature, hits, announcing)
        for index, counter in enumerate(signature.counterexamples):
            for name, plan in plans.items():
                if signature.id in matched_signatures(counter, catalog, plan):
                    problems.append(f"{signature.path}: counterexamples[{index}]: matches "
                                    f"({name} engine)")
    return problems


#: a keyword that is a number this short matches counters, steps and bars ("401/5000")
MIN_NUMBER_KEYWORD = 6
#: a one-byte keyword flags nearly every line (and the engine compiles a short one as its
#: extensions by the byte before it, 255 of them)
MIN_KEYWORD_BYTES = 2


def _field_problems(signature: Signature, kinds: frozenset[str]) -> list[str]:
    """What the lint asks of a signature beyond loading: enough examples and references, a
    regex, an `onset_anomaly` the health rules produce (`kinds`; empty: not known)."""
    where = signature.path
    problems = []
    if len(signature.examples) < MIN_EXAMPLES:
        problems.append(f"{where}: examples: needs at least {MIN_EXAMPLES} true examples")
    if len(signature.counterexamples) < MIN_COUNTEREXAMPLES:
        problems.append(f"{where}: counterexamples: needs at least one near miss")
    if not signature.references:
        problems.append(f"{where}: references: needs at least one reference")
    for index, keyword in enumerate(signature.keywords):
        if keyword.isdigit() and len(keyword) < MIN_NUMBER_KEYWORD:
            problems.append(f"{where}: keywords[{index}]: {keyword!r} is a short number, found "
                            f"in step counters and progress bars on every line of a log; use "
                            f"the words around it")
        elif len(keyword.encode("utf-8")) < MIN_KEYWORD_BYTES:
            problems.append(f"{where}: keywords[{index}]: {keyword!r} is a single byte, found "
                            f"on nearly every line; use the words around it")
    if not signature.patterns:
        problems.append(f"{where}: patterns: none, so any line holding a keyword matches; "
                        f"add a regex that says what else the line must hold")
    if (signature.is_failure() and KILLS_A_RANK not in signature.groups
            and KILLS_A_RANK not in signature.symptom_groups and ANY not in signature.symptom_of):
        problems.append(f"{where}: groups: a failure that ends its process belongs to "
                        f"{KILLS_A_RANK!r} (so the NCCL timeouts it causes on other ranks read "
                        f"as its symptoms), unless it is itself a symptom of that group or of "
                        f"\"*\"")
    captures = {name for pattern in signature.patterns for name in pattern.groupindex}
    problems += [f"{where}: fix: {problem}" for problem in fix_problems(signature.fix, captures)]
    if signature.onset_anomaly and kinds and signature.onset_anomaly not in kinds:
        problems.append(f"{where}: onset_anomaly: {signature.onset_anomaly!r} is not an "
                        f"anomaly kind of the health rules ({', '.join(sorted(kinds))})")
    return problems


def _example_problems(signature: Signature, by_id: dict[str, Signature],
                      plans: dict[str, LinePlan], problems: list[str],
                      announcing: set[tuple[int, int]]) -> dict[tuple[int, int, str], Token]:
    """Each example must hold a keyword and match its signature, and no unrelated one, in
    every engine (problems are appended). Returns the example lines the signature matched;
    `announcing` gets those that announce a cut-off traceback (see `announced`)."""
    where = signature.path
    hits: dict[tuple[int, int, str], Token] = {}
    for index, example in enumerate(signature.examples):
        signalled = signal_of(example) in signature.signals
        if not signalled and not any(k in example for k in signature.keywords):
            problems.append(f"{where}: examples[{index}]: holds none of the keywords and "
                            f"reports none of its signals")
        for name, plan in plans.items():
            lines = example_pass(example, plan)
            tokens = lines.tokens
            heralds = announced(tokens, lines.tracebacks)
            matched = frozenset(m.signature for token in tokens for m in token.matches)
            if signature.id not in matched:
                problems.append(f"{where}: examples[{index}]: does not match ({name} engine)")
            for other in sorted(matched - {signature.id}):
                if not related(signature, by_id[other]):
                    problems.append(f"{where}: examples[{index}]: also matches unrelated "
                                    f"signature {other!r} ({name} engine)")
            for token in tokens:
                if any(m.signature == signature.id for m in token.matches):
                    hits.setdefault((index, token.line, token.text), token)
                    if (token.source, token.line) in heralds:
                        announcing.add((index, token.line))
    return hits


def level_problems(signature: Signature, hits: dict[tuple[int, int, str], Token],
                   announcing: set[tuple[int, int]] = frozenset()) -> list[str]:
    """A failure's true examples must be lines it can be the root cause from: a line whose
    own level is outside `root_levels` would only ever be context (unless the example shows
    it announcing a cut-off traceback)."""
    if not signature.is_failure():
        return []
    return [f"{signature.path}: examples[{index}]: a {token.level} line can never be its root "
            f"cause (root_levels: {', '.join(str(v) for v in signature.root_levels)})"
            for (index, line, _), token in hits.items()
            if token.level not in signature.root_levels and (index, line) not in announcing]


def unbounded_gaps(source: str) -> list[str]:
    """The `.*` / `.+` wildcards of a regex that more pattern follows: each start of the
    phrase before one scans to the end of the line and back, so a line repeating that phrase
    costs time quadratic in its length. A bounded gap (`.{0,500}?`) costs a constant."""
    gaps = []
    for found in _WILDCARD_GAP.finditer(source):
        rest = source[found.end():].lstrip(")?$")
        if rest and not rest.startswith("|"):
            gaps.append(found.group())
    return gaps


def adversarial_lines(signature: Signature, size: int = ADVERSARIAL_CHARS) -> list[str]:
    """Lines built to make a backtracking regex slow: each keyword and the start and whole of
    each example, repeated to `size`, and followed by `size` letters or spaces (a phrase that
    begins a match over and over, or once, with the end never coming)."""
    seeds = list(signature.keywords)
    for example in signature.examples[:2]:
        line = example.strip().splitlines()[-1] if example.strip() else example
        seeds += [line[: max(1, len(line) // 2)], line]
    lines = []
    for seed in seeds:
        lines += [(seed * (size // len(seed) + 1))[:size], seed + "a" * size + "!",
                  seed + " " * size + "!"]
    return lines


def _seconds(pattern: regex.Pattern[str], line: str) -> float:
    start = time.perf_counter()
    try:
        pattern.search(line, timeout=SLOW_SECONDS)
    except TimeoutError:
        return SLOW_SECONDS
    return time.perf_counter() - start


def backtracking_problems(signature: Signature) -> list[str]:
    """Regexes that could take seconds on one long line: an unbounded wildcard in the middle
    of a pattern, or, timed on `adversarial_lines` (best of 3), a search over SLOW_SECONDS,
    or over WATCHED_SECONDS and growing more than linearly (timed on a quarter of the line)."""
    problems = []
    for key in ("patterns", "corroborating_lines"):
        for number, pattern in enumerate(getattr(signature, key)):
            where = f"{signature.path}: {key}[{number}]"
            problems += [f"{where}: unbounded `{gap}` before more pattern; bound it "
                         f"(`.{{0,500}}?`)" for gap in unbounded_gaps(pattern.pattern)]
            for line in adversarial_lines(signature):
                if _seconds(pattern, line) < WATCHED_SECONDS:
                    continue
                # best of 3 of each, so that a busy machine does not make a regex look slow
                seconds = min(_seconds(pattern, line) for _ in range(3))
                quarter = min(_seconds(pattern, line[: len(line) // 4]) for _ in range(3))
                if seconds >= SLOW_SECONDS or seconds > 8 * max(quarter, 1e-4):
                    problems.append(f"{where}: took {seconds:.2f} s on a {len(line)}-character "
                                    f"line starting {line[:40]!r} (catastrophic backtracking)")
                    break
    return problems


def regex_problems(signature: Signature, hits: dict[tuple[int, int, str], Token]) -> list[str]:
    """Each regex must match one of the example lines the signature matched (a regex no
    example reaches is untested, or dead), and its reserved captures must make sense there.
    `patterns` run on a line's body, then its text; `corroborating_lines` on its text."""
    problems = []
    where = signature.path
    for key, patterns in (("patterns", signature.patterns),
                          ("corroborating_lines", signature.corroborating_lines)):
        for number, pattern in enumerate(patterns):
            exercised = False
            for (index, _, _), token in hits.items():
                found = (search_line(pattern, token.text, token.body) if key == "patterns"
                         else pattern.search(token.text))
                if found is None:
                    continue
                exercised = True
                for name, value in found.groupdict().items():
                    reason = None if value is None else capture_problem(name, value)
                    if reason is not None:
                        problems.append(f"{where}: examples[{index}]: {key}[{number}] captures "
                                        f"{name} = {value!r}: {reason}")
            if not exercised:
                problems.append(f"{where}: {key}[{number}]: no example matches "
                                f"`{pattern.pattern}`; add a real line it matches, or remove it")
    return problems
