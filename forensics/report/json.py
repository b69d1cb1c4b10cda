"""The versioned JSON report."""

from __future__ import annotations

import json
import math
from typing import Any

from forensics.model import SCHEMA_VERSION, Analysis, Finding


def analysis_to_dict(analysis: Analysis) -> dict[str, Any]:
    """The JSON contract of DESIGN.md as plain Python data."""
    root = analysis.root_cause
    return {
        "schema_version": SCHEMA_VERSION,
        "verdict": analysis.verdict,
        "root_cause": None if root is None else {
            "signature": root.finding.signature,
            "title": root.finding.title,
            "category": root.finding.category,
            "confidence": root.confidence,
            "exception_type": root.finding.exception_type,
            "rank": root.finding.rank,
            "local_rank": root.finding.who.local_rank,
            "host": root.finding.who.host,
            "time": root.finding.who.time,
            "step": root.finding.step if root.finding.step is not None
            else analysis.timeline.last_step,
            "captures": dict(root.finding.captures),
            "reasons": list(root.reasons),
            "confirmed": root.finding.confirmed,
            "missing_evidence": root.missing_evidence or None,
            "evidence": [e.to_dict() for e in root.finding.evidence],
        },
        "findings": [_finding(f) for f in analysis.findings],
        "anomalies": [
            {"metric": a.metric, "kind": a.kind, "step": a.step, "end_step": a.end_step,
             "value": a.value if math.isfinite(a.value) else None, "healthy": a.healthy,
             "advice": a.advice}
            for a in analysis.anomalies
        ],
        "timeline": {
            "steps_logged": analysis.timeline.steps_logged,
            "last_step": analysis.timeline.last_step,
            "max_steps": analysis.timeline.max_steps,
            "last_time": analysis.timeline.last_time,
            "lines_after_last_step": analysis.timeline.lines_after_last_step,
            "last_checkpoint": None if analysis.timeline.last_checkpoint is None else {
                "path": analysis.timeline.last_checkpoint.path,
                "step": analysis.timeline.last_checkpoint.step,
                "time": analysis.timeline.last_checkpoint.time,
            },
        },
        "ranks": [
            {"rank": r.rank, "host": r.host, "role": r.role, "exitcode": r.exitcode,
             "last_event": r.last_event, "where": r.where}
            for r in analysis.ranks
        ],
        "fixes": list(analysis.fixes),
        "artifacts": [{"kind": kind, "markdown": text} for kind, text in analysis.artifacts],
        "environment": dict(analysis.environment),
        "sources": [
            {"name": s.name, "bytes": s.bytes_read, "lines": s.lines,
             "problems": list(s.problems), "notes": list(s.notes)}
            for s in analysis.sources
        ],
    }


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "signature": finding.signature,
        "title": finding.title,
        "category": finding.category,
        "severity": finding.severity,
        "role": finding.role,
        "count": finding.count,
        "ranks": list(finding.ranks),
        "hosts": list(finding.hosts),
        "exception_type": finding.exception_type,
        "captures": dict(finding.captures),
        "first": finding.first.to_dict(),
    }


def render_json(analysis: Analysis) -> str:
    """The report as indented JSON text."""
    return json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n"
