"""What to change, for this run: the root cause's fix bullets for the stacks the log shows
(an HF Trainer run gets no axolotl keys), with the job id, host, time and the root's own
captures filled into its commands."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath

from forensics.catalog import Signature
from forensics.inputs.layouts import slurm_job_id
from forensics.lines.facts import SLURM_JOB
from forensics.model import RootCause, Token, Traceback
from forensics.stacks import advice, detect_stacks

#: captures that name a scheduler job (`*** JOB 4711 ON node CANCELLED ...`)
JOB_CAPTURES = ("job_id", "job")


def run_stacks(tokens: Iterable[Token], tracebacks: Iterable[Traceback],
               source_names: Iterable[str], printed_by: Iterable[str] = ()) -> tuple[str, ...]:
    """The stacks the run used, from the lines that name them, its tracebacks' packages, its
    files' names and the stacks whose own metric lines it printed (`printed_by`)."""
    names = list(source_names)
    return detect_stacks((t.text for t in tokens if "fact" in t.tags),
                         (p for tb in tracebacks for p in tb.packages),
                         slurm_job=any(_file_job(name) for name in names),
                         known=printed_by)


def root_fixes(root: RootCause, signature: Signature, stacks: tuple[str, ...],
               environment: dict[str, str], source_names: Iterable[str]) -> tuple[str, ...]:
    """The root cause's fix bullets for these stacks, placeholders filled."""
    captures = root.finding.capture_dict
    values = dict(captures)
    job = next((captures[k] for k in JOB_CAPTURES if captures.get(k)), None) \
        or environment.get(SLURM_JOB) \
        or next((j for j in map(_file_job, source_names) if j), None)
    if job:
        values["job_id"] = job.split(".")[0]  # a step (`4711.0`) belongs to job 4711
    host = root.finding.who.host or captures.get("node") or captures.get("host")
    if host:
        values["host"] = host
    if root.finding.who.time:
        values["time"] = root.finding.who.time
    return advice(signature.fix, stacks, values)


def _file_job(name: str) -> str | None:
    return slurm_job_id(PurePath(name).name)
