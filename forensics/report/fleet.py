"""The fleet summary of a scan as Markdown. Values from the jobs (hosts, job ids, cluster
templates and example lines, the output folder) go in through `forensics.text`."""

from __future__ import annotations

from forensics.model import FleetSummary
from forensics.text import clip, md_code, md_text

EXAMPLE_CHARS = 160  # of a cluster's example line


def render_fleet(summary: FleetSummary, analyzed: int, reused: int, out: str) -> str:
    """The summary as Markdown."""
    failed = summary.verdicts.get("failed", 0)
    lines = [f"## forensics scan: {summary.jobs} jobs, {failed} failed "
             f"({100 * summary.failure_rate:.1f}%)", "",
             f"{analyzed} analyzed, {reused} unchanged since the last scan; dataset in "
             f"{md_code(out)}.",
             "", "Verdicts: " + ", ".join(f"{md_text(k)} {v}"
                                          for k, v in summary.verdicts.items()) + "."]
    if summary.by_signature:
        lines += ["", "### Failures by root cause", "", "| signature | category | jobs |",
                  "|---|---|---|"]
        lines += [f"| {md_code(s, in_table=True)} | {md_text(c)} | {n} |"
                  for s, c, n in summary.by_signature]
        lines += ["", "By category: " + ", ".join(f"{md_text(c)} {n}"
                                                  for c, n in summary.by_category) + "."]
    lines += ["", "### Suspect nodes", "", f"Rule: {summary.suspect_rule}.", ""]
    if summary.suspect_hosts:
        lines += ["| host | jobs | GPU/NCCL failures | expected | signatures |",
                  "|---|---|---|---|---|"]
        lines += [f"| {md_text(h['host'])} | {h['jobs']} | {h['node_failures']} | "
                  f"{h['expected']} | " + ", ".join(f"{md_code(s, in_table=True)} {n}"
                                                    for s, n in h["signatures"].items()) + " |"
                  for h in summary.suspect_hosts]
    else:
        lines.append("None.")
    if summary.unknown_clusters:
        lines += ["", "### Failures no signature knows (clustered)", "",
                  "| jobs | template | example |", "|---|---|---|"]
        lines += [f"| {c['jobs']} | {md_code(c['template'], in_table=True)} | "
                  f"{md_text(c['example']['job_id'])}: "
                  f"{md_code(clip(c['example']['line'] or '', EXAMPLE_CHARS), in_table=True)} |"
                  for c in summary.unknown_clusters]
        lines += ["", "Each cluster is a candidate for a new signature (`patterns/README.md`)."]
    if summary.fixes:
        lines += ["", "### Most frequent fixes", ""]
        lines += [f"- ({n} jobs) {fix}" for fix, n in summary.fixes]
    if summary.errors:
        lines += ["", f"{summary.errors} job(s) could not be analyzed: see the `error` column."]
    return "\n".join(lines) + "\n"
