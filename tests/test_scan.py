"""forensics scan: discovery over every layout, the Parquet dataset, the cache, the summary,
suspect nodes, unknown-failure clusters, and the Dask path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from forensics.cli import cli
from forensics.fleet.dataset import FINDING_SCHEMA, JOB_SCHEMA
from forensics.fleet.discover import Job, discover_jobs
from forensics.fleet.run import analyze_job, run_scan
from forensics.fleet.summary import summarize, template

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"


def xid(host: str) -> str:
    return ("[812.1] NVRM: Xid (PCI:0000:3b:00): 79, pid=1, name=python, GPU has fallen off "
            f"the bus.\nsrun: error: {host}: task 0: Exited with exit code 1\n")


def build_tree(root: Path) -> None:
    (root / "slurm").mkdir(parents=True)
    (root / "slurm" / "slurm-1001.out").write_text("{'loss': 1.0, 'epoch': 0.1}\n" + OOM)
    (root / "slurm" / "slurm-1001.err").write_text("warning only\n")
    (root / "slurm" / "train-1002.out").write_text(
        "slurmstepd: error: *** JOB 1002 ON node7 CANCELLED AT 2025-01-01T00:00:00 DUE TO "
        "TIME LIMIT ***\n")
    run = root / "tr" / "none_abc" / "attempt_0"
    for rank in (0, 1):
        (run / str(rank)).mkdir(parents=True)
        (run / str(rank) / "stderr.log").write_text(
            "KeyError: 'text'\n" if rank == 1 else "waiting\n")
    ax = root / "axolotl-out"
    (ax / "checkpoint-10").mkdir(parents=True)
    (ax / "checkpoint-10" / "model.safetensors").write_bytes(b"\x00" * 64)
    (ax / "debug.log").write_text("{'loss': 1.0, 'epoch': 0.1}\n{'train_runtime': 1.0, "
                                  "'train_loss': 1.0, 'epoch': 1.0}\n")
    wb = root / "exp" / "wandb" / "run-20250101_120000-zz9"
    (wb / "files").mkdir(parents=True)
    (wb / "files" / "output.log").write_text("ValueError: bad shape (3, 4)\n")
    (root / "exp" / "wandb" / "latest-run").symlink_to(wb)
    (root / "junk").mkdir()
    (root / "junk" / "blob.bin").write_bytes(os.urandom(256))
    (root / "loop").mkdir()
    (root / "loop" / "self").symlink_to(root / "loop")
    os.mkfifo(root / "slurm" / "pipe.log")


def test_discovery_on_every_layout(tmp_path):
    build_tree(tmp_path)
    jobs = {(j.layout, j.job_id): j for j in discover_jobs(tmp_path).jobs}
    assert set(jobs) == {("slurm", "1001"), ("slurm", "1002"), ("torchrun", "none_abc"),
                         ("axolotl", "axolotl-out"), ("wandb", "zz9")}
    assert len(jobs[("slurm", "1001")].inputs) == 2  # .out and .err of one job


def test_dataset_schema_contents_and_cache(tmp_path):
    build_tree(tmp_path / "root")
    out = tmp_path / "out"
    first = run_scan([str(tmp_path / "root")], out)
    assert (first.jobs, first.analyzed, first.reused) == (5, 5, 0)
    jobs = pq.read_table(out / "jobs.parquet")
    assert jobs.schema.equals(JOB_SCHEMA)
    assert pq.read_table(out / "findings.parquet").schema.equals(FINDING_SCHEMA)
    rows = {r["job_id"]: r for r in jobs.to_pylist()}
    assert rows["1001"]["root_signature"] == "cuda-oom"
    assert rows["1002"]["root_signature"] == "slurm-time-limit" and rows["1002"]["host"] == "node7"
    assert rows["none_abc"]["root_signature"] == "python-exception"
    assert rows["none_abc"]["rank"] == 1
    assert rows["axolotl-out"]["verdict"] == "completed"
    assert rows["zz9"]["exception_type"] == "ValueError"
    # `path` is each job's main log; `log_files` every file it read
    slurm, run = tmp_path / "root" / "slurm", tmp_path / "root" / "tr" / "none_abc"
    wandb = tmp_path / "root" / "exp" / "wandb" / "run-20250101_120000-zz9"
    assert {job: (r["path"], r["log_files"]) for job, r in rows.items()} == {
        "1001": (f"{slurm}/slurm-1001.out", [f"{slurm}/slurm-1001.err", f"{slurm}/slurm-1001.out"]),
        "1002": (f"{slurm}/train-1002.out", [f"{slurm}/train-1002.out"]),
        "none_abc": (f"{run}/attempt_0/0/stderr.log",
                     [f"{run}/attempt_0/0/stderr.log", f"{run}/attempt_0/1/stderr.log"]),
        "axolotl-out": (f"{tmp_path}/root/axolotl-out/debug.log",
                        [f"{tmp_path}/root/axolotl-out/debug.log"]),
        "zz9": (f"{wandb}/files/output.log", [f"{wandb}/files/output.log"]),
    }
    findings = pq.read_table(out / "findings.parquet").to_pylist()
    assert {(f["job_id"], f["path"]) for f in findings} == {
        (job, rows[job]["path"]) for job in ("1001", "1002", "none_abc", "zz9")}
    second = run_scan([str(tmp_path / "root")], out)
    assert (second.analyzed, second.reused) == (0, 5)
    (tmp_path / "root" / "slurm" / "slurm-1001.err").write_text("changed\n" + OOM)
    third = run_scan([str(tmp_path / "root")], out)
    assert (third.analyzed, third.reused) == (1, 4)
    again = {r["job_id"]: r for r in pq.read_table(out / "jobs.parquet").to_pylist()}
    assert {job: (r["path"], r["log_files"]) for job, r in again.items()} == \
        {job: (r["path"], r["log_files"]) for job, r in rows.items()}
    cached_findings = pq.read_table(out / "findings.parquet").to_pylist()
    assert sorted((f["job_id"], f["path"], f["signature"]) for f in cached_findings) == \
        sorted((f["job_id"], f["path"], f["signature"]) for f in findings)
    assert run_scan([str(tmp_path / "root")], out, full=True).analyzed == 5
    assert len(pq.read_table(out / "jobs.parquet")) == 5


def test_broken_job_becomes_a_row(tmp_path):
    job = Job("gone", str(tmp_path), (str(tmp_path / "missing.log"),), "folder")
    result = analyze_job(job, (), "fp")
    assert result.row["verdict"] == "error" and "missing.log" in result.row["error"]


def fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    for i in range(12):
        host = f"node{i % 4}"
        folder = root / f"job{i:02d}"
        folder.mkdir(parents=True)
        if host == "node3":
            text = xid(host)
        elif i % 4 == 1:
            text = f"srun: error: {host}: task 0: Exited with exit code 1\n" \
                   f"RuntimeError: shard {i} of /data/set{i}.bin is corrupt at 0x{i:04x}\n"
        else:
            text = f"srun: error: {host}: task 0: Exited with exit code 1\n" + OOM
        (folder / "train.log").write_text(text)
    return root


def test_summary_suspect_node_and_unknown_clusters(tmp_path):
    out = tmp_path / "out"
    run_scan([str(fleet(tmp_path))], out)
    summary = summarize(pq.read_table(out / "jobs.parquet").to_pylist())
    assert summary.jobs == 12 and summary.failure_rate == 1.0
    assert {c.signature: c.jobs.jobs for c in summary.by_signature} == {
        "cuda-oom": 6, "cuda-xid": 3, "python-exception": 3}
    assert [h["host"] for h in summary.suspect_hosts] == ["node3"]
    (cluster,) = summary.unknown_clusters
    assert cluster["jobs"] == 3
    assert cluster["template"] == "RuntimeError: shard <n> of <path> is corrupt at <hex>"


def test_template_masks():
    assert template("[rank3]: ValueError: got 32011 > 32000 in /a/b.py at 0xdeadbeef 'x'") == \
        "<rank> ValueError: got <n> > <n> in <path> at <hex> <str>"


def test_dask_local_cluster_gives_the_same_rows(tmp_path):
    distributed = pytest.importorskip("distributed")
    root = fleet(tmp_path)
    run_scan([str(root)], tmp_path / "pool", workers=2)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        run_scan([str(root)], tmp_path / "dask", scheduler=cluster.scheduler_address)

    def rows(folder: Path) -> list[dict]:
        table = pq.read_table(folder / "jobs.parquet").drop(["scanned_at"]).to_pylist()
        return sorted(table, key=lambda r: r["job_id"])

    pool_rows, dask_rows = rows(tmp_path / "pool"), rows(tmp_path / "dask")
    assert len(pool_rows) == len(dask_rows) == 12
    differences = [(a["job_id"], k, a[k], b[k]) for a, b in zip(pool_rows, dask_rows, strict=True)
                   for k in a if a[k] != b[k]]
    assert not differences


def test_scan_command(tmp_path):
    result = CliRunner().invoke(cli, ["scan", "--out", str(tmp_path / "o"), "--jobs", "1",
                                      "--format", "json", str(fleet(tmp_path))])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["jobs"] == 12 and report["suspect_hosts"][0]["host"] == "node3"


def test_interrupted_scan_keeps_what_was_finished(tmp_path):
    from forensics.fleet.run import ScanInterrupted

    root = fleet(tmp_path)
    out = tmp_path / "out"

    def stop_after_five(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(ScanInterrupted, match="5 rows kept"):
        run_scan([str(root)], out, progress=stop_after_five)
    assert len(pq.read_table(out / "jobs.parquet")) == 5
    assert not list(out.glob("*.tmp"))
    resumed = run_scan([str(root)], out)
    assert (resumed.reused, resumed.analyzed) == (5, 7)
