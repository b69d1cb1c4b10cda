"""PyTorch artifacts: memory snapshots and Flight Recorder dumps (plain pickles, no torch
needed), checkpoints (safetensors without torch; .bin/.pt with torch on CPU)."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from forensics.artifacts.checkpoint import relative_changes, tensor_stats
from forensics.artifacts.flight import first_mismatch, load_dumps
from forensics.artifacts.memory import analyze_snapshot
from forensics.artifacts.restricted import load_plain
from forensics.cli import cli
from forensics.errors import InputError

MiB = 1 << 20


def snapshot() -> dict:
    frames = [{"filename": "/venv/lib/python3.11/site-packages/torch/nn/modules/linear.py",
               "line": 125, "name": "forward"},
              {"filename": "/work/train.py", "line": 88, "name": "step"}]
    return {
        "segments": [
            {"device": 0, "address": 1 << 40, "total_size": 64 * MiB, "allocated_size": 40 * MiB,
             "active_size": 40 * MiB, "requested_size": 40 * MiB, "stream": 0,
             "segment_type": "large", "segment_pool_id": (0, 0), "is_expandable": False,
             "frames": [], "blocks": [
                 {"address": 1 << 40, "size": 40 * MiB, "requested_size": 40 * MiB,
                  "state": "active_allocated", "frames": frames},
                 {"address": (1 << 40) + 40 * MiB, "size": 12 * MiB, "requested_size": 0,
                  "state": "inactive", "frames": []},
                 {"address": (1 << 40) + 52 * MiB, "size": 12 * MiB, "requested_size": 0,
                  "state": "inactive", "frames": []}]}],
        "device_traces": [[
            {"action": "alloc", "addr": 1 << 40, "size": 40 * MiB, "stream": 0,
             "frames": frames, "time_us": 1},
            {"action": "oom", "addr": 0, "size": 20 * MiB, "stream": 0, "frames": frames,
             "time_us": 2, "device_free": 5 * MiB}]],
    }


def test_memory_snapshot_fragmentation(tmp_path):
    path = tmp_path / "memory_snapshot.pickle"
    path.write_bytes(pickle.dumps(snapshot()))
    report = analyze_snapshot(load_plain(path))
    assert (report.reserved, report.allocated) == (64 * MiB, 40 * MiB)
    assert (report.largest_free_block, report.failed_request) == (12 * MiB, 20 * MiB)
    assert report.fragmented
    assert report.holders[0].where == "/work/train.py:88 (step)"
    result = CliRunner().invoke(cli, ["memory", str(path)])
    assert result.exit_code == 0 and "Fragmentation" in result.output


class Evil:
    """A pickle payload that, if ever unpickled, runs a shell command creating `marker` (a
    path in the test's own tmp_path, so that tests cannot see each other's markers)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_the_payload_runs_when_unpickled(tmp_path):
    """The control for the tests below: plain pickle.loads does run the payload."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Evil(marker)))
    assert marker.exists()


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "memory_snapshot.pickle"
    path.write_bytes(pickle.dumps({"segments": [Evil(marker)]}))
    with pytest.raises(InputError, match=r"refusing to load posix\.system"):
        load_plain(path)
    result = CliRunner().invoke(cli, ["memory", str(path)])
    assert result.exit_code == 3 and "refusing to load" in result.output
    assert not marker.exists()


def dump(rank: int, seqs: list[int], state_of_last: str = "completed") -> dict:
    entries = [{"frames": [], "record_id": i, "pg_id": 0, "process_group": ("0", "default_pg"),
                "collective_seq_id": seq, "p2p_seq_id": 0, "op_id": seq,
                "profiling_name": "nccl:all_reduce", "time_created_ns": seq,
                "input_sizes": [[3, 4]], "input_dtypes": ["Float"], "output_sizes": [[3, 4]],
                "output_dtypes": ["Float"],
                "state": state_of_last if seq == seqs[-1] else "completed",
                "retired": True, "timeout_ms": 600000, "is_p2p": False}
               for i, seq in enumerate(seqs)]
    return {"version": "2.5", "entries": entries,
            "pg_config": {"0": {"name": "0", "desc": "default_pg", "ranks": "[0, 1, 2, 3]"}},
            "pg_status": {"0": {"last_enqueued_collective": seqs[-1]}}}


def test_flight_recorder_names_the_missing_rank(tmp_path):
    for rank in range(4):
        seqs = [1, 2, 3, 4] if rank != 2 else [1, 2, 3]
        (tmp_path / f"nccl_trace_rank_{rank}").write_bytes(
            pickle.dumps(dump(rank, seqs, "started" if rank != 2 else "completed")))
    dumps = load_dumps(sorted(tmp_path.iterdir()))
    mismatch = first_mismatch(dumps)
    assert (mismatch.disagreement, mismatch.seq, mismatch.ranks) == ("missing-ranks", 4, (2,))
    assert mismatch.op == "nccl:all_reduce" and mismatch.process_group == "0"
    result = CliRunner().invoke(cli, ["flight", str(tmp_path)])
    assert result.exit_code == 1 and "Suspect rank(s): 2" in result.output


def test_flight_recorder_in_a_job_folder_names_the_culprit(tmp_path):
    for rank in range(4):
        seqs = [1, 2] if rank != 1 else [1]
        (tmp_path / f"nccl_trace_rank_{rank}").write_bytes(pickle.dumps(dump(rank, seqs)))
    (tmp_path / "train.log").write_text(
        "".join(f"[rank{r}]:[E0311 09:31:1{r}.1 ProcessGroupNCCL.cpp:632] [Rank {r}] Watchdog "
                f"caught collective operation timeout: WorkNCCL(SeqNum=2, OpType=ALLREDUCE, "
                f"NumelIn=12, NumelOut=12, Timeout(ms)=600000) ran for 600091 milliseconds "
                f"before timing out.\n" for r in (0, 2, 3)))
    from forensics import analyze

    analysis = analyze(tmp_path)
    root = analysis.root_cause
    assert root.finding.signature == "nccl-timeout"
    assert root.finding.rank == 1
    assert any("Flight Recorder" in reason and "rank 1" in reason for reason in root.reasons)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": {"float32": "F32", "float16": "F16"}[str(array.dtype)],
                        "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_safetensors_without_torch(tmp_path):
    rng = np.random.default_rng(0)
    layers = {f"model.layers.{i}.weight": rng.standard_normal((8, 8)).astype(np.float32)
              for i in range(8)}
    write_safetensors(tmp_path / "a.safetensors", layers)
    layers = {name: value * np.float32(1.001) for name, value in layers.items()}
    layers["model.layers.2.weight"][3, 3] = np.nan
    layers["model.layers.3.weight"][0, 0] = np.inf
    layers["model.layers.1.weight"] = layers["model.layers.1.weight"] * 50
    write_safetensors(tmp_path / "b.safetensors", layers)
    stats = list(tensor_stats(tmp_path / "b.safetensors"))
    assert [s.name for s in stats if not s.finite] == ["model.layers.2.weight",
                                                       "model.layers.3.weight"]
    assert stats[2].nan == 1 and stats[3].inf == 1
    changes = dict(relative_changes(tmp_path / "a.safetensors", tmp_path / "b.safetensors"))
    assert changes["model.layers.1.weight"] == pytest.approx(49.05, rel=1e-3)
    assert changes["model.layers.0.weight"] == pytest.approx(0.001, rel=1e-2)
    result = CliRunner().invoke(cli, ["checkpoint", str(tmp_path / "a.safetensors"),
                                      str(tmp_path / "b.safetensors")])
    assert result.exit_code == 0
    assert "`model.layers.1.weight` — where the divergence starts" in result.output


def test_cuda_device_without_gpu_is_a_clear_error(tmp_path):
    """Hides every GPU from a fresh process (CUDA_VISIBLE_DEVICES=""), so this holds on a
    machine with GPUs too; without PyTorch the error names PyTorch instead."""
    write_safetensors(tmp_path / "a.safetensors", {"w": np.zeros((2, 2), np.float32)})
    result = subprocess.run(
        [sys.executable, "-m", "forensics", "checkpoint", "--device", "cuda",
         str(tmp_path / "a.safetensors")],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True,
        timeout=300, check=False)
    assert result.returncode == 3, result.stderr
    assert "forensics: error:" in result.stderr
    assert "PyTorch" in result.stderr or "CUDA" in result.stderr
    assert "Traceback" not in result.stderr


def test_torch_checkpoint_with_nan_layer_and_optimizer_blowup(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 8)).sum().backward()
    optimizer.step()
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    state = optimizer.state_dict()
    state["state"][0]["exp_avg_sq"].fill_(float("inf"))
    torch.save(state, tmp_path / "optimizer.pt")
    stats = list(tensor_stats(tmp_path / "pytorch_model.bin"))
    assert [s.name for s in stats if not s.finite] == ["2.weight"]
    result = CliRunner().invoke(cli, ["checkpoint", str(tmp_path / "optimizer.pt")])
    assert result.exit_code == 1 and "Optimizer state blow-up" in result.output


def test_torch_refuses_arbitrary_objects(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    torch.save({"weights": torch.zeros(2), "hook": Evil(marker)}, tmp_path / "bad.pt")
    result = CliRunner().invoke(cli, ["checkpoint", str(tmp_path / "bad.pt")])
    assert result.exit_code == 3 and "refusing to unpickle" in result.output
    assert not marker.exists()


def test_torch_two_checkpoints_find_the_diverged_layer(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(16, 16) for _ in range(5)])
    torch.save(model.state_dict(), tmp_path / "a.pt")
    with torch.no_grad():
        for layer in model:
            layer.weight.mul_(1.01)
        model[3].weight.mul_(30)
    torch.save(model.state_dict(), tmp_path / "b.pt")
    changes = dict(relative_changes(tmp_path / "a.pt", tmp_path / "b.pt"))
    assert max(changes, key=changes.get) == "3.weight"


def test_sharded_safetensors_index_and_folder(tmp_path):
    rng = np.random.default_rng(1)
    first = {"a.weight": rng.standard_normal((4, 4)).astype(np.float32)}
    second = {"b.weight": np.full((4, 4), np.nan, dtype=np.float32)}
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", first)
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", second)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a.weight": "model-00001-of-00002.safetensors",
        "b.weight": "model-00002-of-00002.safetensors"}}))
    for path in (tmp_path / "model.safetensors.index.json", tmp_path):
        stats = list(tensor_stats(path))
        assert [(s.name, s.nan) for s in stats] == [("a.weight", 0), ("b.weight", 16)]


def test_scan_reads_dumps_beside_a_log(tmp_path):
    from forensics.fleet.discover import discover_jobs

    folder = tmp_path / "jobs" / "run7"
    folder.mkdir(parents=True)
    (folder / "train.log").write_text("hello\n")
    (folder / "nccl_trace_rank_0").write_bytes(pickle.dumps(dump(0, [1])))
    (job,) = discover_jobs(tmp_path / "jobs").jobs
    assert job.inputs == (str(folder),)
