"""Turn the line pass's matches into findings: one hit per (line, signature), generic hits
absorbed by specific ones, then the hits grouped per signature."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

import regex

from forensics.catalog import Catalog, Signature
from forensics.lines.lexer import segments
from forensics.model import Attribution, Evidence, Finding, Level, Token, Traceback
from forensics.timeparse import to_epoch

MAX_EVIDENCE = 5
LOUD_LEVELS = (Level.ERROR, Level.FATAL, Level.UNMARKED)
ANNOUNCE_GAP = 2  # lines between a warning and the traceback it announces (`warnings.warn(`)
HOST_CAPTURES = ("node", "host")  # named captures that say which machine


@dataclass(frozen=True, slots=True)
class Hit:
    """One line that matched one signature."""

    signature: Signature
    token: Token
    order: int
    captures: tuple[tuple[str, str], ...]
    tentative: bool = False  # a cut message that only began the pattern, or a hedge


def hits_of(tokens: Iterable[Token], catalog: Catalog,
            source_order: dict[str, int] | None = None) -> list[Hit]:
    """Every (line, signature) pair the line pass matched, in a job-wide order."""
    by_id = {s.id: s for s in catalog.signatures}
    source_order = source_order or {}
    hits: list[Hit] = []
    for token in tokens:
        order = source_order.get(token.source, 0) * 10**12 + token.line
        for match in token.matches:
            signature = by_id.get(match.signature)
            if signature is not None:
                hits.append(Hit(signature, token, order, match.captures, match.tentative))
    return hits


def absorb_generic(hits: list[Hit], tracebacks: Iterable[Traceback]) -> list[Hit]:
    """Drop hits of generic signatures (e.g. `python-exception`) on a line, or inside a
    traceback, that a specific signature (or a fatal signal the line reports) already
    explains; on a line where a higher-priority signature also fired; and inside tracebacks
    Python printed for an ignored exception."""
    specific = [h for h in hits if not h.signature.generic or _signalled(h)]
    specific_lines = {(h.token.source, h.token.line) for h in specific}
    specific_ranks = {(h.token.source, h.token.line): h.token.who.rank for h in specific}
    best_on_line: dict[tuple[str, int], int] = {}
    for hit in hits:
        where = (hit.token.source, hit.token.line)
        best_on_line[where] = max(best_on_line.get(where, 0), hit.signature.priority)
    explained_spans = [
        (tb.source, tb.start_line, tb.end_line, tb.who.rank) for tb in tracebacks
        if tb.ignored or any(src == tb.source and tb.start_line <= line <= tb.end_line
                             and specific_ranks[(src, line)] == tb.who.rank
                             for src, line in specific_lines)
    ]
    def explained(hit: Hit) -> bool:
        where = (hit.token.source, hit.token.line)
        if where in specific_lines or best_on_line[where] > hit.signature.priority:
            return True
        return any(src == where[0] and start <= where[1] <= end and rank == hit.token.who.rank
                   for src, start, end, rank in explained_spans)

    return [h for h in hits if not h.signature.generic or _signalled(h) or not explained(h)]


def _signalled(hit: Hit) -> bool:
    """A hit made by the fatal signal its line reports: the signal is the specific fact
    (a `SignalException: got signal: 15` is SIGTERM, not just an exception)."""
    return captured(hit.captures, "signal")


def captured(captures: Iterable[tuple[str, str]], name: str) -> bool:
    """Whether a match set the named capture (`signal`, `waiting`)."""
    return any(key == name for key, _ in captures)


def _spans(tracebacks: Iterable[Traceback]) -> dict[str, list[tuple[int, int]]]:
    """Each source's traceback line ranges."""
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for tb in tracebacks:
        spans[tb.source].append((tb.start_line, tb.end_line))
    return spans


def _inside(line: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= line <= end for start, end in spans)


def announced(tokens: Iterable[Token], tracebacks: Iterable[Traceback]) -> set[tuple[str, int]]:
    """The warning lines printed just before a traceback whose exception line is missing
    (the paste or the file stops inside the frames): with the exception unknown, the warning
    that announced the crash is the best-stated cause, so it may be the root."""
    cut = {(tb.source, tb.start_line) for tb in tracebacks if tb.cut and not tb.ignored}
    return {(t.source, t.line) for t in tokens if t.level == Level.WARNING
            and any((t.source, t.line + gap) in cut for gap in range(1, ANNOUNCE_GAP + 2))}


def waits_that_went_on(hits: list[Hit], tails: dict[str, list[Evidence]],
                       tracebacks: Iterable[Traceback]) -> set[tuple[str, int]]:
    """The lines that report waiting for something (a `waiting` capture: "Server is not up
    yet. Retrying in 2 s", "has been waiting for ... and may be stuck") after which their
    file went on to print something else: the wait ended, so they are not what ended the
    run. A run stopped while still waiting (nothing but more of them, blank lines or the
    traceback of its stop follows) keeps them."""
    waits: dict[tuple[str, str], list[Hit]] = defaultdict(list)
    for hit in hits:
        if captured(hit.captures, "waiting"):
            waits[(hit.token.source, hit.signature.id)].append(hit)
    spans = _spans(tracebacks)
    went_on: set[tuple[str, int]] = set()
    for (source, _), group in waits.items():
        last = max(h.token.line for h in group)
        repeated = {h.token.line for h in group}
        stopped = [(start, end) for start, end in spans[source] if start > last]
        tail = tails.get(source, [])
        after = [e for e in tail if e.line > last and e.text.strip()
                 and e.line not in repeated and not _inside(e.line, stopped)]
        if after or not any(e.line == last for e in tail):
            went_on |= {(source, h.token.line) for h in group}
    return went_on


def bare_exceptions_went_on(hits: list[Hit], tails: dict[str, list[Evidence]],
                            tracebacks: Iterable[Traceback]) -> set[tuple[str, int]]:
    """The catch-all's exception lines printed without a traceback, above the last lines of
    their file: a library printed the error and the program went on (noise such as
    protobuf's `AttributeError: 'MessageFactory' object has no attribute ...` at every
    import), so such a line is not how the run ended."""
    spans = _spans(tracebacks)
    first_of_tail = {source: tail[0].line for source, tail in tails.items() if tail}
    return {(h.token.source, h.token.line) for h in hits if h.signature.generic
            and h.token.line < first_of_tail.get(h.token.source, 0)
            and not _inside(h.token.line, spans[h.token.source])
            and not (h.token.context_before
                     and _QUOTED_FRAME.search(h.token.context_before[-1]))}


def logged_exceptions_went_on(hits: list[Hit], tails: dict[str, list[Evidence]],
                              tracebacks: Iterable[Traceback]) -> set[tuple[str, int]]:
    """The catch-all's exception lines that a logger printed: every line of the traceback
    behind the logger's prefix (`ERROR 08-18 ... ValueError:`), or the traceback right
    under a logger's error line (`logging.exception`: `[...][ERROR] - Failed to submit` and
    its message, then the raw traceback). The program caught the exception and logged it.
    Such a line is how the run ended only while nothing but shutdown follows it: above its
    file's last lines, or with a later last line that shows the program still at work (an
    info line that is not about stopping, or a progress bar), the program went on."""
    starts = {(tb.source, tb.final.line): tb.start_line for tb in tracebacks
              if tb.final is not None}
    lexed: dict[str, list[tuple[int, Level, bool]]] = {}  # each tail read once per source
    went_on = set()
    for hit in hits:
        token = hit.token
        if not hit.signature.generic:
            continue
        if token.source not in lexed:
            lexed[token.source] = [(e.line, *_level_and_work(e.text))
                                   for e in tails.get(token.source, ())]
        tail = lexed[token.source]
        start = starts.get((token.source, token.line))
        logged = token.level in _LOGGED_LEVELS or (start is not None and any(
            start - LOGGED_GAP <= line < start and level == Level.ERROR
            for line, level, _ in tail))
        if logged and ((tail and token.line < tail[0][0])
                       or any(line > token.line and at_work for line, _, at_work in tail)):
            went_on.add((token.source, token.line))
    return went_on


def _level_and_work(text: str) -> tuple[Level, bool]:
    """A line's level, and whether it shows a program still working: an info line not
    about stopping, or a progress bar."""
    level = segments(text)[-1].level
    return level, "%|" in text or (level == Level.INFO and not _STOPPING.search(text))


LOGGED_GAP = 8  # lines of a logged error's message above its traceback
_LOGGED_LEVELS = frozenset({Level.ERROR, Level.WARNING, Level.INFO})
_STOPPING = regex.compile(r"(?i)shut(?:ting)?\s?down|stopp|exit|terminat|abort|kill|"
                          r"finished server process|cleanup|clean up")


def recovered_metrics_went_on(hits: list[Hit], tails: dict[str, list[Evidence]]
                              ) -> set[tuple[str, int]]:
    """Lines that report a metric as NaN or inf (the `nonfinite` capture names it) in a
    file whose last lines report the same metric as a finite number again: the run
    recovered (an early NaN before the first update, a skipped step), so the line is not
    how it ended."""
    went_on = set()
    finite_patterns: dict[str, regex.Pattern[str]] = {}
    for hit in hits:
        metric = dict(hit.captures).get("nonfinite")
        if metric is None:
            continue
        if metric not in finite_patterns:
            name = regex.escape(metric)
            finite_patterns[metric] = regex.compile(rf"(?:\b{name}\s*[=:]\s*|'{name}': )'?[-+]?\d")
        finite = finite_patterns[metric]
        if any(e.line > hit.token.line and finite.search(e.text)
               for e in tails.get(hit.token.source, ())):
            went_on.add((hit.token.source, hit.token.line))
    return went_on


# the line above an exception that ends a traceback whose header was not kept: a frame
# (`File "x.py", line 3`), the source it quotes, or its `^^^^` markers, all indented
_QUOTED_FRAME = regex.compile(r'File "|(?:^|\]:)\s{2,}\S')


def group_findings(hits: list[Hit], year: int = 1970,
                   announcing: set[tuple[str, int]] = frozenset(),
                   went_on: set[tuple[str, int]] = frozenset()) -> list[Finding]:
    """One finding per signature (a generic one: per exception type), in the order of each
    one's first hit. `year` completes timestamps that print none (glog); `announcing` lines
    may make a root whatever their level (see `announced`), `went_on` lines never do (see
    `waits_that_went_on`, `bare_exceptions_went_on`, `logged_exceptions_went_on`,
    `recovered_metrics_went_on`)."""
    grouped: dict[tuple[str, str], list[Hit]] = defaultdict(list)
    for hit in sorted(hits, key=lambda h: h.order):
        kind = dict(hit.captures).get("exception_type", "") if hit.signature.generic else ""
        grouped[(hit.signature.id, kind)].append(hit)
    findings = []
    for group in grouped.values():
        first = group[0]
        signature = first.signature
        ranks = sorted({h.token.who.rank for h in group if h.token.who.rank is not None})
        hosts = sorted({h.token.who.host for h in group if h.token.who.host}
                       | {value for h in group for key, value in h.captures
                          if key in HOST_CAPTURES and value not in ("...", "")})
        evidence: list[Evidence] = []
        seen_text: set[str] = set()
        for hit in group:
            if hit.token.body in seen_text:
                continue
            seen_text.add(hit.token.body)
            evidence.append(_evidence(hit.token))
            if len(evidence) >= MAX_EVIDENCE:
                break
        findings.append(Finding(
            signature=signature.id, title=signature.title, category=signature.category,
            severity=signature.severity, count=len({(h.token.source, h.token.line) for h in group}),
            ranks=tuple(ranks), hosts=tuple(hosts), first=evidence[0],
            evidence=tuple(evidence), captures=first.captures, who=_who(first),
            order=first.order,
            when=to_epoch(first.token.who.time or dict(first.captures).get("time"), year),
            confirmed=_confirmed(signature, group),
            exit_codes=_exit_codes(group),
            rootable=len({(h.token.source, h.token.line) for h in group
                          if (h.token.level in signature.root_levels
                              or (h.token.source, h.token.line) in announcing)
                          and (h.token.source, h.token.line) not in went_on}),
            loud=any(h.token.level in LOUD_LEVELS for h in group),
            definite=not all(h.tentative for h in group),
        ))
    return findings


def _who(hit: Hit) -> Attribution:
    """Who printed the first hit: its prefixes, else the machine its captures name."""
    who = hit.token.who
    if who.host is None:
        host = next((v for k, v in hit.captures if k in HOST_CAPTURES and v not in ("...", "")),
                    None)
        if host is not None:
            who = replace(who, host=host)
    return who


def _exit_codes(group: list[Hit]) -> tuple[int, ...]:
    codes = {value for hit in group for key, value in hit.captures if key.startswith("exitcode")}
    return tuple(sorted(int(c) for c in codes if c.lstrip("-").isdigit()))


def _confirmed(signature: Signature, group: list[Hit]) -> bool | None:
    """Whether the signature's own lines corroborate it (None: it needs no corroboration)."""
    if not signature.corroborating_lines and not signature.corroborating_signatures:
        return None
    return any(p.search(hit.token.text) for hit in group for p in signature.corroborating_lines)


def _evidence(token: Token) -> Evidence:
    return Evidence(token.source, token.line, token.text, token.context_before,
                    token.context_after, token.body)


def unexplained_death(findings: list[Finding], tracebacks: Iterable[Traceback],
                      catalog: Catalog, completed: bool = False,
                      went_on: set[tuple[str, int]] = frozenset()) -> list[Finding]:
    """How a process visibly ended when no failure was found: the last uncaught traceback
    becomes the catch-all finding (its exception line is the evidence), so a run that died
    is never reported as `unknown`. Empty when a failure was found, the run said it
    completed, or nothing died (a traceback whose exception line the program went on past,
    `went_on`, ended nothing)."""
    if completed or any(catalog.get(f.signature).is_failure(f.root_lines) for f in findings):
        return []
    ended = [tb for tb in tracebacks if not tb.ignored and not (
        tb.final is not None and (tb.source, tb.final.line) in went_on)]
    # the catalog's catch-all for exceptions: the generic signature that captures their type
    catch_all = next((s for s in catalog.signatures if s.generic and any(
        "exception_type" in p.groupindex for p in s.patterns)), None)
    if not ended or catch_all is None:
        return []
    last = ended[-1]
    part = last.final
    if part is None:  # the frames were printed, the exception line was cut off
        kind, line, text = None, last.start_line, last.header
    else:
        kind, line = part.exception_type, part.line
        text = f"{part.exception_type}: {part.message}" if part.message else kind
    captures = (("exception_type", kind),) if kind else ()
    # an exception line no token held (inferred from a cut traceback's `assert` frame, or
    # named by its header) is still judged by the catalog before the catch-all takes it
    judged = next(((s, m) for s in catalog.signatures if not s.generic and kind
                   and (m := s.search(text, text)) is not None), None)
    signature = judged[0] if judged else catch_all
    if judged:
        captures += tuple((k, v) for k, v in judged[1].groupdict().items() if v is not None)
    if last.cut:
        captures += (("traceback", "cut off before its exception line" if kind is None
                      else "cut off before its last exception line"),)
    evidence = Evidence(last.source, line, text, body=text)
    return [Finding(
        signature=signature.id, title=signature.title, category=signature.category,
        severity=signature.severity, count=1, ranks=(last.who.rank,) if last.who.rank
        is not None else (), hosts=(last.who.host,) if last.who.host else (), first=evidence,
        evidence=(evidence,), captures=captures,
        who=last.who, exception_type=kind, order=10**15 + line,
    )]
