"""Multi-line blocks assembled from consecutive lines: Python tracebacks (chained causes and
interleaved ranks included) and torchrun's ChildFailedError block; the launchers' one-line
worker-exit reports; the exception-name grammar; the lexer's own line tags."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import regex

from forensics.lines.facts import FACT_KEYWORDS
from forensics.lines.lexer import Segment, segments
from forensics.lines.signals import KEYWORDS as SIGNAL_KEYWORDS
from forensics.metrics.lineshapes import KEYWORDS as LINE_SHAPE_KEYWORDS
from forensics.model import (
    Attribution,
    ExceptionPart,
    Level,
    LineRole,
    Traceback,
    WorkerFailure,
)

TRACEBACK_START = "Traceback (most recent call last):"
CHAIN_SEPARATORS = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)
IGNORED_MARK = "Exception ignored in"
LOGGED_LEVELS = (Level.DEBUG, Level.INFO, Level.WARNING)
FAILURE_BLOCK_START = "Root Cause (first observed failure):"

#: the keys that make a printed dict a metrics record (HF Trainer's training, summary and
#: evaluation dicts), found per block by the line pass, not by the keyword engine
METRICS_KEYS = re.compile(rb"'epoch': |'train_runtime'|'eval_loss'")
#: literal prefilters for the lexer's own line kinds (the catalog adds its keywords)
EVENT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "traceback": ("Traceback (most recent call last)", IGNORED_MARK),
    "failure-block": ("Failures:", FAILURE_BLOCK_START),
    "worker-exit": ("exits with return code", "failed (exitcode", "ProcessFailure(",
                    "returned non-zero exit status", "died with <Signals."),
    "metric-line": LINE_SHAPE_KEYWORDS,
    # torchrun, HF Trainer, axolotl, torchtitan; then Lightning (and NeMo) reaching its
    # max_epochs/max_steps, Megatron-LM's end-of-training marker, verl's last step and a plain
    # "Training done in 1104.74 seconds."
    "completion": ("exits successfully", "Training completed", "Model successfully saved",
                   "`Trainer.fit` stopped: `max_", "[after training is done]",
                   "Final validation metrics: ", "Training done in "),
    "checkpoint": ("Saving model checkpoint to",),
    "fact": FACT_KEYWORDS,
    "signal": SIGNAL_KEYWORDS,
}

EXCEPTION_LINE = regex.compile(
    r"^(?P<type>(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*)(?::[ \t]?(?P<message>.*))?$"
)
EXCEPTION_SUFFIXES = ("Error", "Exception", "Interrupt", "Exit", "Failure", "Failed")

# a rich/typer traceback box's source line: "│ ❱ 123 │     code │", "│   120 │   code │"
# Python's warnings module: "x.py:34: UserWarning: ..." then the warn() call's source line
_WARNING_HEADER = regex.compile(r"^\S.{0,300}?:\d+: [A-Z]\w{0,40}Warning: ")
# an indented import statement is code a frame quotes, even where ranks' tracebacks interleave
# and the line above it is not its frame
_IMPORT_STATEMENT = regex.compile(
    r"^\s{2,}(?:from [\w.]+ import [\w., ()]+|import [\w.]+(?: as \w+)?)$")
_RAISED = regex.compile(r"^\s*raise (?P<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)\((?P<message>.*)$")
_BOXED_SOURCE = regex.compile(r"^\s*(?:│\s*)?(?:❱\s*)?\d+\s*│")


def line_role(body: str, previous: str) -> LineRole:
    """What a line is: a traceback frame header, the source line a frame (or a Python
    warning) quotes (never a failure, whatever error class its code names, unless it raises
    one with its message), an exception line, or plain output."""
    if _FRAME.match(body):
        return LineRole.FRAME
    if _BOXED_SOURCE.match(body) or _IMPORT_STATEMENT.match(body) or (body[:1] in " \t" and (
            _FRAME.match(previous) or _WARNING_HEADER.match(previous))):
        # `raise X("message")` states the exception itself: a paste cut before the
        # exception line still says what was raised
        return LineRole.EXCEPTION if _RAISED.match(body) else LineRole.SOURCE
    if exception_name(body) is not None:
        return LineRole.EXCEPTION
    return LineRole.PLAIN


def continues_warning(body: str, previous: str, following: str) -> bool:
    """Whether a line is the second line of a Python warning's message: the line before is
    the warning's `file:line: Category: message` header and the line after is the indented
    source line the warning quotes (`RuntimeWarning: Failed to read commit hash:` then
    `No module named 'vllm._version'`)."""
    return (body[:1] not in " \t" and following[:1] in " \t"
            and _WARNING_HEADER.match(previous) is not None)


# a message that says the program let the error pass ("Ignore import error when loading
# sglang.srt.models.x: cannot import name ...", "Skipping import of cpp extensions due to ...",
# xformers' "Error caught was: No module named 'triton'" under "Triton is not available")
_HANDLED = regex.compile(r"^(?:Ignor(?:e|ed|ing)|Skipp(?:ed|ing)|(?:Error|Exception) caught)\b")


def handled(body: str) -> bool:
    """Whether a line reports an error the program says it ignored or skipped: a warning,
    whatever level its prefix claims."""
    return _HANDLED.match(body) is not None


def raised_exception(body: str) -> str | None:
    """A `raise X("message` source line as the exception line it would print
    (`X: message`), or None when the line raises nothing by name."""
    found = _RAISED.match(body)
    if found is None:
        return None
    message = found["message"].strip().lstrip("fbru").strip("'\"()")
    return f"{found['type']}: {message}" if message else found["type"]


def exception_name(body: str) -> str | None:
    """The exception class a line (without its prefixes) reports, e.g. `torch.OutOfMemoryError`
    for `torch.OutOfMemoryError: CUDA out of memory`; None when it reports none."""
    text = body.strip()
    found = EXCEPTION_LINE.match(text)
    if found is None:
        head = text.split(":", 1)[0]
        found = EXCEPTION_LINE.match(head) if head != text else None
    if found is None:
        return None
    name = found["type"]
    return name if name.rsplit(".", 1)[-1].endswith(EXCEPTION_SUFFIXES) else None
_FRAME = regex.compile(r'^\s*File "(?P<file>[^"]+)", line \d+')
# a frame's source line that is an assertion: a traceback cut right after it died of it
_ASSERT = regex.compile(r"^\s+assert (?P<condition>[^\n]{1,500}?)(?:,\s*\(?)?\s*$")
# IPython / Colab: "IndexError     Traceback (most recent call last)" names the exception
# first; frames are "[/x/y.py](https://...) in f(...)", "/x/y.py in f()" or
# "File /x/y.py:854, in f()", quoted as "----> 1 code" and "      2 code", "6 frames" folded
_IPYTHON_HEADER = regex.compile(
    r"^(?P<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)\s{2,}Traceback \(most recent call last\)$")
# a whole traceback whose newlines a paste turned into spaces: the header, then frames, on
# one line; its last `Type: message` is the exception
_FLATTENED = regex.compile(
    r"Traceback \(most recent call last\):?\s.*?(?:\sFile \S|-+> \d+ |\d+ frames\s)")
_FLAT_EXCEPTION = regex.compile(
    r"(?<![\w.])(?P<type>(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Interrupt|Exit)): (?=\S)")
_IPYTHON_FRAME = regex.compile(
    r"^(?:(?:\[[^\]]+\]\([^)]*\)|File \S+|\S+\.py|<ipython-input-[^>]+>|Cell \S+.*?) in \S"
    r"|-*> ?\d+ |\d+ frames?$|-{20,}$)")
_PACKAGE = regex.compile(r"(?:site|dist)-packages/(?P<package>[A-Za-z_][\w]*)")
_PYTHON = regex.compile(r"python(?P<version>3\.\d+)/(?:site|dist)-packages")
_FIELD = regex.compile(
    r"^\s*(?P<key>time|host|rank|exitcode|error_file|traceback)\s*:\s?(?P<value>.*)$"
)
_FAILURE_INDEX = regex.compile(r"^\s*\[(?P<index>\d+)\]:\s*$")
_RANK_FIELD = regex.compile(r"(?P<rank>-?\d+)(?: \(local_rank: (?P<local>\d+)\))?")
_EXITCODE_FIELD = regex.compile(r"(?P<code>-?\d+)(?: \(pid: (?P<pid>\d+)\))?")

MAX_TRACEBACK_LINES = 3000
MAX_IDLE_LINES = 60


@dataclass
class _OpenTraceback:
    start_line: int
    who: Attribution
    ignored: bool
    state: str = "frames"  # frames | message | gap | chained
    parts: list[ExceptionPart] = field(default_factory=list)
    packages: set[str] = field(default_factory=set)
    python: str | None = None
    last_line: int = 0
    message_lines: int = 0
    announced_type: str | None = None  # the exception an IPython header names
    asserted: str | None = None  # the `assert` the last frame quotes, while it is the last
    header: str = TRACEBACK_START  # its first line's text (a frame's, when the header was cut)


MAX_KEPT = 10_000  # tracebacks or worker exits kept per source: the first ones and the last


def keep_bounded(items: list, item: object, limit: int = MAX_KEPT) -> None:
    """Append `item`, keeping memory flat on a log that repeats it endlessly: past `limit`,
    the newest replaces the previous newest (the first ones and the last one are kept)."""
    if len(items) < limit:
        items.append(item)
    else:
        items[-1] = item


class TracebackWalker:
    """Follows the lines after a `Traceback (most recent call last):` header until every
    traceback it opened (one per line prefix, so interleaved ranks stay apart) has ended."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.open: dict[str, _OpenTraceback] = {}
        self.done: list[Traceback] = []
        self.python_versions: set[str] = set()
        self._idle = 0
        self._seen = 0
        self._previous_body: dict[str, str] = {}

    @property
    def active(self) -> bool:
        return bool(self.open)

    def feed(self, line_no: int, raw: str) -> bool:
        """Take one physical line; returns whether the walker wants more lines."""
        self._seen += 1
        for segment in segments(raw):
            self._feed_segment(line_no, segment)
        if self._seen > MAX_TRACEBACK_LINES or self._idle > MAX_IDLE_LINES:
            self.close_all()
        if not self.open:
            self._seen = 0  # the budget is per run of open tracebacks, not per file
        return self.active

    def _feed_segment(self, line_no: int, seg: Segment) -> None:
        key = _prefix_key(seg)
        body = seg.body
        current = self.open.get(key)
        stripped = body.strip()
        if current is None and self._flattened(line_no, seg, stripped):
            return
        ipython = _IPYTHON_HEADER.match(stripped)
        if stripped.startswith(TRACEBACK_START) or stripped.endswith(TRACEBACK_START) or ipython:
            if current is not None and current.state == "chained":
                current.state = "frames"
            else:
                if current is not None:
                    self._close(key)
                # "Exception ignored in ...", or a traceback a logger printed below error
                # level: the program went on, so it is not how the process ended
                ignored = (self._previous_body.get(key, "").startswith(IGNORED_MARK)
                           or seg.level in LOGGED_LEVELS)
                self.open[key] = _OpenTraceback(
                    line_no, seg.who, ignored, last_line=line_no,
                    announced_type=ipython["type"] if ipython else None)
            self._idle = 0
            self._previous_body[key] = stripped
            return
        self._previous_body[key] = stripped
        if current is None:
            self._idle += 1
            return
        self._idle = 0
        current.last_line = line_no
        if current.state == "frames":
            self._frames_line(current, key, line_no, body)
        elif current.state in ("message", "gap"):
            if seg.who.time is not None and stripped not in CHAIN_SEPARATORS:
                self._close(key)  # a new timestamped log record ends the message
            elif stripped in CHAIN_SEPARATORS:
                current.state = "chained"
            elif not stripped:
                current.state = "gap"
            elif current.state == "gap" or current.message_lines >= 20:
                self._close(key)
            else:
                current.message_lines += 1
        elif current.state == "chained" and stripped:
            self._close(key)

    def _flattened(self, line_no: int, seg: Segment, body: str) -> bool:
        """A traceback flattened onto one line becomes one traceback of that line."""
        header = _FLATTENED.search(body) if "Traceback (most recent" in body else None
        if header is None:
            return False
        last = next(reversed(list(_FLAT_EXCEPTION.finditer(body, header.end()))), None)
        parts = () if last is None else (
            ExceptionPart(last["type"], body[last.end():].strip(), line_no),)
        keep_bounded(self.done, Traceback(
            source=self.source, start_line=line_no, end_line=line_no, key=_prefix_key(seg),
            who=seg.who, parts=parts, ignored=seg.level in LOGGED_LEVELS, cut=not parts))
        return True

    def _frames_line(self, current: _OpenTraceback, key: str, line_no: int, body: str) -> None:
        if not body.strip():
            return
        if body[:1] in (" ", "\t") or _FRAME.match(body):  # a paste may lose the indent
            frame = _FRAME.match(body)
            asserted = _ASSERT.match(body) if frame is None else None
            current.asserted = asserted["condition"] if asserted else None
            if frame is not None:
                package = _PACKAGE.search(frame["file"])
                if package is not None:
                    current.packages.add(package["package"])
                python = _PYTHON.search(frame["file"])
                if python is not None:
                    self.python_versions.add(python["version"])
            return
        if body.startswith(("[Previous line repeated", "...")):
            return
        if current.announced_type and _IPYTHON_FRAME.match(body):
            return
        found = EXCEPTION_LINE.match(body.rstrip())
        if found is None:
            # Not an exception line: the traceback was cut short.
            self._close(key)
            return
        current.parts.append(ExceptionPart(found["type"], (found["message"] or "").strip(),
                                           line_no))
        current.state = "message"
        current.message_lines = 0

    def begin_headless(self, line_no: int, raw: str) -> bool:
        """A paste that begins inside a traceback (its header cut off above it): its first
        frame line opens one. Whether it did."""
        seg = segments(raw)[0]
        if _FRAME.match(seg.body) is None:
            return False
        key = _prefix_key(seg)
        self.open[key] = _OpenTraceback(line_no, seg.who, False, last_line=line_no,
                                        header=seg.body.strip())
        return True

    def _close(self, key: str) -> None:
        current = self.open.pop(key)
        if current.announced_type and not current.parts:  # cut: the header named it
            current.parts.append(ExceptionPart(current.announced_type, "", current.start_line))
        elif current.asserted and not current.parts:  # cut after the frame of an `assert`
            current.parts.append(ExceptionPart("AssertionError", current.asserted,
                                               current.last_line))
        keep_bounded(self.done, Traceback(
            source=self.source, start_line=current.start_line, end_line=current.last_line,
            key=key, who=current.who, parts=tuple(current.parts),
            packages=tuple(sorted(current.packages)), ignored=current.ignored,
            cut=current.state in ("frames", "chained"), header=current.header,
        ))

    def close_all(self) -> None:
        """End every open traceback (at the end of the input or of the walk)."""
        for key in list(self.open):
            self._close(key)


def _prefix_key(seg: Segment) -> str:
    who = seg.who
    if who.rank is not None:
        return f"rank{who.rank}"
    if who.local_rank is not None:
        return f"local{who.local_rank}"
    if who.pid is not None:
        return f"pid{who.pid}"
    return ""


class FailureBlockWalker:
    """Parses torchrun's ChildFailedError block: one WorkerFailure per `[N]:` entry."""

    def __init__(self, source: str, line_no: int) -> None:
        self.source = source
        self.failures: list[WorkerFailure] = []
        self._fields: dict[str, str] = {}
        self._entry_line = line_no
        self._in_root = False
        self._lines = 0
        self.active = True

    def feed(self, line_no: int, raw: str) -> bool:
        self._lines += 1
        body = segments(raw)[-1].body.rstrip()
        stripped = body.strip()
        if stripped == FAILURE_BLOCK_START:
            self._flush()
            self._in_root = True
        elif _FAILURE_INDEX.match(body):
            self._flush()
            self._entry_line = line_no
        elif (found := _FIELD.match(body)) is not None:
            self._fields.setdefault(found["key"], found["value"].strip())
        elif stripped.startswith("===") or self._lines > 400:
            self._flush()
            self.active = False
        return self.active

    def _flush(self) -> None:
        fields, self._fields = self._fields, {}
        code = _EXITCODE_FIELD.match(fields.get("exitcode", ""))
        if code is None:
            return
        rank = _RANK_FIELD.match(fields.get("rank", ""))
        keep_bounded(self.failures, WorkerFailure(
            source=self.source, line=self._entry_line, exitcode=int(code["code"]),
            rank=int(rank["rank"]) if rank else None,
            local_rank=int(rank["local"]) if rank and rank["local"] else None,
            host=fields.get("host") or None,
            pid=int(code["pid"]) if code["pid"] else None,
            time=fields.get("time") or None,
            root_cause_block=self._in_root,
        ))

    def close(self) -> None:
        self._flush()
        self.active = False


_WORKER_EXIT = (
    regex.compile(r"failed \(exitcode: (?P<code>-?\d+)\) local_rank: (?P<local>\d+) "
                  r"\(pid: (?P<pid>\d+)\)"),
    regex.compile(r"(?:--local_rank=(?P<local>\d+).{0,500}?)?"
                  r"exits with return code = (?P<code>-?\d+)"),
    regex.compile(r"ProcessFailure\(local_rank=(?P<local>\d+), pid=(?P<pid>\d+), "
                  r"exitcode=(?P<code>-?\d+)"),
    regex.compile(r"returned non-zero exit status (?P<code>\d+)"),
    regex.compile(r"died with <Signals\.\w+: (?P<signal>\d+)>"),
)


def worker_exit(source: str, line_no: int, seg: Segment) -> WorkerFailure | None:
    """A launcher line that reports one worker's exit status, if this is one."""
    for pattern in _WORKER_EXIT:
        found = pattern.search(seg.text)
        if found is None:
            continue
        groups = found.groupdict()
        code = -int(groups["signal"]) if groups.get("signal") else int(groups["code"])
        local = groups.get("local")
        pid = groups.get("pid")
        return WorkerFailure(source=source, line=line_no, exitcode=code,
                             local_rank=int(local) if local else None,
                             rank=seg.who.rank, host=seg.who.host,
                             pid=int(pid) if pid else seg.who.pid, time=seg.who.time)
    return None
