"""The frozen dataclasses that pass between the pipeline's stages, the enums they use, and
`Analysis.to_dict()`: the one flattening of an analysis into plain data (the JSON report and
the scan's Parquet rows are both made from it). Data only: nothing here renders or reads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

SCHEMA_VERSION = 2


class _Name(str, Enum):
    """A closed set of names that reads and compares as its plain string."""

    def __str__(self) -> str:
        return str(self.value)


class Verdict(_Name):
    """How the run ended."""

    FAILED = "failed"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"


class Level(_Name):
    """How severe the line itself says it is (its logger level, glog letter, NCCL INFO/WARN,
    a Python warning); UNMARKED when it says nothing."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    FATAL = "fatal"
    UNMARKED = "unmarked"


class LineRole(_Name):
    """What a line is within its surroundings."""

    FRAME = "frame"  # a traceback frame header: File "x.py", line 3, in f
    SOURCE = "source"  # the source line a traceback frame quotes
    EXCEPTION = "exception"  # an exception line: Type: message
    PLAIN = "plain"  # anything else


class Role(_Name):
    """A finding's part in the failure."""

    ROOT = "root"
    SYMPTOM = "symptom"
    CONTRIBUTING = "contributing"
    CONTEXT = "context"


class Severity(_Name):
    """How bad a signature's lines are; only critical and error lines can be a root cause."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who printed a line, as far as its prefixes say."""

    rank: int | None = None
    local_rank: int | None = None
    host: str | None = None
    pid: int | None = None
    time: str | None = None


NO_ATTRIBUTION = Attribution()


@dataclass(frozen=True, slots=True)
class SignatureMatch:
    """One signature's regex matched a line: its id and named captures."""

    signature: str
    captures: tuple[tuple[str, str], ...] = ()
    # only the start of a message cut short at the end of a paste, or one possibility in a
    # hedged list ("potential root causes: (1) ... OOM killer ..."): a hint, not a statement
    tentative: bool = False


@dataclass(frozen=True, slots=True)
class Token:
    """One log line that the scanner flagged, with its prefixes parsed."""

    source: str
    line: int
    text: str
    body: str
    tags: frozenset[str]  # line tags of the lexer's keywords (traceback, metrics, fact, ...)
    matches: tuple[SignatureMatch, ...] = ()  # signatures whose regex matched, with captures
    who: Attribution = NO_ATTRIBUTION
    context_before: tuple[str, ...] = ()
    context_after: tuple[str, ...] = ()
    level: Level = Level.UNMARKED
    role: LineRole = LineRole.PLAIN


@dataclass(frozen=True, slots=True)
class ExceptionPart:
    """One exception of a traceback chain."""

    exception_type: str
    message: str
    line: int


@dataclass(frozen=True, slots=True)
class Traceback:
    """A whole Python traceback, with its chained causes in print order."""

    source: str
    start_line: int
    end_line: int
    key: str
    who: Attribution
    parts: tuple[ExceptionPart, ...]
    packages: tuple[str, ...] = ()
    ignored: bool = False  # after "Exception ignored in ...", or logged below error level:
    # the program went on, so it is not what ended the run
    cut: bool = False  # it stops before the exception line of its last part (a cut paste)
    header: str = "Traceback (most recent call last):"  # its first line (a frame's, if cut)

    @property
    def final(self) -> ExceptionPart | None:
        """The exception that propagated (the last one printed)."""
        return self.parts[-1] if self.parts else None


@dataclass(frozen=True, slots=True)
class WorkerFailure:
    """A launcher's report that one worker process failed (torchrun block, DeepSpeed)."""

    source: str
    line: int
    exitcode: int
    rank: int | None = None
    local_rank: int | None = None
    host: str | None = None
    pid: int | None = None
    time: str | None = None
    root_cause_block: bool = False


@dataclass(frozen=True, slots=True)
class Evidence:
    """A quoted log line with where it was seen."""

    source: str
    line: int
    text: str
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    body: str = ""  # the text without its prefixes (rank, time, host), as the lexer split it

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "text": self.text}


@dataclass(frozen=True, slots=True)
class Finding:
    """All lines that matched one signature."""

    signature: str
    title: str
    category: str
    severity: Severity
    count: int
    ranks: tuple[int, ...]
    hosts: tuple[str, ...]
    first: Evidence
    evidence: tuple[Evidence, ...]
    captures: tuple[tuple[str, str], ...] = ()
    who: Attribution = NO_ATTRIBUTION
    exception_type: str | None = None
    role: Role = Role.CONTEXT
    order: int = 0  # position of the first hit: source order, then line
    when: float | None = None  # time of the first hit (seconds), when the line says
    confirmed: bool | None = None  # for signatures that need corroboration (see catalog)
    exit_codes: tuple[int, ...] = ()  # every exit code its lines captured
    step: int | None = None  # the training step it happened at, when known
    rootable: int | None = None  # its lines whose level lets it be a root (None: all)
    loud: bool = True  # one of its lines is an error (not only a warning the run went past)
    definite: bool = True  # one of its lines states it (not only a cut message or a hedge)

    @property
    def capture_dict(self) -> dict[str, str]:
        return dict(self.captures)

    @property
    def root_lines(self) -> int:
        """How many of its lines are at a level that can make it a root cause."""
        return self.count if self.rootable is None else self.rootable

    @property
    def rank(self) -> int | None:
        """The rank of the first hit, or the only rank seen."""
        if self.who.rank is not None:
            return self.who.rank
        return self.ranks[0] if len(self.ranks) == 1 else None


@dataclass(frozen=True, slots=True)
class RootCause:
    """The diagnosed originating failure."""

    finding: Finding
    confidence: float
    cause: str
    reasons: tuple[str, ...]
    missing_evidence: str = ""  # what would confirm it, when the logs do not


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An unhealthy stretch of one metric."""

    metric: str
    kind: str  # nan | spike | high | collapse | zero | stuck | plateau | overfitting | ...
    step: int
    end_step: int
    value: float
    healthy: str
    advice: str


@dataclass(frozen=True, slots=True)
class RankRow:
    """One process of the job: where it ran, what it last reported, its part in the failure."""

    rank: int
    host: str | None
    last_event: str
    where: str
    role: Role | None
    exitcode: int | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint the trainer said it saved."""

    path: str
    step: int
    source: str
    line: int
    time: str | None = None


@dataclass(frozen=True, slots=True)
class TimelineSummary:
    """How far the run got, from its metrics and progress bars."""

    steps_logged: int = 0
    last_step: int | None = None
    max_steps: int | None = None
    last_metrics: tuple[tuple[str, float | None], ...] = ()
    last_time: str | None = None  # the last timestamp any line carried
    lines_after_last_step: int | None = None
    last_checkpoint: Checkpoint | None = None
    mode: str = "sft"  # sft | grpo | dpo | pretrain
    rows: tuple[tuple[int, tuple[tuple[str, float | None], ...]], ...] = ()  # around the end
    series: tuple[tuple[str, tuple[tuple[int, float], ...]], ...] = ()  # for charts


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """One input that was read, and what went wrong reading it."""

    name: str
    bytes_read: int
    lines: int
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CollectiveMismatch:
    """The first collective the ranks of a Flight Recorder dump do not agree on."""

    disagreement: str  # missing-ranks | type-mismatch | size-mismatch | state-mismatch
    process_group: str
    seq: int
    op: str
    ranks: tuple[int, ...]  # the missing or odd ranks
    expected_ranks: tuple[int, ...]
    detail: str


@dataclass(frozen=True, slots=True)
class FlightRecord:
    """What the NCCL Flight Recorder dumps of a job say."""

    ranks: tuple[int, ...]
    mismatch: CollectiveMismatch | None


@dataclass(frozen=True, slots=True)
class MemoryHolder:
    """Live allocations grouped by the Python frame that made them."""

    where: str
    bytes: int
    count: int


@dataclass(frozen=True, slots=True)
class MemorySummary:
    """A CUDA allocator snapshot's totals, its failed request and its largest holders."""

    reserved: int
    allocated: int
    largest_free_block: int
    failed_request: int | None
    device_free: int | None
    holders: tuple[MemoryHolder, ...] = ()
    segments: int = 0
    notes: tuple[str, ...] = ()
    source: str = ""

    @property
    def fragmented(self) -> bool:
        """Enough memory was free in total, but no free block was large enough."""
        if self.failed_request is None:
            return False
        free_in_pool = self.reserved - self.allocated
        return free_in_pool >= self.failed_request > self.largest_free_block


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything `forensics analyze` found about one job."""

    verdict: Verdict
    root_cause: RootCause | None
    findings: tuple[Finding, ...]
    fixes: tuple[str, ...]
    timeline: TimelineSummary
    environment: tuple[tuple[str, str], ...]
    tail: tuple[Evidence, ...]
    sources: tuple[SourceInfo, ...]
    tracebacks: tuple[Traceback, ...] = ()
    worker_failures: tuple[WorkerFailure, ...] = ()
    ranks: tuple[RankRow, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    flight: FlightRecord | None = None
    memory: tuple[MemorySummary, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> bool:
        return self.root_cause is not None

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON report (DESIGN.md's contract)."""
        root = self.root_cause
        return {
            "schema_version": SCHEMA_VERSION,
            "verdict": self.verdict.value,
            "root_cause": None if root is None else _root_dict(root, self.timeline),
            "findings": [_finding_dict(f) for f in self.findings],
            "anomalies": [
                {"metric": a.metric, "kind": a.kind, "step": a.step, "end_step": a.end_step,
                 "value": a.value if math.isfinite(a.value) else None, "healthy": a.healthy,
                 "advice": a.advice}
                for a in self.anomalies
            ],
            "timeline": _timeline_dict(self.timeline),
            "ranks": [
                {"rank": r.rank, "host": r.host, "role": None if r.role is None else r.role.value,
                 "exitcode": r.exitcode, "last_event": r.last_event, "where": r.where}
                for r in self.ranks
            ],
            "fixes": list(self.fixes),
            "artifacts": _artifacts_dict(self.flight, self.memory),
            "environment": dict(self.environment),
            "sources": [
                {"name": s.name, "bytes": s.bytes_read, "lines": s.lines,
                 "problems": list(s.problems), "notes": list(s.notes)}
                for s in self.sources
            ],
        }


FLEET_SCHEMA_VERSION = 2  # the shape of FleetSummary.to_dict() (`scan --format json`)


@dataclass(frozen=True)
class JobRef:
    """A job as the fleet summary names it: its id and its main log file."""

    job_id: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "path": self.path}


@dataclass(frozen=True)
class JobList:
    """Some jobs of a scan: how many, and the first few of them by path."""

    jobs: int = 0
    listed: tuple[JobRef, ...] = ()

    @property
    def more(self) -> int:
        """The jobs not listed."""
        return self.jobs - len(self.listed)

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "listed": [j.to_dict() for j in self.listed],
                "more": self.more}


@dataclass(frozen=True)
class Cause:
    """One root cause of the failed jobs, and which jobs it ended."""

    signature: str
    category: str
    jobs: JobList

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "category": self.category, **self.jobs.to_dict()}


@dataclass(frozen=True)
class Group:
    """The jobs of one user or one partition: how many, how many failed, and of what."""

    name: str
    jobs: int
    failed: int
    causes: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "jobs": self.jobs, "failed": self.failed,
                "causes": [{"signature": s, "jobs": n} for s, n in self.causes]}


@dataclass(frozen=True)
class Breakdown:
    """The jobs by one label (user, partition), over the jobs where it is known."""

    label: str
    groups: tuple[Group, ...] = ()
    more: int = 0  # groups not shown
    known: int = 0  # jobs whose label is known

    def to_dict(self, jobs: int) -> dict[str, Any]:
        return {"known": self.known, "unknown": jobs - self.known,
                "groups": [g.to_dict() for g in self.groups], "more": self.more}


@dataclass(frozen=True)
class FleetSummary:
    """Figures over all the jobs of a scan (`forensics scan`'s summary); every list in it is
    capped, so its size does not grow with the number of jobs."""

    jobs: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    failure_rate: float = 0.0
    by_signature: tuple[Cause, ...] = ()
    other_causes: JobList = JobList()  # the failed jobs of the causes not in by_signature
    by_category: tuple[tuple[str, int], ...] = ()
    job_lists: dict[str, JobList] = field(default_factory=dict)  # by section, see to_dict
    by_user: Breakdown = Breakdown("user")
    by_partition: Breakdown = Breakdown("partition")
    hosts_known: int = 0  # jobs with at least one host known
    suspect_hosts: tuple[dict, ...] = ()
    unknown_clusters: tuple[dict, ...] = ()
    fixes: tuple[tuple[str, int], ...] = ()
    errors: int = 0
    suspect_rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain data (`forensics scan --format json`; README documents it)."""
        return {
            "schema_version": FLEET_SCHEMA_VERSION,
            "jobs": self.jobs, "verdicts": self.verdicts, "failure_rate": self.failure_rate,
            "by_signature": [c.to_dict() for c in self.by_signature],
            "other_causes": self.other_causes.to_dict(),
            "by_category": [{"category": c, "jobs": n} for c, n in self.by_category],
            "job_lists": {k: v.to_dict() for k, v in self.job_lists.items()},
            "by_user": self.by_user.to_dict(self.jobs),
            "by_partition": self.by_partition.to_dict(self.jobs),
            "host_coverage": {"known": self.hosts_known, "jobs": self.jobs},
            "suspect_hosts": list(self.suspect_hosts), "suspect_rule": self.suspect_rule,
            "unknown_clusters": list(self.unknown_clusters),
            "fixes": [{"fix": f, "jobs": n} for f, n in self.fixes], "errors": self.errors,
        }


def _root_dict(root: RootCause, timeline: TimelineSummary) -> dict[str, Any]:
    finding = root.finding
    return {
        "signature": finding.signature,
        "title": finding.title,
        "category": finding.category,
        "confidence": root.confidence,
        "exception_type": finding.exception_type,
        "rank": finding.rank,
        "local_rank": finding.who.local_rank,
        "host": finding.who.host,
        "time": finding.who.time,
        "step": finding.step if finding.step is not None else timeline.last_step,
        "captures": dict(finding.captures),
        "reasons": list(root.reasons),
        "confirmed": finding.confirmed,
        "missing_evidence": root.missing_evidence or None,
        "evidence": [e.to_dict() for e in finding.evidence],
    }


def _finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "signature": finding.signature,
        "title": finding.title,
        "category": finding.category,
        "severity": finding.severity.value,
        "role": finding.role.value,
        "count": finding.count,
        "ranks": list(finding.ranks),
        "hosts": list(finding.hosts),
        "exception_type": finding.exception_type,
        "captures": dict(finding.captures),
        "first": finding.first.to_dict(),
    }


def _timeline_dict(timeline: TimelineSummary) -> dict[str, Any]:
    checkpoint = timeline.last_checkpoint
    return {
        "steps_logged": timeline.steps_logged,
        "last_step": timeline.last_step,
        "max_steps": timeline.max_steps,
        "last_time": timeline.last_time,
        "lines_after_last_step": timeline.lines_after_last_step,
        "last_checkpoint": None if checkpoint is None else {
            "path": checkpoint.path, "step": checkpoint.step, "time": checkpoint.time,
        },
    }


def _artifacts_dict(flight: FlightRecord | None,
                    memory: tuple[MemorySummary, ...]) -> dict[str, Any]:
    mismatch = flight.mismatch if flight else None
    return {
        "flight_recorder": None if flight is None else {
            "ranks": list(flight.ranks),
            "first_mismatch": None if mismatch is None else {
                "disagreement": mismatch.disagreement, "process_group": mismatch.process_group,
                "seq": mismatch.seq, "op": mismatch.op, "ranks": list(mismatch.ranks),
                "expected_ranks": list(mismatch.expected_ranks), "detail": mismatch.detail,
            },
        },
        "memory_snapshots": [
            {"source": m.source, "reserved": m.reserved, "allocated": m.allocated,
             "largest_free_block": m.largest_free_block, "failed_request": m.failed_request,
             "device_free": m.device_free, "fragmented": m.fragmented, "segments": m.segments,
             "holders": [{"where": h.where, "bytes": h.bytes, "count": h.count}
                         for h in m.holders],
             "notes": list(m.notes)}
            for m in memory
        ],
    }
