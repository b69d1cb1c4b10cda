"""Find the job folders under a root and group the files of each job: SLURM output files
(`slurm-<id>.out`, `%x-%j.out`/`.err`), `torchrun --log-dir` runs, axolotl output folders,
`wandb/run-*` folders, and folders of loose logs. Symlinks are not followed (no loops),
unreadable folders are reported, FIFOs and other special files are never opened."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from forensics.inputs.sources import JSON_KINDS, artifact_kind, is_log_name

_SLURM = re.compile(r"^(?:slurm-(?P<id>\d+(?:_\d+)?)|(?P<name>.+?)-(?P<id2>\d{2,}(?:_\d+)?))"
                    r"\.(?:out|err)$")
_ATTEMPT = re.compile(r"^attempt_\d+$")
_WANDB_RUN = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-(?P<id>\w+)")
_CHECKPOINT = re.compile(r"^checkpoint-\d+$")
AXOLOTL_MARKERS = ("debug.log", "trainer_state.json")


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
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
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
                dirs[:] = [d for d in dirs if not _CHECKPOINT.match(d)]
                out += [os.path.join(folder, f) for f in files]
        else:
            out.append(item)
    return out


_RANK_PART = re.compile(r"[_.-]?(?:rank|node|proc)[_-]?\d+|[_.-]?(?:stdout|stderr|std(?:out|err))",
                        re.IGNORECASE)


def _same_job_key(name: str) -> str:
    """Loose files of one job share a key: `train_rank3.log` and `train_rank0.log`,
    `run.out` and `run.err`, `stdout.log` and `stderr.log`; other files are jobs of their own."""
    stem = name.split(".")[0]
    return _RANK_PART.sub("", stem) or "job"


def _has_attempts(folder: Path) -> bool:
    try:
        return any(_ATTEMPT.match(entry.name) and entry.is_dir(follow_symlinks=False)
                   for entry in os.scandir(folder))
    except OSError:
        return False


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def discover_jobs(*roots: str | Path) -> Discovery:
    """Every job under the roots, sorted by path."""
    found = Discovery()
    for root in roots:
        _walk(Path(root), found)
    found.jobs.sort(key=lambda j: (j.path, j.job_id))
    return found


def _walk(root: Path, found: Discovery) -> None:
    def on_error(err: OSError) -> None:
        found.problems.append(f"{err.filename}: {err.strerror or err}")

    for folder, dirs, files in os.walk(root, onerror=on_error, followlinks=False):
        here = Path(folder)
        dirs.sort()
        if any(_ATTEMPT.match(d) for d in dirs) or (
                any(is_log_name(f) for f in files) and any(_has_attempts(here / d) for d in dirs)):
            # a torchrun run folder, or the launcher's output next to one: one job
            found.jobs.append(Job(here.name, str(here), (str(here),), "torchrun"))
            dirs.clear()
            continue
        wandb = _WANDB_RUN.match(here.name)
        if wandb and here.parent.name in ("wandb", ".wandb"):
            found.jobs.append(Job(wandb.group("id"), str(here), (str(here),), "wandb"))
            dirs.clear()
            continue
        if here.name in ("wandb", ".wandb"):
            continue  # only its run folders are jobs (latest-run is a symlink)
        logs = sorted(f for f in files if (is_log_name(f) or f in JSON_KINDS)
                      and _regular(here / f))
        has_checkpoints = any(_CHECKPOINT.match(d) for d in dirs)
        dirs[:] = [d for d in dirs if not _CHECKPOINT.match(d)]
        slurm: dict[str, list[str]] = {}
        loose = []
        for name in logs:
            match = _SLURM.match(name)
            if match is not None:
                slurm.setdefault(match.group("id") or match.group("id2"), []).append(name)
            else:
                loose.append(name)
        if any(m in files for m in AXOLOTL_MARKERS) or has_checkpoints or (
                logs and any(artifact_kind(f) for f in files)):
            # an output folder, or logs beside Flight Recorder dumps / memory snapshots
            layout = "axolotl" if (any(m in files for m in AXOLOTL_MARKERS)
                                    or has_checkpoints) else "folder"
            found.jobs.append(Job(here.name, str(here), (str(here),), layout))
            dirs.clear()  # the whole folder (logs, checkpoints, wandb/, dumps) is one job
            continue
        for job_id, names in sorted(slurm.items()):
            extra = loose if len(slurm) == 1 else []
            inputs = tuple(str(here / n) for n in sorted(names + extra))
            found.jobs.append(Job(job_id, str(here), inputs, "slurm"))
        if loose and len(slurm) != 1:
            groups: dict[str, list[str]] = {}
            for name in loose:
                groups.setdefault(_same_job_key(name), []).append(name)
            single = len(groups) == 1
            for key, names in sorted(groups.items()):
                job_id = here.name if single else key
                found.jobs.append(Job(job_id, str(here),
                                      tuple(str(here / n) for n in names), "folder"))
