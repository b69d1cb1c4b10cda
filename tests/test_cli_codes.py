"""Every command exits as its own `--help` says: each code it lists is reached by a real
input, and no scenario gives a code it does not list. 130 (Ctrl-C) is shared by every command
and checked in tests/test_hardening_inputs.py."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from forensics.cli import cli

from .conftest import SAMPLES
from .test_artifacts import dump, snapshot, write_safetensors

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"
TRAINING = "".join(f"{{'loss': {2 - i / 100}, 'epoch': {i / 100}}}\n" for i in range(20))


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def listed_codes(*command: str) -> set[int]:
    """The exit codes a command's help lists."""
    text = invoke(*command, "--help").output
    block = text[text.index("Exit codes:"):]
    return {int(code) for code in re.findall(r"^\s+(\d+)\s", block, re.MULTILINE)}


def broken_catalog(root: Path) -> Path:
    folder = root / "patterns" / "python"
    folder.mkdir(parents=True)
    (folder / "broken.toml").write_text("id = [unclosed\n")
    return root / "patterns"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def dumps(folder: Path, agree: bool) -> Path:
    folder.mkdir()
    for rank in range(2):
        seqs = [1, 2, 3] if agree or rank == 0 else [1, 2]
        (folder / f"nccl_trace_rank_{rank}").write_bytes(pickle.dumps(dump(rank, seqs)))
    return folder


def scenarios(tmp: Path) -> dict[tuple[str, ...], list[tuple[list, int]]]:
    """For each command: (arguments, the exit code they must give)."""
    metrics = write(tmp / "metrics.log", TRAINING + "{'train_runtime': 1.0, 'epoch': 1.0}\n")
    finite, nan = tmp / "finite.safetensors", tmp / "nan.safetensors"
    write_safetensors(finite, {"w": np.ones((2, 2), dtype=np.float32)})
    write_safetensors(nan, {"w": np.array([1.0, np.nan], dtype=np.float32)})
    snap = tmp / "snapshot.pickle"
    snap.write_bytes(pickle.dumps(snapshot()))
    healthy_fleet, failed_fleet = tmp / "fleet-ok" / "j1", tmp / "fleet-bad" / "j1"
    write(healthy_fleet / "slurm-1.out", "{'train_runtime': 1.0, 'epoch': 1.0}\n")
    write(failed_fleet / "slurm-2.out", OOM)
    missing = tmp / "missing"
    broken = broken_catalog(tmp / "catalog")
    return {
        ("analyze",): [
            ([SAMPLES / "healthy-run.log"], 0),
            ([write(tmp / "oom.log", OOM)], 1),
            ([write(tmp / "stopped.log", TRAINING + "some unrelated output\n")], 1),
            (["--exit-zero", tmp / "oom.log"], 0),
            (["--format", "yaml", tmp / "oom.log"], 2),
            ([missing], 3),
            (["--patterns", broken, tmp / "oom.log"], 3)],
        ("timeline",): [
            ([metrics], 0),
            (["--format", "parquet", metrics], 2),
            ([tmp / "oom.log"], 3),
            ([missing], 3)],
        ("scan",): [
            ([healthy_fleet.parent, "--out", tmp / "out-ok"], 0),
            ([failed_fleet.parent, "--out", tmp / "out-bad"], 1),
            ([failed_fleet.parent, "--jobs", "0"], 2),
            ([missing], 3)],
        ("patterns", "list"): [([], 0), (["--format", "yaml"], 2), (["--patterns", broken], 3)],
        ("patterns", "show"): [(["cuda-oom"], 0), (["cuda_oom"], 2),
                               (["cuda-oom", "--patterns", broken], 3)],
        ("patterns", "check"): [([], 0), (["--bogus"], 2), (["--patterns", broken], 3)],
        ("checkpoint",): [([finite], 0), ([nan], 1), ([finite, "--format", "yaml"], 2),
                          ([missing], 3)],
        ("memory",): [([snap], 0), ([], 2), ([missing], 3)],
        ("flight",): [([dumps(tmp / "agree", True)], 0), ([dumps(tmp / "disagree", False)], 1),
                      ([], 2), ([missing], 3), ([metrics], 3)],
    }


COMMANDS = [("analyze",), ("timeline",), ("scan",), ("patterns", "list"),
            ("patterns", "show"), ("patterns", "check"), ("checkpoint",), ("memory",),
            ("flight",)]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_exits_as_its_help_says(tmp_path, command):
    seen = set()
    for args, expected in scenarios(tmp_path)[command]:
        result = invoke(*command, *args)
        assert result.exit_code == expected, (command, args, result.output[-500:])
        assert result.exception is None or isinstance(result.exception, SystemExit)
        seen.add(expected)
    listed = listed_codes(*command)
    assert 130 in listed
    assert listed - {130} == seen, (command, listed, seen)


def test_every_command_is_covered():
    group = cli.commands
    names = {(n,) for n in group if n != "patterns"} | {
        ("patterns", n) for n in group["patterns"].commands}
    assert names == set(COMMANDS)


def test_piped_patterns_list_is_one_id_per_line_with_its_title():
    lines = invoke("patterns", "list").output.splitlines()
    assert len(lines) == len(set(lines)) > 80
    ids = [line.split("\t")[0] for line in lines]
    assert "cuda-oom" in ids and all(re.fullmatch(r"[a-z0-9-]+", i) for i in ids)
    assert all(len(line.split("\t")) == 2 and line.split("\t")[1] for line in lines)


@pytest.mark.parametrize(("wrong", "meant"), [("cuda_oom", "cuda-oom"), ("CUDA-OOM", "cuda-oom"),
                                              ("nccl-timout", "nccl-timeout"),
                                              ("nan loss", "nan-loss")])
def test_an_unknown_signature_id_suggests_the_one_meant(wrong, meant):
    result = invoke("patterns", "show", wrong)
    assert result.exit_code == 2
    assert f"did you mean {meant!r}?" in result.output


def test_no_suggestion_when_nothing_is_close():
    result = invoke("patterns", "show", "qqqqqq")
    assert result.exit_code == 2 and "did you mean" not in result.output
    assert "forensics patterns list" in result.output
