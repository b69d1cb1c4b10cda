"""Find the job folders under a root and group the files of each job: SLURM output files
(`slurm-<id>.out`, `%x-%j.out`/`.err`), `torchrun --log-dir` runs, axolotl output folders,
`wandb/run-*` folders, and folders of loose logs. Symlinks are not followed (no loops),
unreadable folders are reported, FIFOs and other special files are never opened."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from forensics.inputs.layouts import (
    CHECKPOINT_DIR,
    METRIC_FILES,
    WANDB_FOLDERS,
    Folder,
    is_log_name,
    same_job_key,
    slurm_job_id,
    whole_folder_layout,
)
from forensics.inputs.sources import regular_file


@dataclass(frozen=True)
class Job:
    """One job: an id, the folder it lives in, and the inputs `forensics analyze` gets."""

    job_id: str
    path: str
    inputs: tuple[str, ...]
    layout: str  # slurm | torchrun | axolotl | wandb | folder

    def fingerprint(self, versions: str) -> str:
        """Changes when any input file changes (path, size, mtime) or the analyzer does."""
        digest = hashlib.sha256(versions.encode())
        for path in sorted(_files(self.inputs)):
            try:
                info = os.stat(path)
            except OSError:
                continue
            digest.update(os.fsencode(path) + f"\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:32]


@dataclass
class Discovery:
    """What a walk found: jobs, and the folders it could not read."""

    jobs: list[Job] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _files(inputs: tuple[str, ...]) -> list[str]:
    out = []
    for item in inputs:
        if os.path.isdir(item):
            for folder, dirs, files in os.walk(item, followlinks=False):
                dirs[:] = [d for d in dirs if not CHECKPOINT_DIR.match(d)]
                out += [os.path.join(folder, f) for f in files]
        else:
            out.append(item)
    return out


#: which of a job's files is its main log (`path` in jobs.parquet), per layout: the first
#: pattern (searched in the file's path below the job's folder) that a file matches wins;
#: between equals, the shallowest file, then the latest torchrun attempt, then natural order
#: (rank 2 before rank 10). A file no pattern names comes after those that one names.
MAIN_LOG: dict[str, tuple[re.Pattern[str], ...]] = {
    # the SLURM output (--output) before its --error file and loose logs beside them
    "slurm": (re.compile(r"\.out(?:\.\w+)?$"), re.compile(r"\.err(?:\.\w+)?$")),
    # the launcher's own output beside the run, else the stderr of the lowest local rank
    "torchrun": (re.compile(r"^[^/]+$"), re.compile(r"(?:^|/)stderr\.log$"),
                 re.compile(r"(?:^|/)stdout\.log$")),
    "wandb": (re.compile(r"^files/output\.log$"),),  # the run's console output
    "axolotl": (re.compile(r"^debug\.log$"),),
    "folder": (re.compile(r"\.out(?:\.\w+)?$"),),
}
NOT_MAIN = re.compile(r"(?:^|/)(?:error\.json|[^/]+\.(?:json|pickle|pkl|safetensors|bin|pt))$")
_ATTEMPT = re.compile(r"(?:^|/)attempt_(\d+)/")
_DIGITS = re.compile(r"(\d+)")


def main_log(job: Job, files: list[str]) -> str:
    """The job's main log among its input files (see `MAIN_LOG`); the job's folder when it
    has none (a job whose files could not be listed)."""
    if not files:
        return job.path
    preferences = MAIN_LOG.get(job.layout, ())
    whole_folder = job.inputs == (job.path,)

    def rank(path: str) -> tuple:
        below = os.path.relpath(path, job.path).replace(os.sep, "/") if whole_folder \
            else os.path.basename(path)
        named = next((i for i, p in enumerate(preferences) if p.search(below)),
                     len(preferences))
        attempt = _ATTEMPT.search(below)
        return (NOT_MAIN.search(below) is not None, named, below.count("/"),
                -int(attempt[1]) if attempt else 0,
                [int(part) if part.isdigit() else part for part in _DIGITS.split(below)])

    return min(files, key=rank)


def discover_jobs(*roots: str | Path) -> Discovery:
    """Every job under the roots, sorted by path; roots that overlap (one inside another,
    or one given twice) give each job once."""
    found = Discovery()
    for root in roots:
        _walk(Path(root), found)
    unique = {tuple(sorted(os.path.realpath(p) for p in job.inputs)): job for job in found.jobs}
    found.jobs = sorted(unique.values(), key=lambda j: (j.path, j.job_id))
    return found


def _walk(root: Path, found: Discovery) -> None:
    def on_error(err: OSError) -> None:
        found.problems.append(f"{err.filename}: {err.strerror or err}")

    for folder, dirs, files in os.walk(root, onerror=on_error, followlinks=False):
        here = Path(folder)
        dirs.sort()
        shape = Folder(here, tuple(dirs), tuple(files))
        layout = whole_folder_layout(shape)
        if layout is not None:
            # the whole folder (logs, checkpoints, wandb/, dumps) is one job
            found.jobs.append(Job(layout.job_id(shape), str(here), (str(here),), layout.name))
            dirs.clear()
            continue
        if here.name in WANDB_FOLDERS:
            continue  # only its run folders are jobs (latest-run is a symlink)
        dirs[:] = [d for d in dirs if not CHECKPOINT_DIR.match(d)]
        logs = sorted(f for f in files if (is_log_name(f) or f in METRIC_FILES)
                      and regular_file(here / f))
        found.jobs.extend(_file_jobs(here, logs))


def _file_jobs(here: Path, logs: list[str]) -> list[Job]:
    """The jobs of a folder that is not one job itself: SLURM outputs by job id (loose logs
    join a lone SLURM job), other logs grouped by name."""
    slurm: dict[str, list[str]] = {}
    loose = []
    for name in logs:
        job_id = slurm_job_id(name)
        if job_id is not None:
            slurm.setdefault(job_id, []).append(name)
        else:
            loose.append(name)
    jobs = []
    for job_id, names in sorted(slurm.items()):
        extra = loose if len(slurm) == 1 else []
        inputs = tuple(str(here / n) for n in sorted(names + extra))
        jobs.append(Job(job_id, str(here), inputs, "slurm"))
    if loose and len(slurm) != 1:
        groups: dict[str, list[str]] = {}
        for name in loose:
            groups.setdefault(same_job_key(name), []).append(name)
        single = len(groups) == 1
        for key, names in sorted(groups.items()):
            job_id = here.name if single else key
            jobs.append(Job(job_id, str(here), tuple(str(here / n) for n in names), "folder"))
    return jobs
