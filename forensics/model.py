"""The frozen dataclasses that pass between the pipeline's stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


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
class Token:
    """One log line that the scanner flagged, with its prefixes parsed."""

    source: str
    line: int
    text: str
    body: str
    kinds: frozenset[str]
    keyword_hits: frozenset[int]
    who: Attribution = NO_ATTRIBUTION
    context_before: tuple[str, ...] = ()
    context_after: tuple[str, ...] = ()


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
    ignored: bool = False  # printed after "Exception ignored in ...": not what ended the run

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

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "text": self.text}


@dataclass(frozen=True, slots=True)
class Finding:
    """All lines that matched one signature."""

    signature: str
    title: str
    category: str
    severity: str
    count: int
    ranks: tuple[int, ...]
    hosts: tuple[str, ...]
    first: Evidence
    evidence: tuple[Evidence, ...]
    captures: tuple[tuple[str, str], ...] = ()
    who: Attribution = NO_ATTRIBUTION
    exception_type: str | None = None
    role: str = "context"
    order: int = 0  # position of the first hit: source order, then line
    when: float | None = None  # time of the first hit (seconds), when the line says
    confirmed: bool | None = None  # for signatures that need corroboration (see catalog)
    exit_codes: tuple[int, ...] = ()  # every exit code its lines captured
    step: int | None = None  # the training step it happened at, when known

    @property
    def capture_dict(self) -> dict[str, str]:
        return dict(self.captures)

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
    role: str
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
    mode: str = "sft"  # sft | grpo
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
class Analysis:
    """Everything `forensics analyze` found about one job."""

    verdict: str
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
    artifacts: tuple[tuple[str, str], ...] = ()  # (kind, Markdown section) of PyTorch artifacts
    notes: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> bool:
        return self.root_cause is not None

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON report (DESIGN.md's contract)."""
        from forensics.report.json import analysis_to_dict

        return analysis_to_dict(self)
