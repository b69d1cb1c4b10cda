"""`analyze()`: the whole pipeline for one job, from paths to an `Analysis`."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import regex

from forensics.catalog import Catalog, load_catalog, user_dirs
from forensics.diagnosis.findings import absorb_generic, group_findings, match_tokens
from forensics.diagnosis.ranks import rank_table
from forensics.diagnosis.root import diagnose
from forensics.errors import InputError
from forensics.inputs.sources import Source, discover
from forensics.lines.linepass import ScanPlan, SourceScan, plan_scan, scan_source
from forensics.metrics.table import TRAIN, MetricsTable
from forensics.model import (
    Analysis,
    Evidence,
    RootCause,
    SourceInfo,
    TimelineSummary,
    Token,
    WorkerFailure,
)
from forensics.redact import redact
from forensics.timeparse import to_epoch, year_of

if TYPE_CHECKING:
    from forensics.metrics.judge import Health

_FACTS = (
    ("NCCL", regex.compile(r"NCCL version (?P<v>\d+\.\d+\.\d+(?:\+cuda[\d.]+)?)")),
    ("CUDA", regex.compile(r"CUDA Version:? (?P<v>\d+\.\d+)")),
    ("GPU memory", regex.compile(r"GPU(?: \d+)? has a total capacity of (?P<v>[\d.]+ [KMGT]iB)")),
    ("world size", regex.compile(r"\bnranks (?P<v>\d+)\b")),
    ("world size", regex.compile(r"(?i)\bworld[_ ]size\b\W{1,3}(?P<v>\d+)\b")),
    ("world size", regex.compile(r"Num(?:ber of)? processes\W{1,3}(?P<v>\d+)\b")),
)
_FRAMEWORKS = ("torch", "transformers", "trl", "deepspeed", "accelerate", "peft", "axolotl",
               "vllm", "bitsandbytes", "flash_attn", "datasets", "lightning", "unsloth")


class Analyzer:
    """A loaded catalog and compiled scanner, reusable across many jobs."""

    def __init__(self, catalog: Catalog, engine: str = "auto") -> None:
        self.catalog = catalog
        self.plan: ScanPlan = plan_scan(catalog, engine)

    def analyze_sources(self, sources: list[Source], problems: list[str] | None = None,
                        redact_secrets: bool = True) -> Analysis:
        """Scan, match and diagnose the given sources as one job."""
        scans = [scan_source(source, self.plan) for source in sources]
        analysis = build_analysis(scans, self.catalog, list(problems or []))
        analysis = with_artifacts(analysis, sources, self.catalog)
        return redact(analysis) if redact_secrets else analysis


def analyze(*paths: str | Path, patterns: tuple[str | Path, ...] = (), redact: bool = True,
            engine: str = "auto") -> Analysis:
    """Analyze log files, compressed logs, job folders (or `-` for stdin) as one job."""
    if not paths:
        raise InputError("no input given", "pass a log file, a job folder or -")
    catalog = load_catalog(*user_dirs([str(p) for p in patterns]))
    sources, problems = discover([str(p) for p in paths])
    return Analyzer(catalog, engine).analyze_sources(sources, problems, redact)


def build_analysis(scans: list[SourceScan], catalog: Catalog, problems: list[str]) -> Analysis:
    """Combine the per-source scans into one diagnosed Analysis."""
    order = {scan.info.name: i for i, scan in enumerate(scans)}
    tokens = [t for scan in scans for t in scan.tokens]
    tracebacks = [tb for scan in scans for tb in scan.tracebacks]
    hits = absorb_generic(match_tokens(tokens, catalog, order), tracebacks)
    worker_failures = [w for scan in scans for w in scan.worker_failures]
    findings = group_findings(hits, _job_year(tokens, worker_failures))
    health = _health([scan.metrics for scan in scans])
    if health is not None:
        findings += health.unreported(catalog, {f.signature for f in findings})
    diagnosis = diagnose(findings, catalog, tracebacks, worker_failures,
                         health.anomalies if health else ())
    timeline = _timeline(scans, health, diagnosis.root)
    root = diagnosis.root
    if root is not None:
        verdict = "failed"
    elif any(scan.metrics.summary is not None or scan.completion_lines for scan in scans):
        verdict = "completed"
    elif timeline.steps_logged or timeline.last_step is not None:
        verdict = "interrupted"  # it was training, then the log stops without a word
    else:
        verdict = "unknown"
    fixes = _fix_lines(catalog.get(root.finding.signature).fix) if root else ()
    sources = [scan.info for scan in scans]
    if problems:
        sources.append(SourceInfo("<inputs>", 0, 0, tuple(problems)))
    return Analysis(
        verdict=verdict, root_cause=root, findings=diagnosis.findings, fixes=fixes,
        timeline=timeline, environment=_environment(tokens, scans),
        tail=tuple(_job_tail(scans, root)), sources=tuple(sources),
        tracebacks=tuple(tracebacks), worker_failures=tuple(worker_failures),
        ranks=rank_table(tokens, diagnosis.findings, worker_failures, tracebacks, order),
        anomalies=health.anomalies if health else (),
    )


def with_artifacts(analysis: Analysis, sources: list[Source], catalog: Catalog) -> Analysis:
    """Add what memory snapshots and Flight Recorder dumps in the job say; a Flight Recorder
    culprit names the rank of an NCCL timeout's root cause."""
    pickles = [s for s in sources if s.kind in ("flight-dump", "memory-snapshot")]
    if not pickles:
        return analysis
    from forensics.artifacts.job import read_artifacts

    sections, mismatch, problems = read_artifacts(pickles)
    root = analysis.root_cause
    if mismatch is not None and root is not None and catalog.get(
            root.finding.signature).stalled_collective:
        culprits = ", ".join(str(r) for r in mismatch.ranks)
        reason = (f"Flight Recorder: rank {culprits} {mismatch.detail.split(':')[0]} at "
                  f"`{mismatch.op}` sequence {mismatch.seq} (process group "
                  f"{mismatch.process_group}); the other ranks waited for it")
        finding = root.finding
        if len(mismatch.ranks) == 1:
            finding = replace(finding, who=replace(finding.who, rank=mismatch.ranks[0]))
        root = replace(root, finding=finding, reasons=(*root.reasons, reason),
                       confidence=round(min(0.97, root.confidence + 0.15), 2))
        findings = tuple(finding if f.role == "root" else f for f in analysis.findings)
        analysis = replace(analysis, root_cause=root, findings=findings)
    sources_info = analysis.sources
    if problems:
        sources_info = (*sources_info, SourceInfo("<artifacts>", 0, 0, tuple(problems)))
    return replace(analysis, artifacts=tuple(sections), sources=sources_info)


def _health(tables: list[MetricsTable]) -> Health | None:
    """Timeline and health rules; pandas is imported only when there are metrics."""
    if not any(len(table) for table in tables):
        return None
    from forensics.metrics.judge import judge

    return judge(tables)


def _job_year(tokens: list[Token], worker_failures: list[WorkerFailure]) -> int:
    """The year most full timestamps name, for timestamps that print none (glog)."""
    years = Counter(y for y in (year_of(t.who.time) for t in tokens) if y)
    years.update(y for y in (year_of(w.time) for w in worker_failures) if y)
    return years.most_common(1)[0][0] if years else 1970


def _fix_lines(fix: str) -> tuple[str, ...]:
    items: list[str] = []
    for line in fix.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(("- ", "* ")):
            items.append(stripped[2:].strip())
        elif items:
            items[-1] += " " + stripped
        else:
            items.append(stripped)
    return tuple(items)


def _timeline(scans: list[SourceScan], health: Health | None,
              root: RootCause | None) -> TimelineSummary:
    steps = max((scan.metrics.count(TRAIN) for scan in scans), default=0)
    progress: dict[int, tuple[int, int]] = {}
    for scan in scans:
        for total, (n, seen) in scan.progress.items():
            last, count = progress.get(total, (0, 0))
            progress[total] = (max(last, n), count + seen)
    max_steps = last_step = None
    if progress:
        max_steps, (last_step, _) = max(progress.items(), key=lambda kv: (kv[1][1], kv[0]))
    lasts = [scan.metrics.last(TRAIN) for scan in scans]
    lasts = [row for row in lasts if row is not None]
    last_metrics = tuple(lasts[-1].values.items()) if lasts else ()
    times = [scan.last_time for scan in scans if scan.last_time]
    last_time = max(times, key=lambda t: to_epoch(t) or 0.0) if times else None
    after = [scan.info.lines - scan.last_step_line for scan in scans if scan.last_step_line]
    checkpoints = [scan.checkpoint for scan in scans if scan.checkpoint]
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


def _environment(tokens: list[Token], scans: list[SourceScan]) -> tuple[tuple[str, str], ...]:
    facts: dict[str, str] = {}
    for token in tokens:
        if "fact" not in token.kinds:
            continue
        for name, pattern in _FACTS:
            found = pattern.search(token.body)
            if found is not None and name not in facts:
                facts[name] = found["v"]
    pythons = sorted({v for scan in scans for v in scan.python_versions})
    if pythons:
        facts["Python"] = ", ".join(pythons)
    packages = Counter(p for scan in scans for tb in scan.tracebacks for p in tb.packages)
    frameworks = [p for p in _FRAMEWORKS if p in packages]
    if frameworks:
        facts["frameworks in tracebacks"] = ", ".join(frameworks)
    ranks = {t.who.rank for t in tokens if t.who.rank is not None}
    if ranks:
        facts["ranks seen"] = ", ".join(str(r) for r in sorted(ranks))
    hosts = {t.who.host for t in tokens if t.who.host}
    if hosts:
        facts["hosts seen"] = ", ".join(sorted(hosts)[:8])
    return tuple(facts.items())


def _job_tail(scans: list[SourceScan], root: RootCause | None) -> list[Evidence]:
    """The tail of the file that holds the root cause, else of the last readable file."""
    readable = [scan for scan in scans if scan.tail]
    if root is not None:
        for scan in readable:
            if scan.info.name == root.finding.first.source:
                return list(scan.tail)
    return list(readable[-1].tail) if readable else []
