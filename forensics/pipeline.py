"""The wiring: paths in, an `Analysis` (or a timeline export) out. Inputs are discovered,
each source goes through the line pass, the metrics are judged, the diagnosis decides, and
secrets are redacted; every decision lives in its stage, not here."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from forensics.catalog import Catalog, builtin_dir, load_catalog, toml_files, user_dirs
from forensics.diagnosis.advice import root_fixes, run_stacks
from forensics.diagnosis.findings import (
    absorb_generic,
    announced,
    bare_exceptions_went_on,
    group_findings,
    hits_of,
    logged_exceptions_went_on,
    recovered_metrics_went_on,
    unexplained_death,
    waits_that_went_on,
)
from forensics.diagnosis.ranks import rank_table
from forensics.diagnosis.root import diagnose
from forensics.diagnosis.verdict import decide_verdict
from forensics.errors import InputError
from forensics.inputs.sources import Source, discover
from forensics.lines.facts import environment
from forensics.lines.linepass import LinePass, LinePlan, compile_plan, line_passes
from forensics.metrics.table import TRAIN, MetricsTable
from forensics.model import (
    Analysis,
    Evidence,
    FlightRecord,
    MemorySummary,
    RootCause,
    SourceInfo,
    TimelineSummary,
    Token,
    Verdict,
    WorkerFailure,
)
from forensics.redact import redact, redact_frame
from forensics.text import term_safe
from forensics.timeparse import to_epoch, year_of

if TYPE_CHECKING:
    from forensics.metrics.judge import Health

PICKLED = ("flight-dump", "memory-snapshot")


class Analyzer:
    """A loaded catalog and compiled line plan, reusable across many jobs."""

    def __init__(self, catalog: Catalog, engine: str = "auto") -> None:
        self.catalog = catalog
        self.plan: LinePlan = compile_plan(catalog, engine)

    def analyze_sources(self, sources: list[Source], problems: list[str] | None = None,
                        redact_secrets: bool = True) -> Analysis:
        """Read, match and diagnose the given sources as one job."""
        flight, memory, unreadable = _artifacts(sources)
        passes = line_passes(sources, self.plan)
        analysis = build_analysis(passes, self.catalog, list(problems or []), flight, memory)
        if unreadable:
            analysis = replace(analysis, sources=(
                *analysis.sources, SourceInfo("<artifacts>", 0, 0, tuple(unreadable))))
        return redact(analysis) if redact_secrets else analysis


def analyze(*paths: str | Path, patterns: tuple[str | Path, ...] = (), redact: bool = True,
            engine: str = "auto") -> Analysis:
    """Analyze log files, compressed logs, job folders (or `-` for stdin) as one job."""
    if not paths:
        raise InputError("no input given", "pass a log file, a job folder or -")
    analyzer = _analyzer(tuple(user_dirs([str(p) for p in patterns])), engine)
    sources, problems = discover([str(p) for p in paths])
    return analyzer.analyze_sources(sources, problems, redact)


_ANALYZERS: dict[tuple[object, ...], Analyzer] = {}


def _analyzer(dirs: tuple[Path, ...], engine: str) -> Analyzer:
    """An Analyzer for these catalog folders, reused while none of their files changed (a
    program that analyzes job after job loads and compiles the catalog once)."""
    files = [f for root in (builtin_dir(), *dirs) for f in toml_files(root)]
    key = (dirs, engine, tuple((str(f), *_stamp(f)) for f in files))
    if key not in _ANALYZERS:
        if len(_ANALYZERS) >= 4:
            _ANALYZERS.clear()
        _ANALYZERS[key] = Analyzer(load_catalog(*dirs), engine)
    return _ANALYZERS[key]


def _stamp(path: Path) -> tuple[int, int]:
    """A file's modification time and size (0, 0 when it vanished meanwhile)."""
    try:
        info = path.stat()
    except OSError:
        return 0, 0
    return info.st_mtime_ns, info.st_size


def _artifacts(sources: list[Source]
               ) -> tuple[FlightRecord | None, tuple[MemorySummary, ...], list[str]]:
    """Flight Recorder dumps and memory snapshots (read whole; torch is not needed)."""
    pickles = [s for s in sources if s.content in PICKLED]
    if not pickles:
        return None, (), []
    from forensics.artifacts.job import read_artifacts

    return read_artifacts(pickles)


def build_analysis(passes: list[LinePass], catalog: Catalog, problems: list[str],
                   flight: FlightRecord | None = None,
                   memory: tuple[MemorySummary, ...] = ()) -> Analysis:
    """Combine the per-source line passes into one diagnosed Analysis."""
    order = {lines.info.name: i for i, lines in enumerate(passes)}
    tokens = [t for lines in passes for t in lines.tokens]
    tracebacks = [tb for lines in passes for tb in lines.tracebacks]
    hits = absorb_generic(hits_of(tokens, catalog, order), tracebacks)
    worker_failures = [w for lines in passes for w in lines.worker_failures]
    tails = {lines.info.name: lines.tail for lines in passes}
    went_on = (waits_that_went_on(hits, tails, tracebacks)
               | bare_exceptions_went_on(hits, tails, tracebacks)
               | logged_exceptions_went_on(hits, tails, tracebacks)
               | recovered_metrics_went_on(hits, tails))
    findings = group_findings(hits, _job_year(tokens, worker_failures),
                              announced(tokens, tracebacks), went_on)
    names = [lines.info.name for lines in passes]
    stacks = run_stacks(tokens, tracebacks, names,
                        {s for lines in passes for s in lines.shape_stacks})
    health = _health([lines.metrics for lines in passes], stacks)
    if health is not None:
        findings += health.unreported(catalog, {f.signature for f in findings}, order)
    completed = any(lines.metrics.summary is not None or lines.completion is not None
                    for lines in passes)
    findings += unexplained_death(findings, tracebacks, catalog, completed, went_on)
    diagnosis = diagnose(findings, catalog, tracebacks, worker_failures,
                         health.anomalies if health else (), flight)
    root = diagnosis.root
    timeline = _timeline(passes, health, root)
    progressed = bool(timeline.steps_logged or timeline.last_step is not None)
    sources = [lines.info for lines in passes]
    env = environment(tokens, (v for lines in passes for v in lines.python_versions),
                      tracebacks, stacks)
    if problems:
        sources.append(SourceInfo("<inputs>", 0, 0, tuple(problems)))
    return Analysis(
        verdict=decide_verdict(root, catalog.get(root.finding.signature).verdict if root
                               else Verdict.FAILED, completed, progressed),
        root_cause=root,
        findings=diagnosis.findings,
        fixes=root_fixes(root, catalog.get(root.finding.signature), stacks, dict(env),
                         names) if root else (),
        timeline=timeline, environment=env,
        tail=tuple(_job_tail(passes, root)), sources=tuple(sources),
        tracebacks=tuple(tracebacks), worker_failures=tuple(worker_failures),
        ranks=rank_table(tokens, diagnosis.findings, worker_failures, tracebacks, order),
        anomalies=health.anomalies if health else (), flight=flight, memory=memory,
    )


def export_timeline(sources: list[Source], fmt: str) -> tuple[str | bytes | None, list[str]]:
    """`forensics timeline`: the text to print or write (csv, md), the bytes of a Parquet
    file, or None when the inputs hold no metrics; and what went wrong reading them. The
    exported frame is redacted as it is made, so every format starts from the same rows."""
    from forensics.metrics.timeline import build_timeline, render_table

    plan = compile_plan(load_catalog())
    passes = line_passes(sources, plan)
    problems = [problem for lines in passes for problem in lines.info.problems]
    timeline = build_timeline([lines.metrics for lines in passes])
    if timeline is None:
        return None, problems
    frame = timeline.to_frame().reset_index()
    frame["kind"] = frame["kind"].astype(str)
    frame = redact_frame(frame)
    # what a terminal or a spreadsheet shows: no terminal controls or bidi overrides
    frame = frame.rename(columns=lambda name: term_safe(name) if isinstance(name, str) else name)
    frame["source"] = frame["source"].map(term_safe)
    if fmt == "parquet":
        return frame.to_parquet(None, index=False), problems
    return (render_table(frame) if fmt == "md" else frame.to_csv(index=False)), problems


def _health(tables: list[MetricsTable], stacks: tuple[str, ...]) -> Health | None:
    """Timeline and health rules (their modules are imported only when there are metrics)."""
    if not any(len(table) for table in tables):
        return None
    from forensics.metrics.judge import judge

    return judge(tables, stacks)


def _job_year(tokens: list[Token], worker_failures: list[WorkerFailure]) -> int:
    """The year most full timestamps name, for timestamps that print none (glog)."""
    years = Counter(y for y in (year_of(t.who.time) for t in tokens) if y)
    years.update(y for y in (year_of(w.time) for w in worker_failures) if y)
    return years.most_common(1)[0][0] if years else 1970


def _timeline(passes: list[LinePass], health: Health | None,
              root: RootCause | None) -> TimelineSummary:
    steps = max((lines.metrics.count(TRAIN) for lines in passes), default=0)
    progress: dict[int, tuple[int, int]] = {}
    for lines in passes:
        for total, (n, seen) in lines.progress.items():
            last, count = progress.get(total, (0, 0))
            progress[total] = (max(last, n), count + seen)
    trained: Counter[int] = Counter()
    for lines in passes:
        trained.update(lines.trained_on)
    max_steps = last_step = None
    if progress:  # the training bar: the one training records were read against, else the
        # bar redrawn most (an evaluation bar can be redrawn more often than it)
        max_steps, (last_step, _) = max(progress.items(), key=lambda kv: (
            trained.get(kv[0], 0), kv[1][1], kv[0]))
    lasts = [row for row in (lines.metrics.last(TRAIN) for lines in passes) if row is not None]
    last_metrics = tuple(lasts[-1].values.items()) if lasts else ()
    times = [lines.last_time for lines in passes if lines.last_time]
    last_time = max(times, key=lambda t: to_epoch(t) or 0.0) if times else None
    after = [lines.info.lines - lines.last_step_line for lines in passes if lines.last_step_line]
    checkpoints = [lines.checkpoint for lines in passes if lines.checkpoint]
    last_checkpoint = max(checkpoints, key=lambda c: c.step) if checkpoints else None
    summary = TimelineSummary(steps, last_step, max_steps, last_metrics, last_time,
                              min(after) if after else None, last_checkpoint)
    if health is None:
        return summary
    if summary.last_step is None:
        summary = replace(summary, last_step=health.last_step)
    if summary.max_steps is None:
        summary = replace(summary, max_steps=health.max_steps)
    focus = root.finding.step if root is not None else None
    return replace(summary, mode=health.mode, rows=health.window(focus),
                   series=health.series)


def _job_tail(passes: list[LinePass], root: RootCause | None) -> list[Evidence]:
    """The tail of the file that holds the root cause, else of the last readable file."""
    readable = [lines for lines in passes if lines.tail]
    if root is not None:
        for lines in readable:
            if lines.info.name == root.finding.first.source:
                return list(lines.tail)
    return list(readable[-1].tail) if readable else []
