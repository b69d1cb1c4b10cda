"""Who ran a job and on which partition, where its paths or its log say so: one table of
rules (`RULES`), each with an example that `tests/test_fleet_summary.py` runs. A label no
rule finds stays unknown; nothing is guessed from anything else."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from forensics.inputs.layouts import COMPRESSED_SUFFIXES
from forensics.inputs.sources import ReadStatus, Source, read_blocks

LABELS = ("user", "partition")
END_BYTES = 16 * 1024  # read at each end of the main log
_NAME = r"[A-Za-z0-9_][\w.-]{0,63}"
#: first folders under /home that hold users' homes, not a user (`/home/users/d/a/darimez`)
NOT_USERS = ("users", "shared", "share", "common", "apps", "software", "data", "groups",
             "projects", "opt", "tmp", "local")


@dataclass(frozen=True)
class Rule:
    """One way a job says a label: where to look (`path`: the job's file paths, made
    absolute; `text`: the first and last 16 KiB of its main log, and the job's last lines), a
    literal that must be there (lowercase; the cheap gate before the regex), the regex (the
    value is its `v` group), and an example with the value it must give."""

    label: str
    where: str
    keyword: str
    pattern: re.Pattern[str]
    example: tuple[str, str]


def _rule(label: str, where: str, keyword: str, regex: str, example: tuple[str, str]) -> Rule:
    return Rule(label, where, keyword, re.compile(regex, re.MULTILINE), example)


_NOT_USER = "(?!(?:" + "|".join(NOT_USERS) + ")/)"

#: in priority order: for each label, the first rule that finds a value gives it
RULES = (
    # what the scheduler says outright: SLURM's environment (echoed, or printed by `env`),
    # `scontrol show job`, an LSF job report's header
    _rule("user", "text", "slurm_job_user", rf"\bSLURM_JOB_USER\s*[=:]\s*[\"']?(?P<v>{_NAME})",
          ("SLURM_JOB_USER=alice", "alice")),
    _rule("user", "text", "userid=", rf"\bUserId=(?P<v>{_NAME})\(",
          ("   UserId=bob(50123) GroupId=ml(5000) MCS_label=N/A", "bob")),
    _rule("user", "text", "as user <", rf"\bas user <(?P<v>{_NAME})>",
          ("Job was executed on host(s) <n-62-20-2>, in queue <gpuv100>, as user <s183905> in "
           "cluster <dcc>", "s183905")),
    # where the job's files are: a home or a scratch folder (`/scratch/<user>/...`; a site
    # with `/scratch/<cluster>/<user>` needs a rule of its own here)
    _rule("user", "path", "/", rf"^/(?:home|users|Users)/{_NOT_USER}(?P<v>{_NAME})/",
          ("/home/carol/runs/slurm-7.out", "carol")),
    _rule("user", "path", "/scratch/", rf"/scratch/(?P<v>{_NAME})/",
          ("/gpfs/scratch/dave/exp1/slurm-8.out", "dave")),
    # a home folder in the log's own paths (a traceback's frames, a venv), a shell prompt
    _rule("user", "text", "/home/", rf"(?<![\w.~-])/home/{_NOT_USER}(?P<v>{_NAME})/",
          ('  File "/home/erin/.venv/lib/python3.11/site-packages/torch/nn/modules/module.py",'
           " line 1736, in _wrapped_call_impl", "erin")),
    _rule("user", "text", "]$", rf"^(?:\(\S+\) )?\[(?P<v>{_NAME})@[\w.-]+ [^\]\n]*\]\$",
          ("(meta_learning_a100) [miranda9@hal-dgx diversity]$ bash main_dgx.sh", "miranda9")),
    _rule("partition", "text", "slurm_job_partition",
          rf"\bSLURM_JOB_PARTITION\s*[=:]\s*[\"']?(?P<v>{_NAME})",
          ("export SLURM_JOB_PARTITION=gpu-a100", "gpu-a100")),
    _rule("partition", "text", "in queue <", rf"\bin queue <(?P<v>{_NAME})>",
          ("Job was executed on host(s) <n-62-20-2>, in queue <gpuv100>, as user <s183905>",
           "gpuv100")),
    _rule("partition", "text", "#sbatch", rf"^\s*#SBATCH\s+(?:--partition[= ]|-p\s*)(?P<v>{_NAME})",
          ("#SBATCH --partition=h100", "h100")),
    _rule("partition", "text", "#bsub", rf"^\s*#BSUB\s+-q\s+(?P<v>{_NAME})",
          ("#BSUB -q gpua100", "gpua100")),
    # `scontrol show job`'s Partition=, a script's `partition: ...` line, an echoed sbatch
    _rule("partition", "text", "partition",
          rf"(?i)(?:^|[\s,;])(?:--partition[= ]|partition\s*[=:]\s*)[\"']?(?P<v>{_NAME})",
          ("   Partition=long AllocNode:Sid=login1:12345", "long")),
    _rule("partition", "path", "partition", rf"/partition[-_=](?P<v>{_NAME})/",
          ("/data/runs/partition-debug/slurm-9.out", "debug")),
)


def ends(source: Source) -> list[str]:
    """The first `END_BYTES` of a log (decompressed) and, for a plain file, its last ones:
    where schedulers write their headers (SLURM's prologue and echoed script at the start,
    an LSF job report at the end)."""
    blocks = read_blocks(source, ReadStatus(), block_size=END_BYTES)
    with contextlib.closing(blocks):
        texts = [next(blocks, b"")[:END_BYTES].decode("utf-8", "replace")]
    path = source.path
    if path is None or path.name.lower().endswith(COMPRESSED_SUFFIXES):
        return texts
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            if size > END_BYTES:
                file.seek(max(END_BYTES, size - END_BYTES))
                tail = file.read(END_BYTES).decode("utf-8", "replace")
                texts.append(tail[tail.find("\n") + 1:])  # from the first whole line
    except OSError:
        pass  # read once already; a file gone since is the analysis's problem to report
    return texts


def job_labels(paths: Iterable[str], texts: Iterable[str]) -> dict[str, str | None]:
    """The user and partition the job's paths and log text state (None where unknown)."""
    where = {"path": "\n".join(os.path.abspath(p) for p in paths), "text": "\n".join(texts)}
    lowered = {k: v.lower() for k, v in where.items()}
    found: dict[str, str | None] = dict.fromkeys(LABELS)
    for rule in RULES:
        if found[rule.label] is None and rule.keyword in lowered[rule.where]:
            match = rule.pattern.search(where[rule.where])
            if match is not None:
                found[rule.label] = match["v"]
    return found
