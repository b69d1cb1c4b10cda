"""The fleet summary of a scan as Markdown. Values from the jobs (job ids, log paths, users,
partitions, hosts, cluster templates and example lines, the output folder) go in through
`forensics.text`."""

from __future__ import annotations

from forensics.model import Breakdown, FleetSummary, JobList
from forensics.text import clip, md_code, md_text

EXAMPLE_CHARS = 160  # of a cluster's example line
#: the job lists besides the failed jobs: FleetSummary.job_lists key, title, what they are
JOB_SECTIONS = (
    ("completed_unhealthy", "Completed with unhealthy metrics",
     "the run finished, but its metrics show anomalies (the `anomalies` column counts them; "
     "`forensics analyze` of the log names them)"),
    ("interrupted", "Interrupted",
     "stopped from outside or cut off mid-training, with no failure in the logs"),
    ("unknown", "Ending unknown", "the logs say neither that the run finished nor how it stopped"),
    ("error", "Could not be analyzed", "the `error` column says why"),
)


def render_fleet(summary: FleetSummary, analyzed: int, reused: int, out: str) -> str:
    """The summary as Markdown."""
    failed = summary.verdicts.get("failed", 0)
    lines = [f"## forensics scan: {summary.jobs} jobs, {failed} failed "
             f"({100 * summary.failure_rate:.1f}%)", "",
             f"{analyzed} analyzed, {reused} unchanged since the last scan; dataset in "
             f"{md_code(out)}.",
             "", "Verdicts: " + ", ".join(f"{md_text(k)} {v}"
                                          for k, v in summary.verdicts.items()) + "."]
    lines += _causes(summary)
    lines += _breakdown(summary.by_user, summary.jobs)
    lines += _breakdown(summary.by_partition, summary.jobs)
    lines += _suspects(summary)
    lines += _clusters(summary)
    for key, title, what in JOB_SECTIONS:
        jobs = summary.job_lists.get(key, JobList())
        if jobs.jobs:
            lines += ["", f"### {title}", "", f"{jobs_count(jobs.jobs)}: {what}.", ""]
            lines += job_lines(jobs)
    if summary.fixes:
        lines += ["", "### Most frequent fixes", ""]
        lines += [f"- ({jobs_count(n)}) {fix}" for fix, n in summary.fixes]
    return "\n".join(lines) + "\n"


def jobs_count(n: int) -> str:
    """`1 job`, `2 jobs`."""
    return f"{n} job" if n == 1 else f"{n} jobs"


def job_lines(jobs: JobList) -> list[str]:
    """A bullet per listed job (its id and main log), then how many more there are."""
    lines = [f"- {md_code(job.job_id)}: {md_code(clip(job.path))}" for job in jobs.listed]
    if jobs.more:
        lines.append(f"- and {jobs.more} more (`jobs.parquet`)")
    return lines


def _causes(summary: FleetSummary) -> list[str]:
    if not summary.by_signature:
        return []
    lines = ["", "### Failures by root cause", "", "| signature | category | jobs |",
             "|---|---|---|"]
    lines += [f"| {md_code(c.signature, in_table=True)} | {md_text(c.category)} | {c.jobs.jobs} |"
              for c in summary.by_signature]
    other = summary.other_causes
    if other.jobs:
        lines.append(f"| other causes | | {other.jobs} |")
    lines += ["", "By category: " + ", ".join(f"{md_text(c)} {n}"
                                              for c, n in summary.by_category) + ".",
              "", "The failed jobs of each cause (job id: main log, the first by path):"]
    for cause in summary.by_signature:
        lines += ["", f"{md_code(cause.signature)}, {jobs_count(cause.jobs.jobs)}:", ""]
        lines += job_lines(cause.jobs)
    if other.jobs:
        lines += ["", f"Other causes, {jobs_count(other.jobs)}:", ""]
        lines += job_lines(other)
    return lines


def _breakdown(breakdown: Breakdown, jobs: int) -> list[str]:
    """Failures per user (or partition), where the jobs' logs or paths say which."""
    label = breakdown.label
    lines = ["", f"### Failures by {label}", ""]
    if not breakdown.known:
        return [*lines, f"No job's {label} is known (none of {jobs} jobs)."]
    lines += [f"{label.capitalize()} known for {breakdown.known} of {jobs} jobs; "
              f"{jobs - breakdown.known} with no {label} known.", "",
              f"| {label} | jobs | failed | main causes |", "|---|---|---|---|"]
    lines += [f"| {md_text(g.name)} | {g.jobs} | {g.failed} | "
              + ", ".join(f"{md_code(s, in_table=True)} {n}" for s, n in g.causes) + " |"
              for g in breakdown.groups]
    if breakdown.more:
        lines += ["", f"And {breakdown.more} more (the `{label}` column)."]
    return lines


def _suspects(summary: FleetSummary) -> list[str]:
    lines = ["", "### Suspect nodes", "",
             f"Host known for {summary.hosts_known} of {summary.jobs} jobs. "
             f"Rule: {summary.suspect_rule}.", ""]
    if not summary.suspect_hosts:
        return [*lines, "None."]
    lines += ["| host | jobs | GPU/NCCL failures | expected | signatures |",
              "|---|---|---|---|---|"]
    lines += [f"| {md_text(h['host'])} | {h['jobs']} | {h['node_failures']} | "
              f"{h['expected']} | " + ", ".join(f"{md_code(s, in_table=True)} {n}"
                                                for s, n in h["signatures"].items()) + " |"
              for h in summary.suspect_hosts]
    return lines


def _clusters(summary: FleetSummary) -> list[str]:
    if not summary.unknown_clusters:
        return []
    lines = ["", "### Failures no signature knows (clustered)", "",
             "| jobs | template | example |", "|---|---|---|"]
    lines += [f"| {c['jobs']} | {md_code(c['template'], in_table=True)} | "
              f"{md_code(c['example']['job_id'], in_table=True)}: "
              f"{md_code(clip(c['example']['line'] or '', EXAMPLE_CHARS), in_table=True)} |"
              for c in summary.unknown_clusters]
    return [*lines, "", "Each cluster is a candidate for a new signature (`patterns/README.md`)."]
