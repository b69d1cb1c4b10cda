"""The fleet summary an admin acts on (issue 13): which jobs each cause ended, the jobs that
completed unhealthy, were interrupted or ended unknown, failures by user and by partition,
how many jobs a host is known for, each job's main log and files in jobs.parquet, the rules
that read users and partitions, and a summary that stays small for 100,000 jobs. Expected
values are written by hand from the trees built here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from forensics.fleet.discover import Job, main_log
from forensics.fleet.labels import END_BYTES, RULES, ends, job_labels
from forensics.fleet.run import run_scan, scan_fleet
from forensics.fleet.summary import LISTED, TOP, summarize
from forensics.inputs.sources import discover
from forensics.model import Breakdown, Cause, FleetSummary, Group, JobList, JobRef
from forensics.report.fleet import render_fleet

from .conftest import ROOT
from .test_output_safety import markdown_problems

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"
NCCL = ("[rank0]:[E302 11:12:14.88 ProcessGroupNCCL.cpp:632] [Rank 0] Watchdog caught "
        "collective operation timeout: WorkNCCL(SeqNum=88, OpType=ALLREDUCE, NumelIn=1, "
        "NumelOut=1, Timeout(ms)=600000) ran for 600034 milliseconds before timing out.\n")
DONE = "{'train_runtime': 10.0, 'train_loss': 0.5, 'epoch': 1.0}\n"


def training(steps: int = 5, spike_at: int | None = None) -> str:
    return "".join(f"{{'loss': {2 - s / 100:.3f}, 'grad_norm': {500.0 if s == spike_at else 0.5}, "
                   f"'learning_rate': 2e-05, 'epoch': {s / 60:.2f}}}\n" for s in range(1, steps))


def srun_error(host: str) -> str:
    return f"srun: error: {host}: task 0: Exited with exit code 1\n"


def slurm_fleet(root: Path) -> dict[str, Path]:
    """Nine SLURM jobs in three folders; returns each job's main log by job id."""
    alice, bob, shared = (root / "scratch" / "alice" / "exp1",
                          root / "scratch" / "bob" / "partition-long", root / "shared")
    logs = {
        alice / "slurm-101.out": "SLURM_JOB_ID=101\nSLURM_JOB_PARTITION=gpu\n" + training() + OOM,
        alice / "slurm-102.out": "#SBATCH --partition=gpu\n" + training() + NCCL
        + srun_error("node7"),
        alice / "slurm-103.out": training() + DONE,
        alice / "slurm-104.out": "SLURM_JOB_PARTITION=debug\n" + training(),
        alice / "slurm-104.err": OOM,
        bob / "slurm-201.out": training(),  # stops mid-training
        bob / "slurm-202.out": training(60, spike_at=40) + DONE,
        bob / "slurm-203.out": training() + OOM,
        shared / "slurm-301.out": "SLURM_JOB_USER=carol\n   Partition=debug AllocNode:Sid=l1:7\n"
        + training() + OOM + srun_error("node8"),
        shared / "slurm-302.out": "hello\n",
    }
    for path, text in logs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {p.stem.split("-")[1]: p for p in logs if p.suffix == ".out"}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> tuple[dict[str, Path], Path, str, dict]:
    """The fleet, its dataset folder, and its summary in Markdown and JSON."""
    base = tmp_path_factory.mktemp("fleet")
    if any(job_labels([str(base / "x.out")], ()).values()):
        pytest.skip("the temporary folder's own path names a user or partition")
    logs = slurm_fleet(base / "root")
    out = base / "out"
    md, failed, _ = scan_fleet([str(base / "root")], out, 1, None, False, (), "md")
    data, _, _ = scan_fleet([str(base / "root")], out, 1, None, False, (), "json")
    assert failed
    return logs, out, md, json.loads(data)


def section(md: str, title: str) -> str:
    """The Markdown between `### title` and the next heading."""
    found = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^##|\Z)", md, re.MULTILINE | re.DOTALL)
    assert found is not None, title
    return found.group(1)


def bullets(block: str) -> list[tuple[str, str]]:
    """The (job id, main log) bullets of a block."""
    return re.findall(r"^- `([^`]+)`: `([^`]+)`$", block, re.MULTILINE)


def by_cause(md: str) -> dict[str, list[tuple[str, str]]]:
    """The jobs listed under each cause of the root-cause section."""
    parts = re.split(r"^`([^`]+)`, \d+ jobs?:$", section(md, "Failures by root cause"),
                     flags=re.MULTILINE)
    return {name: bullets(block) for name, block in zip(parts[1::2], parts[2::2], strict=True)}


def refs(*jobs: str, logs: dict[str, Path]) -> list[tuple[str, str]]:
    return [(job, str(logs[job])) for job in jobs]


def test_markdown_names_the_jobs_of_each_cause(scanned):
    logs, _, md, _ = scanned
    assert by_cause(md) == {"cuda-oom": refs("101", "104", "203", "301", logs=logs),
                            "nccl-timeout": refs("102", logs=logs)}
    assert "Verdicts: failed 5, completed 2, interrupted 1, unknown 1." in md


def test_markdown_lists_the_jobs_that_did_not_fail(scanned):
    logs, _, md, _ = scanned
    assert bullets(section(md, "Completed with unhealthy metrics")) == refs("202", logs=logs)
    assert bullets(section(md, "Interrupted")) == refs("201", logs=logs)
    assert bullets(section(md, "Ending unknown")) == refs("302", logs=logs)
    assert "### Could not be analyzed" not in md  # no job was an error
    assert "`103`" not in md  # a healthy completed run is listed nowhere


def test_markdown_failures_by_user_and_partition(scanned):
    _, _, md, _ = scanned
    users = section(md, "Failures by user")
    assert "User known for 8 of 9 jobs; 1 with no user known." in users
    assert re.findall(r"^\| (\w+) \| (\d+) \| (\d+) \| (.*) \|$", users, re.MULTILINE) == [
        ("alice", "4", "3", "`cuda-oom` 2, `nccl-timeout` 1"), ("bob", "3", "1", "`cuda-oom` 1"),
        ("carol", "1", "1", "`cuda-oom` 1")]
    partitions = section(md, "Failures by partition")
    assert "Partition known for 7 of 9 jobs; 2 with no partition known." in partitions
    assert re.findall(r"^\| ([\w-]+) \| (\d+) \| (\d+) \|", partitions, re.MULTILINE) == [
        ("debug", "2", "2"), ("gpu", "2", "2"), ("long", "3", "1")]


def test_markdown_states_host_coverage(scanned):
    _, _, md, data = scanned
    assert "Host known for 2 of 9 jobs." in section(md, "Suspect nodes")
    assert data["host_coverage"] == {"known": 2, "jobs": 9}


def test_json_carries_the_same(scanned):
    logs, _, _, data = scanned

    def named(entry: dict) -> list[tuple[str, str]]:
        assert entry["jobs"] == len(entry["listed"]) + entry["more"]
        return [(j["job_id"], j["path"]) for j in entry["listed"]]

    assert data["schema_version"] == 2
    assert {c["signature"]: named(c) for c in data["by_signature"]} == {
        "cuda-oom": refs("101", "104", "203", "301", logs=logs),
        "nccl-timeout": refs("102", logs=logs)}
    assert {k: named(v) for k, v in data["job_lists"].items()} == {
        "completed_unhealthy": refs("202", logs=logs), "interrupted": refs("201", logs=logs),
        "unknown": refs("302", logs=logs), "error": []}
    assert data["by_user"] == {"known": 8, "unknown": 1, "more": 0, "groups": [
        {"name": "alice", "jobs": 4, "failed": 3, "causes": [
            {"signature": "cuda-oom", "jobs": 2}, {"signature": "nccl-timeout", "jobs": 1}]},
        {"name": "bob", "jobs": 3, "failed": 1, "causes": [{"signature": "cuda-oom", "jobs": 1}]},
        {"name": "carol", "jobs": 1, "failed": 1,
         "causes": [{"signature": "cuda-oom", "jobs": 1}]}]}
    assert [(g["name"], g["jobs"], g["failed"]) for g in data["by_partition"]["groups"]] == [
        ("debug", 2, 2), ("gpu", 2, 2), ("long", 3, 1)]
    assert (data["by_partition"]["known"], data["by_partition"]["unknown"]) == (7, 2)


def test_parquet_path_is_the_main_log_and_log_files_every_file(scanned):
    logs, out, _, _ = scanned
    rows = {r["job_id"]: r for r in pq.read_table(out / "jobs.parquet").to_pylist()}
    assert {job: r["path"] for job, r in rows.items()} == {j: str(p) for j, p in logs.items()}
    assert rows["104"]["log_files"] == [str(logs["104"].with_suffix(".err")), str(logs["104"])]
    assert rows["101"]["log_files"] == [str(logs["101"])]
    assert {job: (r["user"], r["partition"]) for job, r in rows.items()} == {
        "101": ("alice", "gpu"), "102": ("alice", "gpu"), "103": ("alice", None),
        "104": ("alice", "debug"), "201": ("bob", "long"), "202": ("bob", "long"),
        "203": ("bob", "long"), "301": ("carol", "debug"), "302": (None, None)}
    findings = pq.read_table(out / "findings.parquet").to_pylist()
    assert {(f["job_id"], f["path"]) for f in findings if f["role"] == "root"} == {
        (job, str(logs[job])) for job in ("101", "102", "104", "203", "301")}


# -- the main log of each layout ------------------------------------------------------------

@pytest.mark.parametrize("layout,files,main", [
    ("slurm", ["train.log", "slurm-5.err", "slurm-5.out"], "slurm-5.out"),
    ("slurm", ["slurm-5.err"], "slurm-5.err"),
    ("torchrun", ["attempt_0/0/stderr.log", "attempt_1/10/stderr.log", "attempt_1/2/error.json",
                  "attempt_1/2/stderr.log", "attempt_1/2/stdout.log"], "attempt_1/2/stderr.log"),
    ("torchrun", ["attempt_0/0/stderr.log", "launcher.out"], "launcher.out"),
    ("wandb", ["files/wandb-summary.json", "logs/debug-internal.log", "logs/debug.log",
               "files/output.log"], "files/output.log"),
    ("axolotl", ["checkpoint-9/trainer_state.json", "debug.log"], "debug.log"),
    ("folder", ["train_rank10.log", "train_rank2.log"], "train_rank2.log"),
])
def test_main_log_of_each_layout(layout, files, main):
    whole = layout in ("torchrun", "wandb", "axolotl")
    job = Job("j", "/runs/j", ("/runs/j",) if whole else tuple(f"/runs/j/{f}" for f in files),
              layout)
    assert main_log(job, [f"/runs/j/{f}" for f in files]) == f"/runs/j/{main}"
    assert main_log(job, []) == "/runs/j"


# -- the user and partition rules -----------------------------------------------------------

@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.label}:{r.where}:{r.keyword}")
def test_each_rule_reads_its_example(rule):
    line, value = rule.example
    assert rule.keyword in line.lower(), "the keyword gate must pass the example"
    assert rule.pattern.search(line)["v"] == value
    paths, texts = ([line], []) if rule.where == "path" else ([], [line])
    assert job_labels(paths, texts)[rule.label] == value


@pytest.mark.parametrize("line", [
    "while running replica 0 and partition 0 of a replicated computation",
    "Rank: 3 partition count [4, 4, 4, 4] and sizes[(416571904, False)]",
    "pipeline ..... {'stages': 'auto', 'partition': 'best', 'seed_layers': False}",
    "inference_tp_size=1 tp_gather_partition_size=8 zero_hpz_partition_size=1",
    '  File "/home/users/d/a/darimez/MIRO/train.py", line 3, in <module>',
    "cp /home/ to /srv/home/alice/x",
    "user alice logged in; queue gpu",
])
def test_near_misses_give_no_label(line):
    assert job_labels([], [line]) == {"user": None, "partition": None}


def test_a_folder_of_homes_is_not_a_user():
    assert job_labels(["/home/users/d/a/darimez/run/x.log", "/home/shared/x.log"], ()) == {
        "user": None, "partition": None}


@pytest.mark.parametrize("case,user,partition", [
    ("me-001", "s183905", "gpuv100"),  # an LSF job report's header, pasted first
    ("me-023", "s230208", "gpua100"),  # the same at the end, after the job's output
    ("mm-020", "miranda9", None),  # a shell prompt before the job's output
])
def test_labels_of_real_headers(case, user, partition):
    (source,), _ = discover([str(ROOT / "tests" / "corpus" / case / "log.txt")])
    assert job_labels([], ends(source)) == {"user": user, "partition": partition}


def test_the_ends_of_a_long_log_are_read_and_its_middle_is_not(tmp_path):
    lsf = ("Job was executed on host(s) <n-1>, in queue <gpuv100>, as user <s1> in cluster "
           "<dcc> at Tue Nov  3 02:06:59 2020\n")
    middle = training(2000)
    assert len(middle) > 4 * END_BYTES
    expected = {"start": ("s1", "gpuv100"), "end": ("s1", "gpuv100"), "middle": (None, None)}
    for where, text in {"start": lsf + middle + middle, "end": middle + middle + lsf,
                        "middle": middle + lsf + middle}.items():
        (tmp_path / f"{where}.out").write_text(text)
        (source,), _ = discover([str(tmp_path / f"{where}.out")])
        found = job_labels([], ends(source))
        assert (found["user"], found["partition"]) == expected[where], where


def test_the_scheduler_outranks_paths():
    assert job_labels(["/home/bob/runs/slurm-1.out"], ["SLURM_JOB_USER=alice"])["user"] == "alice"
    assert job_labels(["/scratch/bob/x/slurm-1.out"],
                      ['  File "/home/erin/train.py", line 1'])["user"] == "bob"
    assert job_labels(["/runs/partition-cpu/x.out"], ["#SBATCH -p gpu"])["partition"] == "gpu"


# -- size and escaping ----------------------------------------------------------------------

def synthetic(jobs: int) -> list[dict]:
    verdicts = ("failed", "failed", "completed", "interrupted", "unknown", "error")
    return [{"job_id": str(i), "path": f"/scratch/u{i % 500}/slurm-{i}.out",
             "verdict": verdicts[i % 6], "root_signature": f"sig-{i % 40}",
             "category": "memory", "fix": "lower the batch", "anomalies": (i // 6) % 2,
             "user": f"u{i % 500}", "partition": None if i % 3 else f"p{i % 60}",
             "host": f"node{i % 7}" if i % 2 else None, "hosts": [], "root_text": "x"}
            for i in range(jobs)]


def test_summary_stays_bounded_for_100000_jobs():
    summary = summarize(synthetic(100_000))
    assert len(summary.by_signature) == TOP and summary.other_causes.jobs > 0
    lists = [c.jobs for c in summary.by_signature] + [summary.other_causes,
                                                      *summary.job_lists.values()]
    assert all(len(j.listed) == LISTED and j.more == j.jobs - LISTED for j in lists)
    assert summary.by_signature[0].jobs.jobs + summary.other_causes.jobs < 100_000
    assert sum(c.jobs.jobs for c in summary.by_signature) + summary.other_causes.jobs == \
        summary.verdicts["failed"]
    assert (len(summary.by_user.groups), summary.by_user.more) == (TOP, 500 - TOP)
    assert summary.by_partition.known == 100_000 // 3 + 1
    assert summary.hosts_known == 50_000
    md = render_fleet(summary, 0, 100_000, "out")
    assert len(md) < 20_000 and f"- and {summary.job_lists['error'].more} more" in md
    assert len(json.dumps(summary.to_dict())) < 40_000


def test_log_text_in_the_summary_is_not_markup():
    payload = "@octocat <img src=x onerror=alert(1)> [x](javascript:alert(1)) `t` | **bold**"
    job = JobRef(f"{payload}\n# heading", f"/runs/{payload}\n- item.log")
    jobs = JobList(9, (job,))
    summary = FleetSummary(
        jobs=9, verdicts={"failed": 9}, failure_rate=1.0,
        by_signature=(Cause(payload, payload, jobs),), other_causes=jobs,
        job_lists={"interrupted": jobs, "unknown": jobs, "completed_unhealthy": jobs},
        by_user=Breakdown("user", (Group(payload, 9, 9, ((payload, 9),)),), 0, 9),
        by_partition=Breakdown("partition", (Group(payload, 9, 9),), 3, 9))
    md = render_fleet(summary, 9, 0, payload)
    assert markdown_problems(md) == []
    assert "octocat" in md and md.count("and 8 more") == 5


def test_an_older_cache_is_not_trusted(tmp_path):
    """A dataset written before `log_files`, `user` and `partition` existed is analyzed
    again, not reused with the columns missing."""
    slurm_fleet(tmp_path / "root")
    out = tmp_path / "out"
    run_scan([str(tmp_path / "root")], out)
    jobs = pq.read_table(out / "jobs.parquet")
    pq.write_table(jobs.drop(["log_files", "user", "partition"]), out / "jobs.parquet")
    again = run_scan([str(tmp_path / "root")], out)
    assert (again.reused, again.analyzed) == (0, 9)
    assert any("not this version's" in p for p in again.problems)
    assert pq.read_table(out / "jobs.parquet").schema.equals(jobs.schema)


def test_a_compressed_log_gives_its_start_only(tmp_path):
    import gzip

    log = tmp_path / "slurm-5.out.gz"
    log.write_bytes(gzip.compress(("SLURM_JOB_USER=ann\n" + training(3000)).encode()))
    (source,), _ = discover([str(log)])
    texts = ends(source)
    assert len(texts) == 1 and texts[0].startswith("SLURM_JOB_USER=ann\n")
    assert job_labels([], texts)["user"] == "ann"
