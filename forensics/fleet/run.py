"""`forensics scan`: analyze many job folders (a process pool, or a Dask cluster) into a
Parquet dataset, reusing the rows of unchanged jobs. The only module that writes Parquet."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from forensics import __version__
from forensics.catalog import load_catalog, user_dirs
from forensics.fleet.discover import Job, discover_jobs
from forensics.inputs.sources import discover
from forensics.model import Analysis
from forensics.pipeline import Analyzer

JOBS_FILE, FINDINGS_FILE = "jobs.parquet", "findings.parquet"
BATCH = 256
IN_FLIGHT_PER_WORKER = 4

JOB_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("path", pa.string()), ("layout", pa.string()),
    ("verdict", pa.string()), ("root_signature", pa.string()), ("category", pa.string()),
    ("confidence", pa.float64()), ("exception_type", pa.string()), ("rank", pa.int64()),
    ("host", pa.string()), ("hosts", pa.list_(pa.string())), ("step", pa.int64()),
    ("time", pa.string()), ("root_text", pa.string()), ("fix", pa.string()),
    ("files", pa.int64()), ("bytes", pa.int64()), ("anomalies", pa.int64()),
    ("analyzer_version", pa.string()), ("catalog_version", pa.string()),
    ("fingerprint", pa.string()), ("scanned_at", pa.string()), ("error", pa.string()),
])
FINDING_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("path", pa.string()), ("signature", pa.string()),
    ("category", pa.string()), ("role", pa.string()), ("count", pa.int64()),
    ("ranks", pa.list_(pa.int64())), ("hosts", pa.list_(pa.string())),
    ("source", pa.string()), ("line", pa.int64()), ("text", pa.string()),
])


class ScanInterrupted(Exception):
    """Ctrl-C during a scan; what was finished is on disk."""


@dataclass
class JobResult:
    """One job's row and its findings' rows."""

    row: dict
    findings: list[dict] = field(default_factory=list)


_ANALYZERS: dict[tuple[str, ...], Analyzer] = {}


def _analyzer(pattern_dirs: tuple[str, ...]) -> Analyzer:
    """One analyzer per worker process (catalog loaded and compiled once)."""
    if pattern_dirs not in _ANALYZERS:
        _ANALYZERS[pattern_dirs] = Analyzer(load_catalog(*user_dirs(pattern_dirs)))
    return _ANALYZERS[pattern_dirs]


def analyze_job(job: Job, pattern_dirs: tuple[str, ...], fingerprint: str) -> JobResult:
    """Exactly `forensics analyze` of the job's inputs, as rows. A job that cannot be
    analyzed becomes a row with its error; it never stops the scan."""
    base = {"job_id": job.job_id, "path": job.path, "layout": job.layout,
            "analyzer_version": __version__, "fingerprint": fingerprint,
            "scanned_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        analyzer = _analyzer(pattern_dirs)
        base["catalog_version"] = analyzer.catalog.digest
        sources, problems = discover(list(job.inputs))
        analysis = analyzer.analyze_sources(sources, problems)
    except Exception as err:
        return JobResult({**base, "verdict": "error", "error": f"{type(err).__name__}: {err}"})
    return _rows(job, analysis, base)


def _rows(job: Job, analysis: Analysis, base: dict) -> JobResult:
    root = analysis.root_cause
    finding = root.finding if root else None
    hosts = sorted({h for f in analysis.findings for h in f.hosts}
                   | {r.host for r in analysis.ranks if r.host}
                   | ({finding.who.host} if finding and finding.who.host else set()))
    problems = [p for s in analysis.sources for p in s.problems]
    row = {
        **base,
        "verdict": analysis.verdict,
        "root_signature": finding.signature if finding else None,
        "category": finding.category if finding else None,
        "confidence": root.confidence if root else None,
        "exception_type": finding.exception_type if finding else None,
        "rank": finding.rank if finding else None,
        "host": (finding.who.host or finding.capture_dict.get("node")) if finding else None,
        "hosts": hosts,
        "step": (finding.step if finding and finding.step is not None
                 else analysis.timeline.last_step),
        "time": finding.who.time if finding else analysis.timeline.last_time,
        "root_text": finding.first.text[:500] if finding else None,
        "fix": analysis.fixes[0] if analysis.fixes else None,
        "files": sum(1 for s in analysis.sources if s.name != "<inputs>"),
        "bytes": sum(s.bytes_read for s in analysis.sources),
        "anomalies": len(analysis.anomalies),
        "error": "; ".join(problems)[:1000] or None,
    }
    findings = [{
        "job_id": job.job_id, "path": job.path, "signature": f.signature,
        "category": f.category, "role": f.role, "count": f.count, "ranks": list(f.ranks),
        "hosts": list(f.hosts), "source": f.first.source, "line": f.first.line,
        "text": f.first.text[:500],
    } for f in analysis.findings]
    return JobResult(row, findings)


@dataclass
class ScanReport:
    """What a scan did."""

    jobs: int = 0
    analyzed: int = 0
    reused: int = 0
    problems: list[str] = field(default_factory=list)


class _Writer:
    """Parquet written in batches to temporary files, renamed into place on close, so an
    interrupted scan keeps everything finished so far and never leaves a torn file."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.jobs: list[dict] = []
        self.findings: list[dict] = []
        self._job_writer = pq.ParquetWriter(out / f"{JOBS_FILE}.tmp", JOB_SCHEMA)
        self._finding_writer = pq.ParquetWriter(out / f"{FINDINGS_FILE}.tmp", FINDING_SCHEMA)

    def add(self, result: JobResult) -> None:
        self.jobs.append(result.row)
        self.findings += result.findings
        if len(self.jobs) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.jobs:
            self._job_writer.write_table(pa.Table.from_pylist(self.jobs, JOB_SCHEMA))
            self.jobs = []
        if self.findings:
            self._finding_writer.write_table(
                pa.Table.from_pylist(self.findings, FINDING_SCHEMA))
            self.findings = []

    def close(self) -> None:
        self.flush()
        self._job_writer.close()
        self._finding_writer.close()
        for name in (JOBS_FILE, FINDINGS_FILE):
            os.replace(self.out / f"{name}.tmp", self.out / name)


def _cached(out: Path) -> dict[str, JobResult]:
    """Earlier rows by fingerprint (read in batches; only the rows are kept)."""
    jobs_path, findings_path = out / JOBS_FILE, out / FINDINGS_FILE
    if not jobs_path.is_file():
        return {}
    try:
        rows = pq.read_table(jobs_path).to_pylist()
        findings = pq.read_table(findings_path).to_pylist() if findings_path.is_file() else []
    except (OSError, pa.ArrowException):
        return {}
    by_job: dict[tuple[str, str], list[dict]] = {}
    for finding in findings:
        by_job.setdefault((finding["path"], finding["job_id"]), []).append(finding)
    return {row["fingerprint"]: JobResult(row, by_job.get((row["path"], row["job_id"]), []))
            for row in rows if row.get("fingerprint") and row.get("verdict") != "error"}


def run_scan(roots: list[str], out: Path, workers: int = 1, scheduler: str | None = None,
             full: bool = False, pattern_dirs: tuple[str, ...] = (),
             progress: Callable[[int, int], None] | None = None) -> ScanReport:
    """Discover the jobs under `roots`, analyze the new or changed ones, write the dataset."""
    found = discover_jobs(*roots)
    report = ScanReport(jobs=len(found.jobs), problems=found.problems)
    catalog = load_catalog(*user_dirs(pattern_dirs))
    versions = f"{__version__}/{catalog.digest}"
    cache = {} if full else _cached(out)
    writer = _Writer(out)
    todo: list[tuple[Job, str]] = []
    try:
        for job in found.jobs:
            fingerprint = job.fingerprint(versions)
            if fingerprint in cache:
                writer.add(cache[fingerprint])
                report.reused += 1
            else:
                todo.append((job, fingerprint))
        done = report.reused
        if progress:
            progress(done, report.jobs)
        for result in _execute(todo, workers, scheduler, pattern_dirs):
            writer.add(result)
            report.analyzed += 1
            done += 1
            if progress:
                progress(done, report.jobs)
    except KeyboardInterrupt as err:
        writer.close()
        raise ScanInterrupted(f"interrupted after {report.analyzed} new jobs; "
                              f"{report.analyzed + report.reused} rows kept in {out}") from err
    writer.close()
    return report


def _execute(todo: list[tuple[Job, str]], workers: int, scheduler: str | None,
             pattern_dirs: tuple[str, ...]) -> Iterator[JobResult]:
    if scheduler:
        yield from _dask(todo, scheduler, pattern_dirs)
    elif workers <= 1 or len(todo) <= 1:
        for job, fingerprint in todo:
            yield analyze_job(job, pattern_dirs, fingerprint)
    else:
        yield from _pool(todo, workers, pattern_dirs)


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which stops the scan cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool(todo: list[tuple[Job, str]], workers: int,
          pattern_dirs: tuple[str, ...]) -> Iterator[JobResult]:
    """A local process pool with a bounded number of jobs in flight (memory flat in N)."""
    pending = iter(todo)
    with ProcessPoolExecutor(max_workers=workers, initializer=_ignore_interrupts) as pool:
        running = set()
        try:
            while True:
                while len(running) < workers * IN_FLIGHT_PER_WORKER:
                    item = next(pending, None)
                    if item is None:
                        break
                    running.add(pool.submit(analyze_job, item[0], pattern_dirs, item[1]))
                if not running:
                    return
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _dask(todo: list[tuple[Job, str]], address: str,
          pattern_dirs: tuple[str, ...]) -> Iterator[JobResult]:
    """The same work on an existing Dask distributed cluster."""
    try:
        from distributed import Client, as_completed
    except ImportError as err:
        raise RuntimeError("--scheduler needs Dask: pip install 'forensics[dask]'") from err
    with Client(address) as client:
        futures = [client.submit(analyze_job, job, pattern_dirs, fp, pure=False)
                   for job, fp in todo]
        for future in as_completed(futures):
            yield future.result()
