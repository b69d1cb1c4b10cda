"""`forensics scan`: analyze many job folders (a process pool, or a Dask cluster) into the
Parquet dataset, reusing the rows of unchanged jobs."""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from forensics.catalog import load_catalog, user_dirs
from forensics.errors import UsageError
from forensics.fleet.dataset import DatasetWriter, JobResult, cached_rows, job_rows, read_jobs
from forensics.fleet.discover import Job, discover_jobs, main_log
from forensics.fleet.labels import ends, job_labels
from forensics.fleet.summary import summarize
from forensics.heap import tune_heap
from forensics.inputs.sources import ReadLimits, Source, discover
from forensics.model import Analysis
from forensics.pipeline import Analyzer
from forensics.report.fleet import render_fleet
from forensics.text import scrub
from forensics.version import __version__

IN_FLIGHT_PER_WORKER = 4
SCHEDULER_TIMEOUT = "10s"


class ScanInterrupted(Exception):
    """Ctrl-C during a scan; what was finished is on disk."""


_ANALYZERS: dict[tuple[str, ...], Analyzer] = {}


def _analyzer(pattern_dirs: tuple[str, ...]) -> Analyzer:
    """One analyzer per worker process (catalog loaded and compiled once)."""
    if pattern_dirs not in _ANALYZERS:
        _ANALYZERS[pattern_dirs] = Analyzer(load_catalog(*user_dirs(pattern_dirs)))
    return _ANALYZERS[pattern_dirs]


def analyze_job(job: Job, pattern_dirs: tuple[str, ...], fingerprint: str,
                limits: ReadLimits | None = None) -> JobResult:
    """Exactly `forensics analyze` of the job's inputs, as rows. A job that cannot be
    analyzed becomes a row with its error; it never stops the scan."""
    inputs = list(job.inputs)
    base = {"job_id": job.job_id, "path": main_log(job, inputs), "log_files": inputs,
            "layout": job.layout, "analyzer_version": __version__, "fingerprint": fingerprint,
            "scanned_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        analyzer = _analyzer(pattern_dirs)
        base["catalog_version"] = analyzer.catalog.digest
        sources, problems = discover(inputs, limits)
        files = [str(s.path) for s in sources if s.path is not None and s.content != "checkpoint"]
        base["path"], base["log_files"] = main_log(job, files), files
        analysis = analyzer.analyze_sources(sources, problems)
    except Exception as err:
        return JobResult({**base, **job_labels(base["log_files"], ()), "verdict": "error",
                          "error": f"{type(err).__name__}: {err}"})
    base.update(_labels(base, sources, analysis))
    return job_rows(job, analysis, base)


def _labels(base: dict, sources: list[Source], analysis: Analysis) -> dict[str, str | None]:
    """User and partition from the job's paths, its main log's ends and the job's tail."""
    main = next((s for s in sources if s.path is not None and str(s.path) == base["path"]),
                None)
    texts = ends(main) if main is not None and main.content == "log" else []
    texts += [line.text for line in analysis.tail]
    return job_labels(base["log_files"], texts)


@dataclass
class ScanTotals:
    """What a scan did."""

    jobs: int = 0
    analyzed: int = 0
    reused: int = 0
    problems: list[str] = field(default_factory=list)


def run_scan(roots: list[str], out: Path, workers: int = 1, scheduler: str | None = None,
             full: bool = False, pattern_dirs: tuple[str, ...] = (),
             progress: Callable[[int, int], None] | None = None,
             limits: ReadLimits | None = None) -> ScanTotals:
    """Discover the jobs under `roots`, analyze the new or changed ones, write the dataset."""
    found = discover_jobs(*roots)
    report = ScanTotals(jobs=len(found.jobs), problems=found.problems)
    catalog = load_catalog(*user_dirs(pattern_dirs))
    versions = f"{__version__}/{catalog.digest}"
    cache = {} if full else cached_rows(out, report.problems)
    writer = DatasetWriter(out)
    todo: list[tuple[Job, str]] = []
    try:
        for job in found.jobs:
            fingerprint = job.fingerprint(versions)
            if fingerprint in cache:
                writer.add(cache[fingerprint], cached=True)
                report.reused += 1
            else:
                todo.append((job, fingerprint))
        done = report.reused
        if progress:
            progress(done, report.jobs)
        for result in _execute(todo, workers, scheduler, (pattern_dirs, limits)):
            writer.add(result)
            report.analyzed += 1
            done += 1
            if progress:
                progress(done, report.jobs)
    except KeyboardInterrupt as err:
        writer.close()
        raise ScanInterrupted(f"interrupted after {report.analyzed} new jobs; "
                              f"{report.analyzed + report.reused} rows kept in {out}") from err
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return report


Settings = tuple[tuple[str, ...], ReadLimits | None]  # the catalog folders and read limits


def _execute(todo: list[tuple[Job, str]], workers: int, scheduler: str | None,
             settings: Settings) -> Iterator[JobResult]:
    pattern_dirs, limits = settings
    if scheduler:
        yield from _dask(todo, scheduler, settings)
    elif workers <= 1 or len(todo) <= 1:
        for job, fingerprint in todo:
            yield analyze_job(job, pattern_dirs, fingerprint, limits)
    else:
        yield from _pool(todo, workers, settings)


def _start_worker() -> None:
    """Workers leave Ctrl-C to the main process, which stops the scan cleanly, and keep
    the memory a job freed for the next one (a worker may be started, not forked)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_heap()


def _pool(todo: list[tuple[Job, str]], workers: int,
          settings: Settings) -> Iterator[JobResult]:
    """A local process pool with a bounded number of jobs in flight (memory flat in N)."""
    pending = iter(todo)
    with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker) as pool:
        running = set()
        try:
            while True:
                while len(running) < workers * IN_FLIGHT_PER_WORKER:
                    item = next(pending, None)
                    if item is None:
                        break
                    running.add(pool.submit(analyze_job, item[0], settings[0], item[1],
                                            settings[1]))
                if not running:
                    return
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _dask(todo: list[tuple[Job, str]], address: str,
          settings: Settings) -> Iterator[JobResult]:
    """The same work on an existing Dask distributed cluster."""
    try:
        from distributed import Client, as_completed
    except ImportError as err:
        raise UsageError("--scheduler needs Dask: pip install 'forensics[dask]'") from err
    try:
        client = Client(address, timeout=SCHEDULER_TIMEOUT)
    except Exception as err:  # OSError, TimeoutError, ValueError for a malformed address
        raise UsageError(f"--scheduler {address}: cannot reach it ({err})") from err
    with client:
        futures = [client.submit(analyze_job, job, settings[0], fp, settings[1], pure=False)
                   for job, fp in todo]
        for future in as_completed(futures):
            yield future.result()


def scan_fleet(roots: list[str], out: Path, workers: int, scheduler: str | None, full: bool,
               pattern_dirs: tuple[str, ...], fmt: str, show_progress: bool = False,
               limits: ReadLimits | None = None) -> tuple[str, bool, list[str]]:
    """`forensics scan`: run the scan, summarize the dataset and render the summary in
    `fmt` (md, json, text). Returns (text, whether any job failed, problems)."""
    if show_progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("scanning jobs", total=None)
            totals = run_scan(roots, out, workers, scheduler, full, pattern_dirs,
                              lambda done, total: bar.update(task, completed=done, total=total),
                              limits)
    else:
        totals = run_scan(roots, out, workers, scheduler, full, pattern_dirs, limits=limits)
    summary = summarize(read_jobs(out))
    failed = bool(summary.verdicts.get("failed"))
    if fmt == "json":
        data = {**summary.to_dict(), "analyzed": totals.analyzed, "reused": totals.reused,
                "out": str(out)}
        return json.dumps(scrub(data), indent=2) + "\n", failed, totals.problems
    text = render_fleet(summary, totals.analyzed, totals.reused, str(out))
    if fmt == "text":
        from rich.console import Console
        from rich.markdown import Markdown

        buffer = io.StringIO()
        Console(file=buffer, force_terminal=True).print(Markdown(text))
        text = buffer.getvalue()
    return text, failed, totals.problems
