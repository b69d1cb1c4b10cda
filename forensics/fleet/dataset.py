"""The scan's Parquet dataset (the only Parquet reader and writer): one row per job and one
per finding, both flattened from `Analysis.to_dict()`, written in batches to temporary files
and renamed into place; earlier rows are reused by fingerprint."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from forensics.files import temporary_beside
from forensics.fleet.discover import Job
from forensics.inputs.sources import printable_name
from forensics.model import Analysis
from forensics.redact import redact
from forensics.text import term_safe

JOBS_FILE, FINDINGS_FILE = "jobs.parquet", "findings.parquet"
BATCH = 256

JOB_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("path", pa.string()), ("log_files", pa.list_(pa.string())),
    ("layout", pa.string()), ("user", pa.string()), ("partition", pa.string()),
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


@dataclass
class JobResult:
    """One job's row and its findings' rows."""

    row: dict
    findings: list[dict] = field(default_factory=list)


def job_rows(job: Job, analysis: Analysis, base: dict) -> JobResult:
    """The job's row and its findings' rows, from the analysis's one flattening."""
    data = analysis.to_dict()
    root = data["root_cause"]
    hosts = sorted({h for f in data["findings"] for h in f["hosts"]}
                   | {r["host"] for r in data["ranks"] if r["host"]}
                   | ({root["host"]} if root and root["host"] else set()))
    problems = [p for s in data["sources"] for p in s["problems"]]
    row = {
        **base,
        "verdict": data["verdict"],
        "root_signature": root["signature"] if root else None,
        "category": root["category"] if root else None,
        "confidence": root["confidence"] if root else None,
        "exception_type": root["exception_type"] if root else None,
        "rank": root["rank"] if root else None,
        "host": root["host"] if root else None,
        "hosts": hosts,
        "step": root["step"] if root else data["timeline"]["last_step"],
        "time": root["time"] if root else data["timeline"]["last_time"],
        "root_text": root["evidence"][0]["text"][:500] if root and root["evidence"] else None,
        "fix": data["fixes"][0] if data["fixes"] else None,
        "files": sum(1 for s in data["sources"] if s["name"] != "<inputs>"),
        "bytes": sum(s["bytes"] for s in data["sources"]),
        "anomalies": len(data["anomalies"]),
        "error": "; ".join(problems)[:1000] or None,
    }
    findings = [{
        "job_id": job.job_id, "path": base["path"], "signature": f["signature"],
        "category": f["category"], "role": f["role"], "count": f["count"],
        "ranks": f["ranks"], "hosts": f["hosts"], "source": f["first"]["source"],
        "line": f["first"]["line"], "text": f["first"]["text"][:500],
    } for f in data["findings"]]
    return JobResult(row, findings)


def _storable(value: object) -> object:
    """A cell Parquet can hold and a terminal can show: text from file names that are not
    UTF-8 made printable, terminal controls and bidi overrides dropped."""
    if isinstance(value, str):
        return term_safe(printable_name(value))
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


MACHINE_COLUMNS = frozenset({"fingerprint", "catalog_version", "analyzer_version", "scanned_at"})


def _stored(row: dict) -> dict:
    """A row as it is written: every text cell redacted but the machine-made ones (a new
    column is redacted without asking), then made storable."""
    redacted = redact({k: v for k, v in row.items() if k not in MACHINE_COLUMNS})
    return {k: _storable(redacted.get(k, v)) for k, v in row.items()}


class DatasetWriter:
    """Parquet written in batches to temporary files of this process, renamed into place on
    close, so an interrupted scan keeps everything finished so far, never leaves a torn file,
    and two scans into one folder do not write into each other's files."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.jobs: list[dict] = []
        self.findings: list[dict] = []
        self._temporaries = {name: temporary_beside(out / name)
                             for name in (JOBS_FILE, FINDINGS_FILE)}
        self._job_writer = pq.ParquetWriter(self._temporaries[JOBS_FILE], JOB_SCHEMA)
        self._finding_writer = pq.ParquetWriter(self._temporaries[FINDINGS_FILE],
                                                FINDING_SCHEMA)

    def add(self, result: JobResult, cached: bool = False) -> None:
        """Queue one job's rows; a fresh result is redacted and made storable on the way in,
        a `cached` one (read back from this dataset) already was."""
        self.jobs.append(result.row if cached else _stored(result.row))
        self.findings += (result.findings if cached else [_stored(f) for f in result.findings])
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
        """Write what is left and move both files into place."""
        try:
            self.flush()
            self._job_writer.close()
            self._finding_writer.close()
        except BaseException:
            self.abort()
            raise
        for name, temporary in self._temporaries.items():
            os.replace(temporary, self.out / name)

    def abort(self) -> None:
        """Remove the temporary files (the scan failed; earlier results stay as they were)."""
        for writer in (self._job_writer, self._finding_writer):
            with contextlib.suppress(Exception):  # a writer that already failed
                writer.close()
        for temporary in self._temporaries.values():
            temporary.unlink(missing_ok=True)


def cached_rows(out: Path, problems: list[str] | None = None) -> dict[str, JobResult]:
    """Earlier rows by fingerprint. A cache that is not exactly this version's dataset (a
    column missing or of another type, a torn file) is not trusted: every job is analyzed
    again, and `problems` says why."""
    jobs_path, findings_path = out / JOBS_FILE, out / FINDINGS_FILE
    if not jobs_path.is_file():
        return {}
    try:
        jobs = pq.read_table(jobs_path)
        found = pq.read_table(findings_path) if findings_path.is_file() else None
    except (OSError, pa.ArrowException) as err:
        _distrust(problems, jobs_path, f"not readable Parquet ({err})")
        return {}
    for path, table, schema in ((jobs_path, jobs, JOB_SCHEMA),
                                (findings_path, found, FINDING_SCHEMA)):
        if table is not None and not table.schema.equals(schema):
            _distrust(problems, path, "its columns are not this version's")
            return {}
    rows = jobs.to_pylist()
    findings = found.to_pylist() if found is not None else []
    by_job: dict[tuple[str, str], list[dict]] = {}
    for finding in findings:
        by_job.setdefault((finding["path"], finding["job_id"]), []).append(finding)
    return {row["fingerprint"]: JobResult(row, by_job.get((row["path"], row["job_id"]), []))
            for row in rows if row.get("fingerprint") and row.get("verdict") != "error"}


def _distrust(problems: list[str] | None, path: Path, why: str) -> None:
    if problems is not None:
        problems.append(f"{path}: cache not used, {why}; every job is analyzed again")


def read_jobs(out: Path) -> list[dict]:
    """The job rows of a finished scan."""
    return pq.read_table(out / JOBS_FILE).to_pylist()
