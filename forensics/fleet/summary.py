"""The summary of a scan: what fails, how often, on which nodes, and the failures no
signature knows yet, clustered by a normalized template of their failure line."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

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


@dataclass
class Summary:
    """Figures over all scanned jobs."""

    jobs: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    failure_rate: float = 0.0
    by_signature: list[tuple[str, str, int]] = field(default_factory=list)
    by_category: list[tuple[str, int]] = field(default_factory=list)
    suspect_hosts: list[dict] = field(default_factory=list)
    unknown_clusters: list[dict] = field(default_factory=list)
    fixes: list[tuple[str, int]] = field(default_factory=list)
    errors: int = 0

    def to_dict(self) -> dict:
        return {
            "jobs": self.jobs, "verdicts": self.verdicts, "failure_rate": self.failure_rate,
            "by_signature": [{"signature": s, "category": c, "jobs": n}
                             for s, c, n in self.by_signature],
            "by_category": [{"category": c, "jobs": n} for c, n in self.by_category],
            "suspect_hosts": self.suspect_hosts, "suspect_rule": SUSPECT_RULE,
            "unknown_clusters": self.unknown_clusters,
            "fixes": [{"fix": f, "jobs": n} for f, n in self.fixes], "errors": self.errors,
        }


def summarize(rows: list[dict], top: int = 15) -> Summary:
    """The summary of a scan's job rows."""
    summary = Summary(jobs=len(rows))
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


def render_markdown(summary: Summary, analyzed: int, reused: int, out: str) -> str:
    """The summary as Markdown."""
    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    failed = summary.verdicts.get("failed", 0)
    lines = [f"## forensics scan: {summary.jobs} jobs, {failed} failed "
             f"({100 * summary.failure_rate:.1f}%)", "",
             f"{analyzed} analyzed, {reused} unchanged since the last scan; dataset in `{out}`.",
             "", "Verdicts: " + ", ".join(f"{k} {v}" for k, v in summary.verdicts.items()) + "."]
    if summary.by_signature:
        lines += ["", "### Failures by root cause", "", "| signature | category | jobs |",
                  "|---|---|---|"]
        lines += [f"| `{s}` | {c} | {n} |" for s, c, n in summary.by_signature]
        lines += ["", "By category: " + ", ".join(f"{c} {n}" for c, n in summary.by_category)
                  + "."]
    lines += ["", "### Suspect nodes", "", f"Rule: {SUSPECT_RULE}.", ""]
    if summary.suspect_hosts:
        lines += ["| host | jobs | GPU/NCCL failures | expected | signatures |",
                  "|---|---|---|---|---|"]
        lines += [f"| {cell(h['host'])} | {h['jobs']} | {h['node_failures']} | "
                  f"{h['expected']} | " + ", ".join(f"`{s}` {n}" for s, n in
                                                    h["signatures"].items()) + " |"
                  for h in summary.suspect_hosts]
    else:
        lines.append("None.")
    if summary.unknown_clusters:
        lines += ["", "### Failures no signature knows (clustered)", "",
                  "| jobs | template | example |", "|---|---|---|"]
        lines += [f"| {c['jobs']} | `{cell(c['template'])}` | "
                  f"{cell(c['example']['job_id'])}: `{cell(c['example']['line'] or '')[:160]}` |"
                  for c in summary.unknown_clusters]
        lines += ["", "Each cluster is a candidate for a new signature (`patterns/README.md`)."]
    if summary.fixes:
        lines += ["", "### Most frequent fixes", ""]
        lines += [f"- ({n} jobs) {fix}" for fix, n in summary.fixes]
    if summary.errors:
        lines += ["", f"{summary.errors} job(s) could not be analyzed: see the `error` column."]
    return "\n".join(lines) + "\n"
