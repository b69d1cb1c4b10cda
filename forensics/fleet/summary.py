"""The summary of a scan: what fails, how often, on which nodes, and the failures no
signature knows yet, clustered by a normalized template of their failure line."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from forensics.model import FleetSummary

#: root signatures that mean "no signature knows this failure"
UNKNOWN = ("python-exception", "worker-exit-nonzero", "sigterm-received")
#: categories that point at the node rather than the job
NODE_CATEGORIES = ("gpu", "distributed")
SUSPECT_MIN_FAILURES = 3
SUSPECT_RATIO = 3.0
SUSPECT_RULE = (f"a host is suspect when at least {SUSPECT_MIN_FAILURES} of its jobs died of a "
                f"GPU or NCCL failure (categories {', '.join(NODE_CATEGORIES)}: Xid, ECC, "
                f"illegal access, NCCL errors and timeouts) and that is at least "
                f"{SUSPECT_RATIO:g}x the rate expected from its share of all jobs")

_MASKS = (
    (re.compile(r"\x1b\[[0-9;]*m"), ""),
    (re.compile(r"(?:/[\w.+-]+)+/?"), "<path>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\[rank\d+\]:?|\brank \d+\b|\[Rank \d+\]", re.IGNORECASE), "<rank>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\b[0-9a-f]{8,}\b"), "<id>"),
    (re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def template(line: str) -> str:
    """A failure line with numbers, paths, hex, ids, strings and ranks masked."""
    text = line or ""
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return text.strip()[:240]


def summarize(rows: list[dict], top: int = 15) -> FleetSummary:
    """The summary of a scan's job rows."""
    summary = FleetSummary(jobs=len(rows), suspect_rule=SUSPECT_RULE)
    summary.verdicts = dict(Counter(r["verdict"] for r in rows).most_common())
    failed = [r for r in rows if r["verdict"] == "failed"]
    summary.errors = summary.verdicts.get("error", 0)
    summary.failure_rate = round(len(failed) / len(rows), 4) if rows else 0.0
    signatures = Counter((r["root_signature"], r["category"]) for r in failed)
    summary.by_signature = [(s, c, n) for (s, c), n in signatures.most_common(top)]
    summary.by_category = Counter(r["category"] for r in failed).most_common()
    summary.suspect_hosts = _suspects(rows)
    summary.unknown_clusters = _clusters(failed, top)
    summary.fixes = Counter(r["fix"] for r in failed if r.get("fix")).most_common(5)
    return summary


def _hosts(row: dict) -> set[str]:
    return set(row.get("hosts") or ()) | ({row["host"]} if row.get("host") else set())


def _suspects(rows: list[dict]) -> list[dict]:
    jobs_on: Counter[str] = Counter()
    node_failures: Counter[str] = Counter()
    signatures: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        hosts = _hosts(row)
        jobs_on.update(hosts)
        if row["verdict"] == "failed" and row.get("category") in NODE_CATEGORIES:
            blamed = {row["host"]} if row.get("host") else hosts
            node_failures.update(blamed)
            for host in blamed:
                signatures[host][row["root_signature"]] += 1
    total_jobs = max(1, sum(1 for r in rows if _hosts(r)))
    rate = sum(node_failures.values()) / total_jobs
    out = []
    for host, failures in node_failures.most_common():
        expected = rate * jobs_on[host]
        if failures >= SUSPECT_MIN_FAILURES and failures >= SUSPECT_RATIO * expected:
            out.append({"host": host, "jobs": jobs_on[host], "node_failures": failures,
                        "expected": round(expected, 2),
                        "signatures": dict(signatures[host].most_common())})
    return out


def _clusters(failed: list[dict], top: int) -> list[dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in failed:
        if row["root_signature"] in UNKNOWN:
            groups[template(row.get("root_text") or "")].append(row)
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))[:top]
    return [{"template": t, "jobs": len(members),
             "exception_type": members[0].get("exception_type"),
             "example": {"job_id": members[0]["job_id"], "path": members[0]["path"],
                         "line": members[0].get("root_text")}}
            for t, members in ranked]
