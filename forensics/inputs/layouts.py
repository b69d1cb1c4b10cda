"""What the files and folders a training job leaves behind are, in one place: the file
names `forensics analyze` reads in a job folder, and the folder layouts `forensics scan`
treats as one job (a torchrun `--log-dir` run, a W&B run, a trainer output folder, logs
beside PyTorch dumps). SLURM output files and loose logs are grouped by name."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOG_SUFFIXES = (".log", ".out", ".err", ".txt")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
LOG_NAMES = ("debug.log", "output.log", "error.json", "metrics.jsonl", "wandb-history.jsonl")
#: metric files read whole (`metrics.fileshapes`), by name: their source kind
METRIC_FILES = {"trainer_state.json": "trainer-state", "wandb-summary.json": "wandb-summary",
                "metrics.csv": "metrics-csv"}
CHECKPOINT_DIR = re.compile(r"^checkpoint-(?P<step>\d+)$")
# NCCL Flight Recorder dumps: TORCH_NCCL_DEBUG_INFO_TEMP_FILE (a prefix) + the rank
FLIGHT_DUMP = re.compile(r"^(?P<prefix>[\w\-.]*?)(?P<rank>\d+)(?:\.pkl|\.pickle)?$")
FLIGHT_DUMP_PREFIXES = ("nccl_trace_rank_", "fr_trace_rank_", "flight_recorder_rank_",
                        "flight_recorder_rank")
MEMORY_SNAPSHOT = re.compile(r"(?i)^.*(?:snapshot|memory).*\.pickle$")
# torchrun --log-dir: <run>/attempt_N/<local_rank>/{stdout,stderr}.log and error.json
TORCHRUN_ATTEMPT = re.compile(r"^attempt_\d+$")
TORCHRUN_RANK_FILE = re.compile(r"attempt_\d+/(\d+)/(?:stdout\.log|stderr\.log|error\.json)$")
# per-rank files named by the user: train_rank3.log, rank-3.out, rank_03.err
NAMED_RANK = re.compile(r"(?:^|[_.-])rank[_-]?(\d+)(?:[_.-]|$)", re.IGNORECASE)
SLURM_OUTPUT = re.compile(r"^(?:slurm-(?P<id>\d+(?:_\d+)?)|(?P<name>.+?)-(?P<id2>\d{2,}(?:_\d+)?))"
                          r"\.(?:out|err)$")
WANDB_RUN = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-(?P<id>\w+)")
WANDB_FOLDERS = ("wandb", ".wandb")
TRAINER_OUTPUT_MARKERS = ("debug.log", "trainer_state.json")
_RANK_PART = re.compile(r"[_.-]?(?:rank|node|proc)[_-]?\d+|[_.-]?(?:stdout|stderr|std(?:out|err))",
                        re.IGNORECASE)


def is_log_name(name: str) -> bool:
    """True for file names a job folder's logs usually have."""
    lower = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
            break
    return lower.endswith(LOG_SUFFIXES) or lower in LOG_NAMES


def flight_dump_rank(name: str, any_prefix: bool = False) -> int | None:
    """The rank of a Flight Recorder dump file name; a name given explicitly may carry any
    prefix (`any_prefix`), one found in a folder must carry a known one."""
    found = FLIGHT_DUMP.match(name)
    if found is None or not (any_prefix or found["prefix"] in FLIGHT_DUMP_PREFIXES):
        return None
    return int(found["rank"])


def artifact_content(name: str) -> str | None:
    """`flight-dump` or `memory-snapshot` for the PyTorch pickles forensics reads."""
    if flight_dump_rank(name) is not None:
        return "flight-dump"
    if MEMORY_SNAPSHOT.match(name):
        return "memory-snapshot"
    return None


def checkpoint_step(name: str) -> int | None:
    """The step of a `checkpoint-N` folder name."""
    found = CHECKPOINT_DIR.match(name)
    return int(found["step"]) if found else None


def slurm_job_id(name: str) -> str | None:
    """The job id of a SLURM output file name (`slurm-123.out`, `train-123.err`)."""
    found = SLURM_OUTPUT.match(name)
    return (found["id"] or found["id2"]) if found else None


def same_job_key(name: str) -> str:
    """Loose files of one job share a key: `train_rank3.log` and `train_rank0.log`,
    `run.out` and `run.err`, `stdout.log` and `stderr.log`; other files are jobs of their own."""
    stem = name.split(".")[0]
    return _RANK_PART.sub("", stem) or "job"


@dataclass(frozen=True)
class Folder:
    """One folder of a walk: its path and the names of its subfolders and files."""

    path: Path
    dirs: tuple[str, ...]
    files: tuple[str, ...]


def _has_attempts(folder: Path) -> bool:
    try:
        return any(TORCHRUN_ATTEMPT.match(entry.name) and entry.is_dir(follow_symlinks=False)
                   for entry in os.scandir(folder))
    except OSError:
        return False


def _torchrun_run(folder: Folder) -> bool:
    """A torchrun --log-dir run, or the launcher's output next to one."""
    return any(TORCHRUN_ATTEMPT.match(d) for d in folder.dirs) or (
        any(is_log_name(f) for f in folder.files)
        and any(_has_attempts(folder.path / d) for d in folder.dirs))


def _wandb_run(folder: Folder) -> bool:
    return (WANDB_RUN.match(folder.path.name) is not None
            and folder.path.parent.name in WANDB_FOLDERS)


def _trainer_output(folder: Folder) -> bool:
    """An axolotl / HF Trainer output folder: its debug log, trainer state or checkpoints."""
    return (any(m in folder.files for m in TRAINER_OUTPUT_MARKERS)
            or any(CHECKPOINT_DIR.match(d) for d in folder.dirs))


def _logs_beside_dumps(folder: Folder) -> bool:
    """Logs next to Flight Recorder dumps or memory snapshots."""
    return (any(is_log_name(f) or f in METRIC_FILES for f in folder.files)
            and any(artifact_content(f) for f in folder.files))


@dataclass(frozen=True)
class Layout:
    """A folder shape that is one whole job (read as a job folder by `analyze`)."""

    name: str
    matches: Callable[[Folder], bool]
    job_id: Callable[[Folder], str] = lambda folder: folder.path.name


#: the whole-folder layouts, most specific first
LAYOUTS = (
    Layout("torchrun", _torchrun_run),
    Layout("wandb", _wandb_run, lambda folder: WANDB_RUN.match(folder.path.name)["id"]),
    Layout("axolotl", _trainer_output),
    Layout("folder", _logs_beside_dumps),
)


def whole_folder_layout(folder: Folder) -> Layout | None:
    """The first layout that makes this folder one job, if any."""
    return next((layout for layout in LAYOUTS if layout.matches(folder)), None)
