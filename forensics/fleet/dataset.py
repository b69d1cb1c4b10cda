"""The scan's Parquet dataset (the only Parquet reader and writer): one row per job and one
per finding, both flattened from `Analysis.to_dict()`, written in batches to temporary files
and renamed into place; earlier rows are reused by fingerprint."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from forensics.fleet.discover import Job
from forensics.model import Analysis

JOBS_FILE, FINDINGS_FILE = "jobs.parquet", "findings.parquet"
BATCH = 256

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
        "job_id": job.job_id, "path": job.path, "signature": f["signature"],
        "category": f["category"], "role": f["role"], "count": f["count"],
        "ranks": f["ranks"], "hosts": f["hosts"], "source": f["first"]["source"],
        "line": f["first"]["line"], "text": f["first"]["text"][:500],
    } for f in data["findings"]]
    return JobResult(row, findings)


class DatasetWriter:
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


def cached_rows(out: Path) -> dict[str, JobResult]:
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


def read_jobs(out: Path) -> list[dict]:
    """The job rows of a finished scan."""
    return pq.read_table(out / JOBS_FILE).to_pylist()
