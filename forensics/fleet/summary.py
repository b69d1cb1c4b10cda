"""The summary of a scan: what fails, how often, which jobs, for which users and on which
partitions and nodes, the jobs that did not fail but did not end well, and the failures no
signature knows yet, clustered by a normalized template of their failure line."""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Callable

from forensics.model import Breakdown, Cause, FleetSummary, Group, JobList, JobRef

#: root signatures that mean "no signature knows this failure"
UNKNOWN = ("python-exception", "worker-exit-nonzero", "sigterm-received")
#: categories that point at the node rather than the job
NODE_CATEGORIES = ("gpu", "distributed")
TOP = 15  # causes, users, partitions, clusters shown
LISTED = 5  # jobs named per list; the rest are counted
CAUSES_PER_GROUP = 3  # of a user or a partition
#: the jobs the summary lists besides the failed ones, by section (FleetSummary.job_lists)
JOB_LISTS: dict[str, Callable[[dict], bool]] = {
    "completed_unhealthy": lambda r: r["verdict"] == "completed" and bool(r.get("anomalies")),
    "interrupted": lambda r: r["verdict"] == "interrupted",
    "unknown": lambda r: r["verdict"] == "unknown",
    "error": lambda r: r["verdict"] == "error",
}
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


def summarize(rows: list[dict], top: int = TOP) -> FleetSummary:
    """The summary of a scan's job rows; every list in it is capped (`top` groups, `LISTED`
    jobs per list), so it stays the same size for 100,000 jobs."""
    verdicts = dict(Counter(r["verdict"] for r in rows).most_common())
    failed = [r for r in rows if r["verdict"] == "failed"]
    causes, other = _causes(failed, top)
    return FleetSummary(
        jobs=len(rows), verdicts=verdicts, suspect_rule=SUSPECT_RULE,
        failure_rate=round(len(failed) / len(rows), 4) if rows else 0.0,
        by_signature=causes, other_causes=other,
        by_category=tuple(Counter(r["category"] for r in failed).most_common()),
        job_lists={name: job_list([r for r in rows if chosen(r)])
                   for name, chosen in JOB_LISTS.items()},
        by_user=_breakdown(rows, "user", top), by_partition=_breakdown(rows, "partition", top),
        hosts_known=sum(1 for r in rows if _hosts(r)),
        suspect_hosts=tuple(_suspects(rows)), unknown_clusters=tuple(_clusters(failed, top)),
        fixes=tuple(Counter(r["fix"] for r in failed if r.get("fix")).most_common(5)),
        errors=verdicts.get("error", 0))


def job_list(rows: list[dict], limit: int = LISTED) -> JobList:
    """How many jobs, and the first `limit` of them by main log path."""
    first = heapq.nsmallest(limit, rows, key=lambda r: (r.get("path") or "", r["job_id"] or ""))
    return JobList(len(rows), tuple(JobRef(r["job_id"], r.get("path") or "") for r in first))


def _causes(failed: list[dict], top: int) -> tuple[tuple[Cause, ...], JobList]:
    """The `top` root causes by failed jobs, each with its jobs; the rest's jobs together."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in failed:
        groups[(row["root_signature"] or "", row["category"] or "")].append(row)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    causes = tuple(Cause(s, c, job_list(members)) for (s, c), members in ranked[:top])
    return causes, job_list([r for _, members in ranked[top:] for r in members])


def _breakdown(rows: list[dict], label: str, top: int) -> Breakdown:
    """Jobs, failures and their main causes per value of `label`, where it is known."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get(label):
            groups[row[label]].append(row)
    made = []
    for name, members in groups.items():
        causes = Counter(r["root_signature"] for r in members if r["verdict"] == "failed")
        made.append(Group(name, len(members), sum(causes.values()),
                          tuple(causes.most_common(CAUSES_PER_GROUP))))
    made.sort(key=lambda g: (-g.failed, -g.jobs, g.name))
    return Breakdown(label, tuple(made[:top]), max(0, len(made) - top),
                     sum(g.jobs for g in made))


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
