"""The line pass: one streaming pass over one source. The engine flags lines, the lexer
cleans them, each candidate signature's regex runs once (its captures kept on the token),
and the block walkers assemble what spans several lines. Only flagged lines reach Python."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from forensics.catalog import LONG_LINE_CHARS, Catalog, Signature, completed_keyword
from forensics.inputs.layouts import checkpoint_step
from forensics.inputs.sources import (
    TAIL_BYTES,
    ReadStatus,
    Source,
    read_metric_file,
    stored_size,
)
from forensics.lines.blocks import (
    EVENT_KEYWORDS,
    METRICS_KEYS,
    FailureBlockWalker,
    TracebackWalker,
    continues_warning,
    exception_name,
    handled,
    keep_bounded,
    line_role,
    raised_exception,
    worker_exit,
)
from forensics.lines.engine import Engine, Keyword, build_engine
from forensics.lines.lexer import Segment, clean, segments
from forensics.lines.prefetch import Prepared, Reading, prepared_blocks
from forensics.lines.records import BULK_MIN, BlockDicts, classify, read_run
from forensics.lines.signals import HEDGED, signal_name, signal_of
from forensics.metrics.fileshapes import FILE_SHAPES
from forensics.metrics.lineshapes import LineShape, line_record
from forensics.metrics.progress import ProgressTracker
from forensics.metrics.shapes import checkpoint_saved
from forensics.metrics.table import TRAIN, MetricsTable, step_kind
from forensics.model import (
    NO_ATTRIBUTION,
    Attribution,
    Checkpoint,
    Evidence,
    Level,
    LineRole,
    SignatureMatch,
    SourceInfo,
    Token,
    Traceback,
    WorkerFailure,
)
from forensics.text import shorten

TAIL_LINES = 40
CONTEXT_LINES = 3
CONTEXT_CHARS = 400
TAIL_CHARS = 600
MAX_LINES_PER_SIGNATURE = 500
#: long lines on which a signature's regex may run out of time before it skips long lines
MAX_SLOW_LINES = 8
MAX_FACT_LINES = 200
MAX_DICT_BYTES = 16 * 1024  # the most a pretty-printed metrics dict is read across lines
MEMO_LINES = 4096  # distinct lines whose analysis is remembered
MEMO_LINE_CHARS = 2048
PRINTED_BATCH = 4096  # metrics dicts parsed together
_MATCH_TAGS = frozenset({"signal", "fact"})  # tags that need no event handling
Captures = tuple[tuple[str, str], ...]
CUT_LINE_BYTES = 8192  # the longest last line read as a message cut short
BLANK_TAIL_LINES = 8  # blank last lines looked past for the last line with text


@dataclass(frozen=True)
class LinePlan:
    """The compiled keyword table: which keyword ids belong to which signature or line tag."""

    engine: Engine
    keyword_signatures: tuple[frozenset[str], ...]
    keyword_tags: tuple[frozenset[str], ...]
    signatures: dict[str, Signature]
    signal_signatures: dict[int, tuple[str, ...]]  # fatal signal -> the signatures it means
    keywords: tuple[tuple[str, frozenset[str]], ...] = ()  # each keyword and its signatures
    keyword_table: tuple[Keyword, ...] = ()  # what the engine was compiled from, by id

    def without(self, muted: frozenset[int]) -> Engine:
        """An engine of the same kind over every keyword but the `muted` ids (their ids
        kept)."""
        ids = [i for i in range(len(self.keyword_table)) if i not in muted]
        return build_engine([self.keyword_table[i] for i in ids], self.engine.name, ids)


def compile_plan(catalog: Catalog, engine: str = "auto") -> LinePlan:
    """Compile every catalog keyword and every lexer keyword into one engine."""
    owners: dict[str, tuple[set[str], set[str]]] = {}
    for signature in catalog.signatures:
        for keyword in signature.keywords:
            owners.setdefault(keyword, (set(), set()))[0].add(signature.id)
    for tag, keywords in EVENT_KEYWORDS.items():
        for keyword in keywords:
            owners.setdefault(keyword, (set(), set()))[1].add(tag)
    table = sorted(owners.items())
    keywords = [Keyword(text.encode("utf-8"), once=not sigs and tags == {"fact"})
                for text, (sigs, tags) in table]
    return LinePlan(
        engine=build_engine(keywords, engine),
        keyword_signatures=tuple(frozenset(sigs) for _, (sigs, _) in table),
        keyword_tags=tuple(frozenset(tags) for _, (_, tags) in table),
        signatures={s.id: s for s in catalog.signatures},
        signal_signatures={number: tuple(s.id for s in catalog.signatures if number in s.signals)
                           for number in {n for s in catalog.signatures for n in s.signals}},
        keywords=tuple((text, frozenset(sigs)) for text, (sigs, _) in table if sigs),
        keyword_table=tuple(keywords),
    )


@dataclass
class LinePass:
    """What one source yielded."""

    info: SourceInfo
    tokens: list[Token]
    tracebacks: list[Traceback]
    worker_failures: list[WorkerFailure]
    metrics: MetricsTable
    progress: dict[int, tuple[int, int]]
    completion: Evidence | None  # the last line that says the run finished
    tail: list[Evidence]
    python_versions: set[str]
    last_time: str | None = None
    last_step_line: int = 0
    checkpoint: Checkpoint | None = None
    trained_on: dict[int, int] = field(default_factory=dict)  # bar total -> training records
    shape_stacks: frozenset[str] = frozenset()  # stacks whose own metric lines were read


class _LineReader:
    def __init__(self, source: Source, plan: LinePlan) -> None:
        self.source = source
        self.plan = plan
        self.tokens: list[Token] = []
        self.failures: list[WorkerFailure] = []
        self.metrics = MetricsTable(source.name)
        self.bars = ProgressTracker()
        self.completion: Evidence | None = None
        self.tracebacks = TracebackWalker(source.name)
        self.block_walker: FailureBlockWalker | None = None
        self.kept_per_signature: dict[str, int] = {}
        self.slow_lines: dict[str, int] = {}  # long lines a signature's regex timed out on
        self.dropped_lines = 0
        self.fact_lines = 0
        self.replaced = 0
        self.last_step_line = 0
        self.checkpoint: Checkpoint | None = None
        self._seen: dict[str, list[tuple[Segment, LineRole, dict[str, Captures]]]] = {}
        self.engine = plan.engine
        self._muted: frozenset[int] = frozenset()
        self._muted_texts: tuple[bytes, ...] = ()
        self._exhausted_since_block = False
        self.printed: list[tuple[int, int | None, str]] = []  # metrics dicts not yet parsed
        self.dicts: BlockDicts | None = None  # the block's candidate metrics dicts
        self.shape_stacks: set[str] = set()
        # the last metrics line read, held while the next may redraw the same step (a bar)
        self.held: tuple[int, int, int | None, dict[str, float | None]] | None = None
        self.default_who = Attribution(rank=source.rank, local_rank=source.local_rank,
                                       time=source.time)

    def who(self, who: Attribution) -> Attribution:
        """A line's attribution, completed by what the file's location says."""
        if self.default_who == NO_ATTRIBUTION:
            return who
        return Attribution(
            rank=who.rank if who.rank is not None else self.default_who.rank,
            local_rank=who.local_rank if who.local_rank is not None
            else self.default_who.local_rank,
            host=who.host, pid=who.pid, time=who.time or self.default_who.time,
        )

    def scan_block(self, prepared: Prepared, first_line: int) -> None:
        """Walk one prepared block, whose first line is the source's `first_line`-th: the
        engine's flagged lines, the metrics dicts in line order among them, the walkers of
        what spans lines, the block's bars."""
        block = prepared.block
        walked_until = block_walked_until = 0
        # a paste may begin inside a traceback, its header cut off above its first frame
        headless = first_line == 1 and self.tracebacks.begin_headless(*_first_line(block))
        if headless or self.tracebacks.active:
            walked_until = self._walk(block, 0, first_line, self.tracebacks.feed)
        if self.block_walker is not None:
            block_walked_until = self._walk(block, 0, first_line, self._feed_block)
        line_no = first_line
        counted_to = 0
        if self._exhausted_since_block:
            self._mute_exhausted()
        for keyword in self._muted_texts:  # lines of signatures past their budget: counted
            self.dropped_lines += block.count(keyword)
        self.dicts = prepared.dicts
        if self.dicts is not None:
            self.dicts.number_lines(first_line)
        self.bars.begin_block(*prepared.redraws)
        for start, end, ids in prepared.hits:
            if self._muted and not (ids := ids - self._muted):
                continue  # a keyword muted after the block was prepared
            line_no += block.count(b"\n", counted_to, start)
            counted_to = start
            if self.dicts is not None and self.dicts.read_to < len(self.dicts.lines) and \
                    self.dicts.lines[self.dicts.read_to] <= line_no:
                self._read_dicts(block, line_no)
            tags: set[str] = set()
            signatures: set[str] = set()
            for keyword_id in ids:
                tags.update(self.plan.keyword_tags[keyword_id])
                signatures.update(self.plan.keyword_signatures[keyword_id])
            if not signatures and tags == {"fact"} and self.fact_lines >= MAX_FACT_LINES:
                continue
            raw = block[start:end].decode("utf-8", "replace")
            if "\ufffd" in raw:
                self.replaced += 1
            if "traceback" in tags and start >= walked_until:
                walked_until = self._walk(block, start, line_no, self.tracebacks.feed)
            if "failure-block" in tags and start >= block_walked_until:
                self.block_walker = FailureBlockWalker(self.source.name, line_no)
                block_walked_until = self._walk(block, start, line_no, self._feed_block)
            self._line(block, start, end, line_no, raw, tags, signatures)
        self._read_dicts(block, None)
        self.bars.finish_block(block, first_line, prepared.newlines)
        self.flush_printed()

    def _read_dicts(self, block: bytes, until: int | None) -> None:
        """Read the block's printed metrics dicts up to line `until` (all when None), so
        that they reach the table in line order among the other metric lines: runs of
        regular records in bulk (`lines.records`), the others one at a time."""
        dicts = self.dicts
        if dicts is None:
            return
        stop = len(dicts.lines) if until is None else \
            int(np.searchsorted(dicts.lines, until, side="right"))
        while dicts.read_to < stop:
            start = dicts.read_to
            if dicts.classified_with != len(self.metrics.bulk_shapes):
                classify(block, dicts, start, self.metrics)
            end = dicts.end_of_run(start, stop)
            if dicts.shape[start] >= 0:
                start = self._read_in_bulk(block, start, end)
            if start < end:
                # an irregular dict may be a new key sequence: learnt at once, with many left
                learn = dicts.shape[start] < 0 and len(dicts.lines) - start > BULK_MIN
                for index in range(start, end):
                    self._dict_at(block, index)
                    if learn:
                        self.flush_printed()
                    if dicts.classified_with != len(self.metrics.bulk_shapes):
                        end = index + 1  # a new shape was learnt: classify the rest again
                        break
            dicts.read_to = end

    def _read_in_bulk(self, block: bytes, start: int, end: int) -> int:
        """Read a run of regular records in bulk when the block draws one bar, from the first
        record after one of its redraws on; returns where the records not read begin (those
        before the block's first bar, or all when it draws several bars)."""
        total = self.bars.single_total(block)
        if total is None:
            return start
        first = start + int(np.searchsorted(self.dicts.braces[start:end], block.find(b"%")))
        for index in range(start, first):  # their step is a bar of the block before
            self._dict_at(block, index)
        if first < end:
            self.flush_printed()  # what came before them, in line order
            read_run(block, self.dicts, first, end, self.metrics, self.bars, total)
            self.last_step_line = max(self.last_step_line, int(self.dicts.lines[end - 1]))
        return end

    def _dict_at(self, block: bytes, index: int) -> None:
        """Queue the block's `index`-th candidate dict if its line is a metrics record,
        with the step of its bar."""
        brace = int(self.dicts.braces[index])
        start = block.rfind(b"\n", 0, brace) + 1
        end = block.find(b"\n", brace)
        end = len(block) if end < 0 else end
        if METRICS_KEYS.search(block, start, end) is None:
            return
        text = block[brace:end].decode("utf-8", "replace")
        self._printed(int(self.dicts.lines[index]), _whole_dict(text, block, end),
                      self.bars.step_at(block, brace, "'eval_" in text))

    def cut_short(self, block: bytes, first_line: int) -> None:
        """The input's last line may be a message cut off before its end (a paste that
        stops mid-word): signatures whose regex it begins get a partial match there."""
        end = len(block.rstrip(b"\r\n"))
        start = block.rfind(b"\n", 0, end) + 1
        for _ in range(BLANK_TAIL_LINES):  # lines left blank once colour codes are gone
            if start == 0 or clean(block[start:end].decode("utf-8", "replace")).strip():
                break
            end = len(block[:start].rstrip(b"\r\n"))
            start = block.rfind(b"\n", 0, end) + 1
        if end - start > CUT_LINE_BYTES:
            return  # a message cut short is a line, not a megabyte of one
        seg = segments(block[start:end].decode("utf-8", "replace"))[-1]
        last = seg.text.rstrip()[-1:]
        if not (last.isalpha() or last == "_"):
            return  # cut mid-word; a number or a bracket may well be where it ends
        if exception_name(seg.body) == seg.body.strip():
            return  # a bare exception class ("AssertionError") is a whole line
        line_no = first_line + block.count(b"\n", 0, start)
        role = line_role(seg.body, "")
        known = next((t for t in self.tokens if t.line == line_no), None)
        have = {m.signature for m in known.matches} if known is not None else set()
        raised = raised_exception(seg.body)
        if raised is not None:  # cut inside `raise X("...`: it still says what was raised
            role = LineRole.EXCEPTION
        matched = tuple(SignatureMatch(s.id, captures, tentative=raised is None)
                        for s in self.plan.signatures.values()
                        if role in s.roles and s.id not in have
                        and (captures := _cut_captures(s, seg.body, raised)) is not None)
        if not matched:
            completed = completed_keyword(seg.body, self.plan.keywords)
            if completed is not None and completed not in have and role in \
                    self.plan.signatures[completed].roles:
                matched = (SignatureMatch(completed, (), tentative=True),)
        if not matched:
            return
        if known is not None:
            self.tokens[self.tokens.index(known)] = replace(
                known, matches=known.matches + matched)
            return
        before, after = _context(block, start, end)
        self.tokens.append(Token(
            source=self.source.name, line=line_no, text=seg.text, body=seg.body,
            tags=frozenset({"cut"}), matches=matched, who=self.who(seg.who),
            context_before=before, context_after=after, level=seg.level, role=role))

    def _feed_block(self, line_no: int, raw: str) -> bool:
        assert self.block_walker is not None
        if self.block_walker.feed(line_no, raw):
            return True
        for failure in self.block_walker.failures:
            keep_bounded(self.failures, failure)
        self.block_walker = None
        return False

    @staticmethod
    def _walk(block: bytes, pos: int, line_no: int, feed) -> int:
        """Feed lines from `pos` to a walker until it wants no more; returns where it stopped."""
        while pos < len(block):
            end = block.find(b"\n", pos)
            end = len(block) if end < 0 else end
            wants = feed(line_no, block[pos:end].decode("utf-8", "replace"))
            pos = end + 1
            line_no += 1
            if not wants:
                break
        return pos

    def _line(self, block: bytes, start: int, end: int, line_no: int, raw: str,
              tags: set[str], signatures: set[str]) -> None:
        events = bool(tags - _MATCH_TAGS)
        for seg, role, found in self._analysed(block, start, raw, signatures, "signal" in tags):
            if events:
                self._events(tags, seg, line_no, end, block)
            matched = self._within_budget(found, HEDGED.search(seg.body) is not None)
            level = seg.level
            if matched and (handled(seg.body) or continues_warning(
                    seg.body, _previous_body(block, start), _next_body(block, end))):
                level = Level.WARNING
            fact = "fact" in tags and self.fact_lines < MAX_FACT_LINES
            if not matched and not fact:
                continue
            self.fact_lines += fact
            before, after = (_context(block, start, end) if matched else ((), ()))
            self.tokens.append(Token(
                source=self.source.name, line=line_no, text=seg.text, body=seg.body,
                tags=frozenset(tags), matches=matched, who=self.who(seg.who),
                context_before=before, context_after=after, level=level, role=role,
            ))

    def _events(self, tags: set[str], seg: Segment, line_no: int, end: int,
                block: bytes) -> None:
        """What the lexer's own line kinds say: metric lines, worker exits, completion,
        checkpoints (printed metrics dicts are found per block: `_dict_lines`)."""
        if "metric-line" in tags and (record := line_record(seg.body)) is not None:
            self._line_record(line_no, *record)
        if "worker-exit" in tags:
            failure = worker_exit(self.source.name, line_no, seg)
            if failure is not None:
                keep_bounded(self.failures, failure)
        if "completion" in tags:
            self.completion = Evidence(self.source.name, line_no, seg.text)
        if "checkpoint" in tags and (saved := checkpoint_saved(seg.body)) is not None:
            self.checkpoint = Checkpoint(saved[0], saved[1], self.source.name, line_no,
                                         self.who(seg.who).time)

    def _line_record(self, line_no: int, shape: LineShape, step: int, total: int | None,
                     values: dict[str, float | None]) -> None:
        """A metrics line of a registered shape (Megatron, DeepSpeed, torchtitan, verl, a
        bar's postfix ...) with its own step: held until a line of another step comes. A line
        of the held step adds to it (a bar redrawn, DeepSpeed's memory line after its step
        line), unless its shape keeps a step's first record; its total is counted like a
        progress bar's."""
        if shape.stack:
            self.shape_stacks.add(shape.stack)
        if self.held is not None and self.held[1] == step:
            if shape.keeps_first:
                return
            values = {**self.held[3], **values}
        else:
            self.flush_printed()  # what came before it, in line order
        self.held = (line_no, step, total, values)

    def _add_held(self) -> None:
        if self.held is None:
            return
        line_no, step, total, values = self.held
        self.held = None
        self.metrics.add(line_no, step, values, step_kind(values))
        if total:
            self.bars.printed(step, total)
        if self.metrics.kinds and self.metrics.kinds[-1] == TRAIN:
            self.last_step_line = max(self.last_step_line, line_no)

    def _analysed(self, block: bytes, start: int, raw: str, signatures: set[str],
                  may_signal: bool) -> list[tuple[Segment, LineRole, dict[str, Captures]]]:
        """Each segment of a line with its role and the signatures that match it. A line
        seen before gives the same answer (a warning printed every step is lexed and
        matched once), unless it begins indented: then the line before decides its role."""
        known = self._seen.get(raw)
        if known is not None:
            return known
        analysed = []
        previous = None
        for seg in segments(raw):
            if not (signatures or may_signal):
                analysed.append((seg, LineRole.PLAIN, {}))
                continue
            if previous is None and seg.body[:1] in " \t":  # only then can it be quoted
                previous = _previous_body(block, start)
            role = line_role(seg.body, previous or "")
            analysed.append((seg, role, self._found(signatures, seg, role, may_signal)))
            previous = seg.body
        if raw[:1] not in " \t" and len(raw) <= MEMO_LINE_CHARS:
            if len(self._seen) >= MEMO_LINES:
                self._seen.clear()
            self._seen[raw] = analysed
        return analysed

    def _found(self, candidates: set[str], seg: Segment, role: LineRole,
               may_signal: bool) -> dict[str, Captures]:
        """The candidate signatures whose patterns match where they may (each regex runs
        once here, its captures kept), and those that declare the fatal signal the line
        reports."""
        found: dict[str, Captures] = {}
        for signature_id in sorted(candidates):
            signature = self.plan.signatures[signature_id]
            if role not in signature.roles:
                continue
            if self.slow_lines.get(signature_id, 0) >= MAX_SLOW_LINES and \
                    (len(seg.text) > LONG_LINE_CHARS or not signature.builtin):
                continue
            try:
                hit = signature.search(seg.text, seg.body)
            except TimeoutError:
                self.slow_lines[signature_id] = self.slow_lines.get(signature_id, 0) + 1
                continue
            if hit is not None:
                found[signature_id] = tuple((k, v) for k, v in hit.groupdict().items()
                                            if v is not None)
        number = signal_of(seg.body) if may_signal and role != LineRole.SOURCE else None
        if number is not None:  # the signal is the fact, whichever regex also matched
            for signature_id in self.plan.signal_signatures.get(number, ()):
                captures = found.get(signature_id, ())
                if not any(key == "signal" for key, _ in captures):
                    found[signature_id] = (*captures, ("signal", signal_name(number)))
        return found

    def _within_budget(self, found: dict[str, Captures],
                       hedged: bool = False) -> tuple[SignatureMatch, ...]:
        """The matches kept: at most MAX_LINES_PER_SIGNATURE lines per signature, the
        rest counted; on a hedged line they are tentative."""
        matched = []
        for signature_id, captures in found.items():
            kept = self.kept_per_signature.get(signature_id, 0)
            if kept >= MAX_LINES_PER_SIGNATURE:
                self.dropped_lines += 1
                continue
            self.kept_per_signature[signature_id] = kept + 1
            if kept + 1 == MAX_LINES_PER_SIGNATURE:
                self._exhausted_since_block = True
            matched.append(SignatureMatch(signature_id, captures, tentative=hedged))
        return tuple(matched)

    def _mute_exhausted(self) -> None:
        """Stop flagging keywords that only signatures past their budget own (a warning
        printed on every step): from the next block on the engine skips them and their
        lines are only counted, so they cost no Python at all."""
        self._exhausted_since_block = False
        full = {s for s, kept in self.kept_per_signature.items()
                if kept >= MAX_LINES_PER_SIGNATURE}
        muted = frozenset(i for i, (sigs, tags) in enumerate(zip(
            self.plan.keyword_signatures, self.plan.keyword_tags, strict=True))
            if sigs and sigs <= full and not tags)
        if muted and muted != self._muted:
            self._muted = muted
            self.engine = self.plan.without(muted)
            self._muted_texts = tuple(self.plan.keyword_table[i].text for i in muted)

    def _printed(self, line_no: int, text: str, step: int | None) -> None:
        """Queue a printed metrics dict; queued records are parsed together."""
        self.printed.append((line_no, step, text[text.find("{'"):]))
        if len(self.printed) >= PRINTED_BATCH:
            self.flush_printed()

    def flush_printed(self) -> None:
        """Parse the queued metrics dicts in one pass (before any other record is added,
        so that records stay in line order), after the metrics line held before them."""
        self._add_held()
        if not self.printed:
            return
        lines, steps, bodies = zip(*self.printed, strict=True)
        self.printed.clear()
        last_train = self.metrics.add_printed(list(lines), list(steps), list(bodies))
        self.last_step_line = max(self.last_step_line, last_train)


def _first_line(block: bytes) -> tuple[int, str]:
    """The number and text of the block's first line (1 and the empty line if none)."""
    end = block.find(b"\n")
    return 1, block[:end if end >= 0 else len(block)].decode("utf-8", "replace")


def _whole_dict(text: str, block: bytes, end: int) -> str:
    """A metrics dict that `pprint` spread over several lines (`{'epoch': 1.0,` then
    ` 'eval_loss': 0.51,` ... `'eval_runtime': 10.2}`), joined back into one line."""
    opened = text.find("{'")
    if opened < 0 or "}" in text[opened:]:
        return text
    close = block.find(b"}", end, end + MAX_DICT_BYTES)
    if close < 0 or b"\n\n" in block[end:close]:
        return text
    rest = block[end:close + 1].decode("utf-8", "replace")
    return text + " " + " ".join(part.strip() for part in rest.splitlines())


def _cut_captures(signature: Signature, body: str,
                  raised: str | None) -> tuple[tuple[str, str], ...] | None:
    """A signature's captures on a last line cut short: the exception a cut `raise` line
    names, read as its exception line, or the start of a message the line holds."""
    try:
        if raised is not None and (found := signature.search(raised, raised)) is not None:
            return tuple((k, v) for k, v in found.groupdict().items() if v is not None)
        return signature.search_cut(body)
    except TimeoutError:  # a user's regex that backtracks on a long last line
        return None


def _previous_body(block: bytes, start: int) -> str:
    """The message body of the physical line before `start` (empty at a block's start)."""
    if start <= 0:
        return ""
    begin = block.rfind(b"\n", 0, start - 1) + 1
    return segments(block[begin:start - 1].decode("utf-8", "replace"))[-1].body


def _next_body(block: bytes, end: int) -> str:
    """The message body of the physical line after the one ending at `end` (empty at the
    block's end)."""
    if end >= len(block):
        return ""
    stop = block.find(b"\n", end + 1)
    return segments(block[end + 1:stop if stop >= 0 else len(block)]
                    .decode("utf-8", "replace"))[0].body


def _context(block: bytes, start: int, end: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    before_start = start
    for _ in range(CONTEXT_LINES):
        if before_start <= 0:
            break
        before_start = block.rfind(b"\n", 0, before_start - 1) + 1
    after_end = end
    for _ in range(CONTEXT_LINES):
        if after_end >= len(block):
            break
        nxt = block.find(b"\n", after_end + 1)
        after_end = len(block) if nxt < 0 else nxt
    before = block[before_start:start].decode("utf-8", "replace").splitlines()
    after = (block[end + 1:after_end].decode("utf-8", "replace").splitlines()
             if end < len(block) else [])
    return (tuple(shorten(segments(b)[-1].text, CONTEXT_CHARS) for b in before),
            tuple(shorten(segments(a)[-1].text, CONTEXT_CHARS) for a in after))


def line_pass(source: Source, plan: LinePlan) -> LinePass:
    """Stream one source through the engine and the event walkers (JSON artifacts and
    checkpoint folders are read for what they say about the timeline)."""
    return line_passes([source], plan)[0]


def line_passes(sources: Sequence[Source], plan: LinePlan) -> list[LinePass]:
    """Every source's line pass, in order; the logs' blocks are prepared ahead on other
    threads, across the boundaries between them (`lines.prefetch`)."""
    walks = {index: _Walk(source, plan) for index, source in enumerate(sources)
             if source.content == "log"}
    order = list(walks)
    passes: dict[int, LinePass] = {}
    for position, prepared in prepared_blocks([walks[index].reading for index in order]):
        while len(passes) < position:  # the sources before were read to their end
            passes[order[len(passes)]] = walks.pop(order[len(passes)]).finish()
        walks[order[position]].feed(prepared)
    for index in order[len(passes):]:
        passes[index] = walks.pop(index).finish()
    return [passes[index] if index in passes else _read_whole(source)
            for index, source in enumerate(sources)]


def _read_whole(source: Source) -> LinePass:
    """The pass of a source that is no log: an artifact read for the timeline."""
    if source.content in ("flight-dump", "memory-snapshot"):
        return _empty_scan(source)  # read as a whole by forensics.artifacts
    return _scan_artifact(source)


class _Walk:
    """One log's line pass, fed its prepared blocks in order."""

    def __init__(self, source: Source, plan: LinePlan) -> None:
        self.scanner = scanner = _LineReader(source, plan)
        self.report = ReadStatus()
        self.reading = Reading(source, self.report, lambda: scanner.engine, scanner.metrics,
                               scanner.bars)
        self.lines = 0
        self.stored = stored_size(source)
        self.walked = 0  # bytes of the source walked so far
        self.tail = b""
        self.ends_with_newline = True
        self.pasted = self.previous = b""

    def feed(self, prepared: Prepared) -> None:
        """Walk the next block."""
        self.previous = self.pasted[-TAIL_BYTES:]  # where a last line alone in its block begins
        self.pasted, block = prepared.block, prepared.raw
        self.scanner.scan_block(prepared, self.lines + 1)
        self.walked += len(block)
        if self.stored:  # the records to come, judged by those so far: thinned ahead of them
            self.scanner.metrics.anticipate(self.walked / self.stored)
        self.lines += prepared.newlines
        self.ends_with_newline = block.endswith(b"\n")
        self.tail = (self.tail + block)[-TAIL_BYTES:] if len(block) < TAIL_BYTES \
            else block[-TAIL_BYTES:]

    def finish(self) -> LinePass:
        """What the source yielded, once its last block was walked."""
        scanner, report, source = self.scanner, self.report, self.scanner.source
        pasted, lines = self.pasted, self.lines
        if b"\n" not in pasted:  # a last line alone in its block: read with the one before
            pasted = self.previous + pasted
        scanner.cut_short(pasted, lines - pasted.count(b"\n") + 1)
        scanner.tracebacks.close_all()
        scanner.metrics.settle()
        if scanner.block_walker is not None:
            scanner.block_walker.close()
            for failure in scanner.block_walker.failures:
                keep_bounded(scanner.failures, failure)
        if not self.ends_with_newline:
            lines += 1
        problems = list(report.problems)
        if report.bytes_read == 0 and not problems:
            problems.append(f"{source.name}: empty file")
        if report.long_lines:
            problems.append(f"{source.name}: a line longer than 16 MiB was scanned in pieces")
        tail_lines, tail_times = _tail(source.name, self.tail, lines)
        return LinePass(
            info=SourceInfo(source.name, report.bytes_read, lines, tuple(problems),
                            _notes(source.name, scanner)),
            tokens=scanner.tokens,
            tracebacks=[replace(tb, who=scanner.who(tb.who)) for tb in scanner.tracebacks.done],
            worker_failures=scanner.failures,
            metrics=scanner.metrics,
            progress=scanner.bars.bars, trained_on=scanner.bars.trained_on,
            completion=scanner.completion,
            tail=tail_lines,
            python_versions=scanner.tracebacks.python_versions,
            last_time=next((t for t in reversed(tail_times) if t), None)
            or next((t.who.time for t in reversed(scanner.tokens) if t.who.time), None),
            last_step_line=max(scanner.last_step_line, scanner.bars.last_line),
            checkpoint=scanner.checkpoint, shape_stacks=frozenset(scanner.shape_stacks),
        )


def _empty_scan(source: Source) -> LinePass:
    return LinePass(
        info=SourceInfo(source.name, 0, 0), tokens=[], tracebacks=[], worker_failures=[],
        metrics=MetricsTable(source.name), progress={}, completion=None, tail=[],
        python_versions=set(),
    )


def _scan_artifact(source: Source) -> LinePass:
    report = ReadStatus()
    metrics = MetricsTable(source.name)
    checkpoint = None
    if source.content == "checkpoint":
        step = checkpoint_step(source.path.name) if source.path else None
        checkpoint = Checkpoint(str(source.path), step, source.name, 0) if step else None
    elif (shape := FILE_SHAPES.get(source.content)) is not None:
        metrics = shape.read(source.name, *read_metric_file(source, report, shape.format))
    return LinePass(
        info=SourceInfo(source.name, report.bytes_read, 0, tuple(report.problems)),
        tokens=[], tracebacks=[], worker_failures=[], metrics=metrics, progress={},
        completion=None, tail=[], python_versions=set(), checkpoint=checkpoint,
    )


def _notes(name: str, scanner: _LineReader) -> tuple[str, ...]:
    """What the report should say about how a source was read (nothing went wrong)."""
    notes = []
    if scanner.replaced:
        notes.append(f"{name}: {scanner.replaced} flagged line(s) held invalid UTF-8 "
                     "(replaced with U+FFFD)")
    for signature_id, count in sorted(scanner.slow_lines.items()):
        notes.append(f"{name}: {signature_id}'s regex ran out of time on {count} line(s); "
                     "they were not matched by it"
                     + (" (nor were later ones like them)" if count >= MAX_SLOW_LINES else ""))
    table = scanner.metrics
    left_out = len(table.keys) - len(table.columns()) if len(table.keys) else 0
    if table.ignored_keys or left_out:
        named = f"over {len(table.keys)}" if table.ignored_keys else str(len(table.keys))
        notes.append(f"{name}: the metrics name {named} different things; the timeline keeps "
                     f"the {len(table.keys) - left_out} logged most often")
    if scanner.dropped_lines:
        notes.append(f"{name}: about {scanner.dropped_lines} further matching lines "
                     f"were counted past the first {MAX_LINES_PER_SIGNATURE} per signature")
    return tuple(notes)


def _tail(source: str, data: bytes, total_lines: int) -> tuple[list[Evidence], list[str | None]]:
    text = data.decode("utf-8", "replace").split("\n")
    if text and text[-1] == "":
        text.pop()
    text = text[-TAIL_LINES:]
    first = total_lines - len(text) + 1
    out, times = [], []
    for offset, raw in enumerate(text):
        segs = segments(raw)
        out.append(Evidence(source, first + offset, shorten(segs[-1].text, TAIL_CHARS)))
        times.append(next((s.who.time for s in reversed(segs) if s.who.time), None))
    return out, times
