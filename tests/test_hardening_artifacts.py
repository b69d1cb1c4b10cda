"""Hostile and broken artifacts (issue 15, the artifact half): memory snapshots, Flight
Recorder dumps, checkpoints, trainer_state.json and error.json that lie, nest, share or
carry the wrong types. Each gives one `forensics: <path>: <what is wrong>` line on stderr,
exit code 3 (README, "Exit codes"), the report of whatever could be read, and never a
traceback; the measured cases also stay within time and memory. The property tests at the
end throw random pickles, dumps and safetensors headers at the same commands."""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from forensics.artifacts.memory import MEMORY_MAX_ELEMENTS
from forensics.artifacts.restricted import PICKLE_MAX_DEPTH
from forensics.cli import cli

from .budget import budget
from .test_artifacts import dump, snapshot, write_safetensors

MB = 1 << 20
PEAK_MB = 300  # no bad input may take more memory than this
SECONDS = 10  # nor more time on an ordinary day (`budget` stretches it on a slow one)
PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
OOM_LOG = ('step 10 loss 2.1\nTraceback (most recent call last):\n  File "/work/train.py", '
           'line 88, in <module>\n    loss.backward()\ntorch.OutOfMemoryError: CUDA out of '
           'memory. Tried to allocate 2.00 GiB. GPU 3 has a total capacity of 79.10 GiB of '
           'which 1.12 GiB is free.\n')


def invoke(*args: object) -> Result:
    """The command run in this process; an exception other than the exit is a failure."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exc_info
    assert "Traceback" not in result.stderr  # stdout may quote a log's own traceback
    return result


def one_problem(stderr: str, path: object, *says: str) -> str:
    """The single stderr line, which names `path` and says each of `says`."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("forensics: ") and str(path) in line, line
    for words in says:
        assert words in line, line
    assert "Traceback" not in stderr
    return line


def refused(path: Path, *says: str, command: str = "memory") -> str:
    """`forensics COMMAND path` exits 3 with one stderr line and nothing on stdout."""
    result = invoke(command, path)
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert result.stdout == ""
    return one_problem(result.stderr, path, *says)


@dataclass(frozen=True)
class Run:
    """A command run in its own process, with its time and peak memory."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float


# runs the command and, at its exit, writes the child's own peak RSS (VmHWM: counted from
# its exec, unlike the rusage a parent sees, which includes the parent's pages at fork)
CHILD = """
import atexit, os, runpy, sys

def peak():
    with open("/proc/self/status") as status, open(os.environ["PEAK_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

atexit.register(peak)
sys.argv = ["forensics", *sys.argv[1:]]
runpy.run_module("forensics", run_name="__main__")
"""


def measured(*args: object, timeout: float = 120) -> Run:
    """`forensics ARGS` in a child process, with its wall time and peak RSS."""
    with tempfile.TemporaryDirectory() as folder:
        peak = Path(folder) / "peak"
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, "PEAK_FILE": str(peak)})
        seconds = time.monotonic() - start
        peak_kb = int(peak.read_text()) if peak.exists() else 0  # no /proc: not measured
    return Run(done.returncode, done.stdout, done.stderr, seconds, peak_kb / 1024)


def within_budget(run: Run, peak_mb: float = PEAK_MB) -> None:
    assert run.seconds < budget(SECONDS), run
    assert run.peak_mb < peak_mb, run
    assert "Traceback" not in run.stderr


# --- memory snapshots ---------------------------------------------------------------

def nested_pickle(depth: int, kind: str) -> bytes:
    """A protocol-2 pickle of `depth` nested lists, tuples or dicts, written opcode by
    opcode (pickle.dumps itself would hit the recursion limit)."""
    if kind == "list":
        return b"\x80\x02" + b"(" * depth + b"l" * depth + b"."
    if kind == "tuple":
        return b"\x80\x02" + b"(" * depth + b"t" * depth + b"."
    key = b"X\x01\x00\x00\x00k"
    return b"\x80\x02" + (b"}" + key) * depth + b"}" + b"s" * depth + b"."


def shared_chain(length: int) -> bytes:
    """A list of `length` lists, each holding the one before: every chain starts one step
    below the top, but the last goes `length` deep through shared references."""
    body = b"\x80\x02(]r\x00\x00\x00\x00"
    for i in range(1, length):
        body += b"]j" + struct.pack("<I", i - 1) + b"ar" + struct.pack("<I", i)
    return body + b"l."


@pytest.mark.parametrize("data,says", [
    (bytes(range(256)) * 4, "not a readable pickle"),
    (b"\x80\x04this is not a pickle at all", "not a readable pickle"),
    (b"just some text\n", ""),
    (b"", "empty file"),
    (b"\x80\x05\x97.", ""),  # NEXT_BUFFER without out-of-band buffers
    (pickle.dumps([1, 2, 3]), "not a CUDA memory snapshot"),
], ids=["binary", "truncated", "text", "empty", "out-of-band", "not-a-snapshot"])
def test_memory_garbage_pickle(tmp_path, data, says):
    path = tmp_path / "snapshot.pickle"
    path.write_bytes(data)
    refused(path, says)


@pytest.mark.parametrize("opcode", [b"\x95", b"\x8e", b"\x8d"], ids=["FRAME", "BINBYTES8",
                                                                      "BINUNICODE8"])
def test_memory_pickle_claiming_a_huge_length(tmp_path, opcode):
    """A length field claiming 2**62 bytes: the reader never allocates what the file does
    not hold (before: MemoryError, a traceback)."""
    path = tmp_path / "snapshot.pickle"
    path.write_bytes(b"\x80\x04" + opcode + struct.pack("<Q", 1 << 62) + b"\x8c\x01a.")
    run = measured("memory", path)
    assert run.code == 3, run
    one_problem(run.stderr, path, "not a readable pickle")
    within_budget(run)


@pytest.mark.parametrize("kind", ["list", "tuple", "dict"])
def test_memory_deeply_nested_pickle(tmp_path, kind):
    """100,000 nested containers: refused at PICKLE_MAX_DEPTH, in one line (before: a
    RecursionError wherever the snapshot was printed)."""
    path = tmp_path / "snapshot.pickle"
    path.write_bytes(nested_pickle(100_000, kind))
    refused(path, f"nested deeper than {PICKLE_MAX_DEPTH:,} levels")


def test_depth_counts_chains_through_shared_containers(tmp_path):
    path = tmp_path / "snapshot.pickle"
    path.write_bytes(shared_chain(PICKLE_MAX_DEPTH + 10))
    refused(path, f"nested deeper than {PICKLE_MAX_DEPTH:,} levels")
    path.write_bytes(shared_chain(PICKLE_MAX_DEPTH - 10))
    refused(path, "not a CUDA memory snapshot")  # read whole: only its shape is wrong


def test_memory_reference_cycle(tmp_path):
    looped: list = []
    looped.append(looped)
    path = tmp_path / "snapshot.pickle"
    path.write_bytes(pickle.dumps({"segments": looped}))
    refused(path, "reference cycle")


def test_memory_shared_reference_bomb_in_a_field(tmp_path):
    """An 80 KB snapshot whose frames' file names are one list doubled 40 times: printing
    one would take 2**40 steps (before: over a minute, then memory)."""
    bomb: object = "frame"
    for _ in range(40):
        bomb = [bomb, bomb]
    blocks = [{"state": "active_allocated", "size": 1, "frames": [{"filename": bomb}]}
              for _ in range(3_000)]
    path = tmp_path / "snapshot.pickle"
    path.write_bytes(pickle.dumps({"segments": [{"total_size": 1, "blocks": blocks}]}))
    assert 50_000 < path.stat().st_size < 120_000
    run = measured("memory", path)
    assert run.code == 3, run
    one_problem(run.stderr, path, "malformed CUDA memory snapshot",
                "segments[0].blocks[0].frames[0].filename is a list, not a string")
    within_budget(run)


def test_memory_shared_reference_bomb_in_the_structure(tmp_path):
    """Well-typed, but every segment, block and frame list is the same object: 2,000 **3
    visits from a small file. The walk stops at its budget, with one line."""
    frames = [{"filename": "/venv/site-packages/torch/x.py", "line": 1, "name": "f"}] * 2_000
    block = {"state": "active_allocated", "size": 1, "frames": frames}
    segment = {"total_size": 1, "blocks": [block] * 2_000}
    path = tmp_path / "snapshot.pickle"
    path.write_bytes(pickle.dumps({"segments": [segment] * 2_000, "device_traces": []}))
    run = measured("memory", path)
    assert run.code == 3, run
    one_problem(run.stderr, path, "too large to read",
                f"more than {MEMORY_MAX_ELEMENTS:,} elements")
    within_budget(run)


WRONG_TYPES = [
    (lambda s: s["segments"][0].update(total_size="64 MiB"), "segments[0].total_size"),
    (lambda s: s["segments"][0].update(total_size=math.nan), "segments[0].total_size"),
    (lambda s: s["segments"][0].update(total_size=math.inf), "segments[0].total_size"),
    (lambda s: s["segments"][0].update(blocks={"a": 1}), "segments[0].blocks"),
    (lambda s: s["segments"][0]["blocks"].append("block"), "segments[0].blocks[3]"),
    (lambda s: s["segments"][0]["blocks"][0].update(size=[1]), "segments[0].blocks[0].size"),
    (lambda s: s["segments"][0]["blocks"][0].update(frames=5),
     "segments[0].blocks[0].frames"),
    (lambda s: s["segments"][0]["blocks"][0]["frames"][1].update(line="88"),
     "segments[0].blocks[0].frames[1].line"),
    (lambda s: s.update(segments="none"), "segments"),
    (lambda s: s["segments"].append(7), "segments[1]"),
    (lambda s: s.update(device_traces=[5]), "device_traces[0]"),
    (lambda s: s["device_traces"][0][1].update(size=2 ** 70), "device_traces[0][1].size"),
    (lambda s: s["device_traces"][0][1].update(action=None, device_free="x"), None),
]


@pytest.mark.parametrize("change,field", WRONG_TYPES,
                         ids=[f"{i}:{field}" for i, (_, field) in enumerate(WRONG_TYPES)])
def test_memory_snapshot_with_wrong_types(tmp_path, change, field):
    data = snapshot()
    change(data)
    path = tmp_path / "snapshot.pickle"
    path.write_bytes(pickle.dumps(data))
    if field is None:  # a field the report does not read may hold anything
        assert invoke("memory", path).exit_code == 0
        return
    refused(path, "malformed CUDA memory snapshot", f"{field} is ")


# --- Flight Recorder dumps ------------------------------------------------------------

def entry(d: dict) -> dict:
    return d["entries"][0]


def without_pg_id(d: dict, group: object) -> None:
    entry(d).pop("pg_id")
    entry(d)["process_group"] = group


BAD_DUMPS: dict[str, tuple[Callable[[dict], object], str]] = {
    "seq-string": (lambda d: entry(d).update(collective_seq_id="7"), "collective_seq_id"),
    "seq-none": (lambda d: entry(d).update(collective_seq_id=None), "collective_seq_id"),
    "seq-nan": (lambda d: entry(d).update(collective_seq_id=math.nan), "collective_seq_id"),
    "seq-float": (lambda d: entry(d).update(collective_seq_id=1.0), "collective_seq_id"),
    "seq-bool": (lambda d: entry(d).update(collective_seq_id=True), "collective_seq_id"),
    "seq-huge": (lambda d: entry(d).update(collective_seq_id=2 ** 70), "collective_seq_id"),
    "pg-id-list": (lambda d: entry(d).update(pg_id=[0]), "pg_id"),
    "pg-dict": (lambda d: without_pg_id(d, {"0": "default_pg"}), "process_group"),
    "pg-int": (lambda d: without_pg_id(d, 0), "process_group"),
    "pg-empty": (lambda d: without_pg_id(d, ()), "process_group"),
    "pg-name-list": (lambda d: without_pg_id(d, [["0"], "default_pg"]), "process_group[0]"),
    "pg-config-list": (lambda d: d.update(pg_config=[0, 1]), "pg_config"),
    "pg-config-value": (lambda d: d["pg_config"].update({"0": [0, 1]}), "pg_config['0']"),
    "ranks-dict": (lambda d: d["pg_config"]["0"].update(ranks={"0": 1}), "ranks"),
    "ranks-strings": (lambda d: d["pg_config"]["0"].update(ranks=["0", "1"]), "ranks[0]"),
    "ranks-int": (lambda d: d["pg_config"]["0"].update(ranks=4), "ranks"),
    "entries-string": (lambda d: d.update(entries="[]"), "entries"),
    "entries-dict": (lambda d: d.update(entries={"0": {}}), "entries"),
    "entry-int": (lambda d: d["entries"].append(3), "entries[1] is 3, not a dict"),
    "sizes-string": (lambda d: entry(d).update(input_sizes="[[3, 4]]"), "input_sizes"),
    "shape-string": (lambda d: entry(d).update(output_sizes=[[3, "4"]]), "output_sizes[0][1]"),
    "op-int": (lambda d: entry(d).update(profiling_name=5), "profiling_name"),
    "state-list": (lambda d: entry(d).update(state=["completed"]), "state"),
    "p2p-string": (lambda d: entry(d).update(is_p2p="no"), "is_p2p"),
}


def write_dumps(folder: Path, bad: Callable[[dict], object] | None, ranks: int = 2) -> Path:
    """Dumps of `ranks` ranks (rank 1 one collective behind); `bad` changes rank 1's."""
    folder.mkdir(parents=True, exist_ok=True)
    for rank in range(ranks):
        data = dump(rank, [1, 2] if rank != 1 else [1])
        if rank == 1 and bad is not None:
            bad(data)
        (folder / f"nccl_trace_rank_{rank}").write_bytes(pickle.dumps(data))
    return folder / "nccl_trace_rank_1"


@pytest.mark.parametrize("name", list(BAD_DUMPS))
def test_flight_malformed_dump(tmp_path, name):
    """The malformed dump is named in one line; the other ranks' dumps are still compared
    (before: a traceback for most of these, silently wrong answers for the rest)."""
    bad, field = BAD_DUMPS[name]
    path = write_dumps(tmp_path, bad, ranks=3)
    result = invoke("flight", tmp_path)
    assert result.exit_code == 3, (result.stdout, result.stderr)
    one_problem(result.stderr, path, "malformed Flight Recorder dump", field)
    assert "2 rank dump(s): 0, 2." in result.stdout


def test_flight_single_malformed_dump(tmp_path):
    path = write_dumps(tmp_path, BAD_DUMPS["seq-nan"][0])
    refused(path, "collective_seq_id is nan, not an integer", command="flight")


@pytest.mark.parametrize("name", ["seq-string", "seq-none", "seq-nan", "pg-dict", "pg-int",
                                  "ranks-dict", "ranks-strings", "entries-string"])
def test_analyze_reports_the_log_beside_a_malformed_dump(tmp_path, name):
    """`analyze DIR` with a bad dump beside the log: the log's report, the dump in one
    stderr line, exit 3 (before: a traceback and no report at all)."""
    path = write_dumps(tmp_path, BAD_DUMPS[name][0])
    (tmp_path / "train.log").write_text(OOM_LOG)
    result = invoke("analyze", tmp_path, "--format", "md")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "Root cause `cuda-oom`" in result.stdout
    one_problem(result.stderr, path.name, "malformed Flight Recorder dump")


def test_analyze_reports_the_log_beside_a_garbage_snapshot(tmp_path):
    (tmp_path / "train.log").write_text(OOM_LOG)
    (tmp_path / "memory_snapshot.pickle").write_bytes(nested_pickle(100_000, "list"))
    result = invoke("analyze", tmp_path, "--format", "md")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "Root cause `cuda-oom`" in result.stdout
    one_problem(result.stderr, "memory_snapshot.pickle", "nested deeper than")


# --- checkpoints: safetensors -----------------------------------------------------------

def raw_safetensors(path: Path, header: object, data: bytes = bytes(16),
                    length: int | None = None) -> Path:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


def one_tensor(**info: object) -> dict:
    return {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], **info}}


@pytest.mark.parametrize("header,says", [
    (one_tensor(data_offsets=[0, 1 << 20]), "lie outside the data section"),
    (one_tensor(data_offsets=[-16, 0]), "lie outside the data section"),
    (one_tensor(data_offsets=[2 ** 70, 2 ** 70 + 16]), "data_offsets[0] is an integer of 71"),
    (one_tensor(data_offsets=[16, 0]), "lie outside the data section"),
    (one_tensor(data_offsets=[0, 7]), "7 bytes for F32 [4], which needs 16 bytes"),
    (one_tensor(data_offsets=[0, 16, 32]), "data_offsets is a list"),
    (one_tensor(data_offsets=["0", "16"]), "data_offsets[0] is '0', not an integer"),
    (one_tensor(shape="abcd"), "shape is 'abcd'"),
    (one_tensor(shape=[-4]), "shape is a list, not a list of sizes >= 0"),
    (one_tensor(shape=[True, 4]), "shape[0] is True, not an integer"),
    (one_tensor(shape=[2 ** 40, 2 ** 40]), "which needs"),
    (one_tensor(dtype=["F32"]), "w.dtype is a list, not a string"),
    (one_tensor(dtype=None), "w.dtype is None"),
    ({"w": [1, 2]}, "w is a list, not a dict"),
    ([1, 2], "header is a list, not a dict of tensors"),
    ("a string", "header is 'a string'"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"{\"w\": ", "not a readable safetensors file"),
    (b"\xff\xfe{}", "not a readable safetensors file"),
])
def test_safetensors_header_that_lies(tmp_path, header, says):
    path = raw_safetensors(tmp_path / "model.safetensors", header)
    refused(path, says, command="checkpoint")


@pytest.mark.parametrize("length,says", [
    (1 << 26, "a header of 67,108,864 bytes in a file of"),
    (2 ** 64 - 1, "the format allows 104,857,600"),
    (5, "not a readable safetensors file"),
], ids=["64MiB", "2**64", "short"])
def test_safetensors_header_length_that_lies(tmp_path, length, says):
    path = raw_safetensors(tmp_path / "model.safetensors", one_tensor(), bytes(16), length)
    refused(path, says, command="checkpoint")


def test_safetensors_shorter_than_8_bytes(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x10\x00")
    refused(path, "shorter than 8 bytes", command="checkpoint")


def test_unknown_dtype_is_skipped_not_fatal(tmp_path):
    path = raw_safetensors(tmp_path / "model.safetensors", {
        "a": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]},
        "b": {"dtype": "F32", "shape": [3], "data_offsets": [4, 16]}})
    result = invoke("checkpoint", path)
    assert result.exit_code == 0, result.stderr
    assert "skipped: dtype F8_E4M3 is not read" in result.stdout


def test_checkpoint_folder_reports_the_readable_files(tmp_path):
    write_safetensors(tmp_path / "a.safetensors", {"good.weight": np.ones(4, np.float32)})
    bad = raw_safetensors(tmp_path / "b.safetensors", one_tensor(data_offsets=[-16, 0]))
    result = invoke("checkpoint", tmp_path)
    assert result.exit_code == 3
    assert "`good.weight`" in result.stdout
    one_problem(result.stderr, bad, "outside the data section")


# --- checkpoints: sharded index -----------------------------------------------------

def write_index(folder: Path, body: object) -> Path:
    path = folder / "model.safetensors.index.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


@pytest.mark.parametrize("body,says", [
    ("{not json", "not a readable checkpoint index"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ([{"weight_map": {}}], "index is a list, not a dict"),
    ({"weight_map": ["model-1.safetensors"]}, "weight_map is a list"),
    ({"metadata": {}}, "weight_map is None"),
    ({"weight_map": {"w": 1}}, "weight_map.w is 1, not a string"),
    ({"weight_map": {"w": ["a.safetensors"]}}, "weight_map.w is a list"),
    ({"weight_map": {"w": ""}}, "not a file inside the checkpoint's folder"),
    ({"weight_map": {"w": "a\0.safetensors"}}, "not a file inside the checkpoint's folder"),
], ids=["not-json", "deep", "list", "map-list", "no-map", "int", "list-value", "empty",
        "nul"])
def test_bad_index(tmp_path, body, says):
    refused(write_index(tmp_path, body), says, command="checkpoint")


@pytest.mark.parametrize("escape", ["../outside/secret.safetensors", "{outside}",
                                    "shards/../../outside/secret.safetensors"],
                         ids=["dotdot", "absolute", "dotdot-inside"])
def test_index_never_reads_outside_the_checkpoint_folder(tmp_path, escape):
    """A weight_map naming ../../etc/passwd or an absolute path is refused before any file
    is opened: the readable file out there never shows up in the report."""
    outside = tmp_path / "outside"
    outside.mkdir()
    write_safetensors(outside / "secret.safetensors",
                      {"secret.weight": np.full(4, np.nan, np.float32)})
    folder = tmp_path / "ckpt"
    folder.mkdir()
    name = escape.format(outside=outside / "secret.safetensors")
    index = write_index(folder, {"weight_map": {"w": name}})
    result = invoke("checkpoint", index)
    assert result.exit_code == 3
    assert "secret.weight" not in result.output
    one_problem(result.stderr, index, "not a file inside the checkpoint's folder; not read")
    assert invoke("checkpoint", folder).exit_code == 3  # the folder finds the same index


def test_index_with_a_missing_shard_reports_the_others(tmp_path):
    write_safetensors(tmp_path / "model-1.safetensors", {"a.weight": np.ones(4, np.float32)})
    write_index(tmp_path, {"weight_map": {"a.weight": "model-1.safetensors",
                                          "b.weight": "model-2.safetensors"}})
    result = invoke("checkpoint", tmp_path)
    assert result.exit_code == 3
    assert "`a.weight`" in result.stdout
    one_problem(result.stderr, tmp_path / "model-2.safetensors", "No such file")


# --- checkpoints: torch files -------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Sparse:UserWarning")
def test_pt_sparse_and_meta_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"sparse": torch.sparse_coo_tensor([[0, 2]], [1.0, math.nan], (4,)),
                "csr": torch.eye(3).to_sparse_csr(),
                "meta": torch.empty(4, 4, device="meta"),
                "dense": torch.ones(3)}, tmp_path / "model.pt")
    result = invoke("checkpoint", tmp_path / "model.pt", "--format", "json")
    assert result.exit_code == 1, result.stderr  # the sparse tensor stores a NaN
    assert result.stderr == ""
    stats = {t["name"]: t for t in json.loads(result.stdout)["tensors"]}
    assert stats["sparse"]["nan"] == 1
    assert stats["sparse"]["note"] == "sparse: stats over the 2 stored values"
    assert stats["csr"]["note"] == "sparse: stats over the 3 stored values"
    assert stats["csr"]["norm"] == pytest.approx(math.sqrt(3))
    assert stats["meta"]["note"] == "skipped: a meta tensor, no data was saved"
    assert stats["dense"]["note"] is None and stats["dense"]["norm"] == pytest.approx(3 ** .5)


@pytest.mark.filterwarnings("ignore:Sparse:UserWarning")
def test_pt_two_checkpoints_with_sparse_meta_and_expanded_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    for name, scale in (("a.pt", 1.0), ("b.pt", 2.0)):
        torch.save({"sparse": torch.sparse_coo_tensor([[0]], [scale], (4,)),
                    "meta": torch.empty(2, device="meta"),
                    "wide": torch.full((1,), scale).expand(1 << 30),
                    "dense": torch.full((3,), scale)}, tmp_path / name)
    result = invoke("checkpoint", tmp_path / "a.pt", tmp_path / "b.pt", "--format", "json")
    assert result.exit_code == 0, result.stderr
    changes = json.loads(result.stdout)["changes"]
    assert changes == [{"name": "dense", "relative_change": pytest.approx(1.0)}]


def test_pt_expanded_tensor_is_sampled_not_materialized(tmp_path):
    """A 1.6 KB file holding `zeros(1).expand(3e9)`: 12 GB as float, 24 GB as float64
    (before: the process was killed). Its stats are sampled, and say so; the memory it
    takes is what reading any small .pt takes, plus a few chunks."""
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(1).expand(3_000_000_000)}, tmp_path / "big.pt")
    torch.save({"w": torch.zeros(1)}, tmp_path / "small.pt")
    assert (tmp_path / "big.pt").stat().st_size < 4096
    baseline = measured("checkpoint", tmp_path / "small.pt")
    run = measured("checkpoint", tmp_path / "big.pt")
    assert (baseline.code, run.code) == (0, 0), run
    assert "sampled: the first 16,777,216 of 3,000,000,000 elements" in run.stdout
    within_budget(run, peak_mb=baseline.peak_mb + 100)


def test_pt_deeply_nested_state(tmp_path):
    torch = pytest.importorskip("torch")
    state: object = torch.zeros(1)
    for _ in range(PICKLE_MAX_DEPTH + 100):
        state = {"k": state}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        torch.save(state, tmp_path / "deep.pt")
    finally:
        sys.setrecursionlimit(limit)
    refused(tmp_path / "deep.pt", "nested deeper than", command="checkpoint")


def test_pt_not_a_checkpoint(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    refused(path, "not a readable torch checkpoint", command="checkpoint")


# --- trainer_state.json and error.json ------------------------------------------------

@pytest.mark.parametrize("name,body", [
    ("trainer_state.json", "[" * 100_000 + "]" * 100_000),
    ("trainer_state.json", '{"log_history": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("error.json", '{"message": ' + "[" * 100_000 + "]" * 100_000 + "}"),
], ids=["trainer-state", "trainer-state-history", "error-json"])
def test_analyze_deeply_nested_json(tmp_path, name, body):
    (tmp_path / "train.log").write_text(OOM_LOG)
    (tmp_path / name).write_text(body)
    result = invoke("analyze", tmp_path, "--format", "md")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "Root cause `cuda-oom`" in result.stdout
    one_problem(result.stderr, name, "nested too deeply")


@pytest.mark.parametrize("body", [
    {"message": {"extraInfo": {"py_callstack": json.loads("[" * 500 + "]" * 500)},
                 "message": {"a": 1}}},
    {"message": {"extraInfo": ["py_callstack"], "message": 5}},
    {"message": {"extraInfo": {"timestamp": 10 ** 17}, "message": "RuntimeError: boom"}},
    {"message": {"extraInfo": {"timestamp": "99999999999999999999999"}}},
    {"message": {"extraInfo": {"timestamp": "9" * 5_000}}},
    {"message": {"extraInfo": {"timestamp": "\u00b2"}}},
    {"timestamp": [1], "message": None},
], ids=["deep-callstack", "extra-list", "huge-timestamp", "huge-string-timestamp",
        "5000-digits", "superscript", "list-timestamp"])
def test_error_json_with_wrong_types(tmp_path, body):
    (tmp_path / "train.log").write_text("step 1 loss 2.0\n")
    (tmp_path / "error.json").write_text(json.dumps(body))
    result = invoke("analyze", tmp_path, "--format", "md")
    assert result.exit_code in (0, 1), result.stderr
    assert result.stderr == ""


def test_trainer_state_with_integers_past_64_bits(tmp_path):
    (tmp_path / "train.log").write_text("step 1 loss 2.0\n")
    (tmp_path / "trainer_state.json").write_text(
        '{"max_steps": 1' + "0" * 30 + ', "log_history": [{"step": 1' + "0" * 30
        + ', "loss": 1' + "0" * 400 + '}, {"step": 2, "loss": 1.5}]}')
    result = invoke("analyze", tmp_path, "--format", "md")
    assert result.exit_code in (0, 1), result.stderr


# --- properties -----------------------------------------------------------------------

def finishes(args: list[object], codes: tuple[int, ...]) -> Result:
    """The command ends within SECONDS, with one of `codes`, and each stderr line is one
    `forensics: ` problem."""
    start = time.monotonic()
    result = invoke(*args)
    assert time.monotonic() - start < budget(SECONDS)
    assert result.exit_code in codes, (result.stdout, result.stderr)
    assert all(line.startswith("forensics: ") for line in result.stderr.splitlines())
    assert (result.exit_code == 3) == bool(result.stderr), result.stderr
    event(f"{args[0]} exit {result.exit_code}")
    return result


FRAGMENTS = [b"(", b"l", b"d", b"t", b"]", b"}", b")", b"a", b"e", b"s", b"u", b"N", b"\x88",
             b"K\x01", b"J\xff\xff\xff\xff", b"\x8a\x09" + b"\xff" * 9, b"G\x7f\xf8" + bytes(6),
             b"X\x08\x00\x00\x00segments", b"\x8c\x06blocks", b"\x8c\x04size",
             b"\x8c\x05state", b"\x8c\x10active_allocated", b"\x8c\x06frames",
             b"h\x00", b"q\x00", b"q\x01", b"h\x01", b"\x94", b"2", b"0", b"1",
             b"\x95" + struct.pack("<Q", 1 << 40), b"\x8e" + struct.pack("<Q", 1 << 50),
             b"c__builtin__\nset\n", b"cos\nsystem\n", b"ccollections\nOrderedDict\n",
             b"R", b"\x81", b"b", b"\x85", b"\x86", b"\x87", b"\x8f", b"\x90", b"\x91",
             b"\x92", b"I99999999999999999999999\n", b"F1e999\n", b"V\\u0000\n", b"S'a'\n",
             b"\x96" + struct.pack("<Q", 5) + b"abc", b"\x97", b"\x98", b"o", b"\x82\x01"]
opcode_streams = st.builds(
    lambda proto, body, stop: proto + b"".join(body) + stop,
    st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x05"]),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40), st.sampled_from([b".", b""]))
atoms = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats()
         | st.text(max_size=8) | st.binary(max_size=8))
SNAPSHOT_KEYS = ["segments", "blocks", "frames", "size", "total_size", "state", "filename",
                 "line", "name", "device_traces", "action", "device_free"]
plain_values = st.recursive(
    atoms | st.sampled_from(["active_allocated", "inactive", "oom"]),
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.dictionaries(st.sampled_from(SNAPSHOT_KEYS), inner, max_size=5)
                   | st.builds(lambda x: [x] * 3, inner)),  # shared references
    max_leaves=30)
snapshot_pickles = st.builds(
    lambda value, proto: pickle.dumps(value, protocol=proto),
    plain_values | st.dictionaries(st.sampled_from(SNAPSHOT_KEYS), plain_values, max_size=3)
    .map(lambda d: {"segments": [], **d}), st.integers(0, 5))


@PROPERTY
@given(data=opcode_streams | snapshot_pickles)
def test_memory_never_crashes_on_random_pickles(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "snapshot.pickle"
        path.write_bytes(data)
        result = finishes(["memory", path], (0, 3))
        assert result.exit_code == 3 or result.stdout.startswith("## CUDA memory snapshot")


ENTRY_FIELDS = {"collective_seq_id": st.integers(0, 3), "pg_id": st.sampled_from([0, "0"]),
                "process_group": st.just(("0", "default_pg")),
                "profiling_name": st.sampled_from(["nccl:all_reduce", "nccl:broadcast"]),
                "input_sizes": st.just([[3, 4]]), "output_sizes": st.just([[3, 4]]),
                "state": st.sampled_from(["completed", "started", "scheduled"]),
                "is_p2p": st.booleans()}
entries = st.fixed_dictionaries({}, optional={
    key: typed | plain_values if key != "is_p2p" else typed
    for key, typed in ENTRY_FIELDS.items()}) | plain_values
flight_dumps = st.fixed_dictionaries(
    {"entries": st.lists(entries, max_size=4) | plain_values},
    optional={"pg_config": st.just({"0": {"ranks": "[0, 1]"}}) | st.dictionaries(
        st.sampled_from(["0", "1"]), st.fixed_dictionaries({"ranks": plain_values}))
        | plain_values})


@settings(PROPERTY, max_examples=50)
@given(dumps=st.lists(flight_dumps, min_size=1, max_size=3))
def test_flight_and_analyze_never_crash_on_random_dumps(dumps):
    with tempfile.TemporaryDirectory() as folder:
        for rank, data in enumerate(dumps):
            (Path(folder) / f"nccl_trace_rank_{rank}").write_bytes(pickle.dumps(data))
        finishes(["flight", folder], (0, 1, 3))
        (Path(folder) / "train.log").write_text(OOM_LOG)
        result = finishes(["analyze", folder, "--format", "md"], (0, 1, 3))
        assert "Root cause `cuda-oom`" in result.stdout


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats()
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=12)
tensor_infos = st.fixed_dictionaries({}, optional={
    "dtype": st.sampled_from(["F32", "F16", "BF16", "I8", "BOOL", "F8_E4M3", "X"])
    | json_values,
    "shape": st.lists(st.integers(-1, 5), max_size=3) | json_values,
    "data_offsets": st.lists(st.integers(-8, 80), min_size=2, max_size=2) | json_values})
headers = st.dictionaries(st.text(max_size=6), tensor_infos | json_values, max_size=4) \
    | json_values


@PROPERTY
@given(header=headers, data=st.binary(max_size=80),
       length=st.none() | st.integers(0, 2 ** 64 - 1))
def test_checkpoint_never_crashes_on_random_safetensors(header, data, length):
    with tempfile.TemporaryDirectory() as folder:
        path = raw_safetensors(Path(folder) / "model.safetensors", header, data, length)
        finishes(["checkpoint", path], (0, 1, 3))


def test_a_torch_file_that_would_be_read_whole_is_refused(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import zipfile

    from forensics.artifacts import torch_io

    monkeypatch.setattr(torch_io, "WHOLE_READ_MAX", 1024 * 1024)
    state = {"w": torch.zeros(1_000_000)}  # 4 MB
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(state, tmp_path / "modern.pt")
    with zipfile.ZipFile(tmp_path / "modern.pt") as source, \
            zipfile.ZipFile(tmp_path / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as packed:
        for info in source.infolist():
            packed.writestr(info.filename, source.read(info.filename))
    runner = CliRunner()
    for name, words in (("legacy.pt", "legacy (non-zip)"), ("deflated.pt", "is compressed")):
        result = runner.invoke(cli, ["checkpoint", str(tmp_path / name)])
        assert result.exit_code == 3, result.output
        assert words in result.output and "Traceback" not in result.output
    assert runner.invoke(cli, ["checkpoint", str(tmp_path / "modern.pt")]).exit_code == 0
