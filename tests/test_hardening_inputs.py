"""Issue 15, the input half: logs, paths, compressed files, scan folders and caches that an
attacker or an accident can produce. Each case once gave a traceback, a wrong exit code, an
unbounded resource or a lost report; each is checked here through the command a user runs."""

from __future__ import annotations

import builtins
import bz2
import dataclasses
import gzip
import lzma
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import regex
import zstandard
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forensics.catalog import load_catalog
from forensics.cli import cli
from forensics.fleet import run as fleet_run
from forensics.fleet.dataset import JOBS_FILE
from forensics.inputs.sources import ReadLimits, ReadStatus, Source, discover, read_blocks
from forensics.lines.blocks import MAX_KEPT
from forensics.lines.linepass import compile_plan, line_pass
from forensics.lint import (
    adversarial_lines,
    backtracking_problems,
    example_pass,
    unbounded_gaps,
)

from .budget import budget

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def no_traceback(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    assert "Traceback" not in result.output


# -- metrics whose keys are the timeline's own column names -----------------------------

@pytest.mark.parametrize("key", ["line", "kind", "source"])
def test_a_metric_named_like_a_timeline_column(tmp_path, key):
    log = tmp_path / "train.log"
    log.write_text("".join(f"{{'loss': {1.0 - i / 10}, '{key}': 3.0, 'epoch': 0.{i}}}\n"
                           for i in range(1, 4)) + "{'train_runtime': 9.5, 'epoch': 1.0}\n")
    result = invoke("analyze", "--format", "md", str(log))
    no_traceback(result)
    assert result.exit_code == 0
    for fmt in ("csv", "md"):
        exported = invoke("timeline", "--format", fmt, str(log))
        no_traceback(exported)
        assert exported.exit_code == 0
        assert f"logged_{key}" in exported.output.splitlines()[0]
    parquet = tmp_path / "t.parquet"
    no_traceback(invoke("timeline", "--format", "parquet", "-o", str(parquet), str(log)))
    assert f"logged_{key}" in pq.read_schema(parquet).names


def test_a_printed_dict_with_its_own_step_is_that_step(tmp_path):
    """`step` in a printed dict is the record's step (a custom loop's `print(metrics)`), not a
    metric; a `step` that is no number leaves the record to the bars' step."""
    log = tmp_path / "train.log"
    log.write_text("".join(f"{{'loss': {1.0 - i / 10}, 'step': {i * 50}, 'epoch': 0.{i}}}\n"
                           for i in range(1, 4)) + "{'loss': 0.6, 'step': None, 'epoch': 0.4}\n")
    exported = invoke("timeline", "--format", "csv", str(log))
    no_traceback(exported)
    header, *rows = exported.output.splitlines()
    assert "logged_step" not in header
    assert [row.split(",")[0] for row in rows][:3] == ["50", "100", "150"]


SOME = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                   st.none(), st.text(max_size=12), st.booleans())


@SOME
@given(st.lists(st.dictionaries(st.text(min_size=1, max_size=20), VALUES, min_size=1,
                                max_size=8), min_size=1, max_size=6))
def test_any_metrics_dict_is_read_without_a_traceback(tmp_path, records):
    log = tmp_path / "metrics.log"
    log.write_text("".join(f"{record!r}\n" for record in records), encoding="utf-8",
                   errors="surrogatepass")
    for args in (["analyze", "--format", "json"], ["timeline", "--format", "csv"],
                 ["timeline", "--format", "md"]):
        result = invoke(*args, str(log))
        no_traceback(result)
        assert result.exit_code in (0, 1, 3)


NAME_BYTES = st.binary(min_size=1, max_size=24).filter(
    lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b".."))


@SOME
@given(NAME_BYTES, NAME_BYTES)
def test_any_folder_and_file_name(tmp_path_factory, folder, name):
    root = tmp_path_factory.mktemp("names")
    job = Path(os.fsdecode(bytes(root) + b"/" + folder))
    job.mkdir()
    log = Path(os.fsdecode(bytes(job) + b"/" + name + b".log"))
    log.write_text(OOM)
    for args in (["analyze", "--format", "md", str(job)], ["analyze", "--format", "json",
                                                           str(log)]):
        result = invoke(*args)
        no_traceback(result)
        assert result.exit_code == 1
        assert "cuda-oom" in result.output
    out = root / "out"
    result = invoke("scan", str(root), "--out", str(out), "--format", "json", "--jobs", "1")
    no_traceback(result)
    assert result.exit_code == 1
    assert [r["root_signature"] for r in pq.read_table(out / JOBS_FILE).to_pylist()] == \
        ["cuda-oom"]


# -- output files ---------------------------------------------------------------------

@pytest.mark.parametrize("command", ["analyze", "timeline"])
def test_output_into_a_missing_folder_is_a_usage_error(tmp_path, command):
    log = tmp_path / "a.log"
    log.write_text("{'loss': 1.0, 'epoch': 0.1}\n" + OOM)
    result = invoke(command, str(log), "-o", str(tmp_path / "missing" / "report.md"))
    no_traceback(result)
    assert result.exit_code == 2
    assert "does not exist" in result.output


@pytest.mark.parametrize("command", ["analyze", "timeline"])
@pytest.mark.parametrize("named", ["file", "folder"])
def test_the_output_never_overwrites_an_input(tmp_path, named, command):
    job = tmp_path / "job"
    job.mkdir()
    log = job / "train.log"
    content = "{'loss': 1.0, 'epoch': 0.1}\n" + OOM
    log.write_text(content)
    target = str(log if named == "file" else job)
    result = invoke(command, target, "-o", str(log))
    no_traceback(result)
    assert result.exit_code == 2
    assert "one of the inputs" in result.output
    assert log.read_text() == content


@pytest.mark.parametrize("args", [["analyze"], ["timeline", "--format", "parquet"]])
def test_an_output_file_is_written_whole_with_the_usual_permissions(tmp_path, args):
    log = tmp_path / "a.log"
    log.write_text("{'loss': 1.0, 'epoch': 0.1}\n" + OOM)
    report = tmp_path / "report.out"
    assert invoke(*args, str(log), "-o", str(report)).exit_code in (0, 1)
    assert report.stat().st_size > 0
    umask = os.umask(0)
    os.umask(umask)
    assert report.stat().st_mode & 0o777 == 0o666 & ~umask
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


# -- reports from whatever could be read ----------------------------------------------

def test_a_missing_input_among_several_still_gives_the_report(tmp_path):
    log = tmp_path / "a.log"
    log.write_text(OOM)
    result = invoke("analyze", "--format", "md", str(log), str(tmp_path / "gone.log"))
    no_traceback(result)
    assert result.exit_code == 3
    assert "cuda-oom" in result.output
    assert "gone.log: no such file or folder" in result.output


def test_only_missing_inputs_is_one_line_and_exit_3(tmp_path):
    result = invoke("analyze", str(tmp_path / "gone.log"), str(tmp_path / "also.log"))
    no_traceback(result)
    assert result.exit_code == 3
    assert result.output.count("\n") == 1


def test_a_source_that_cannot_be_opened_is_a_problem_not_an_abort(tmp_path):
    status = ReadStatus()
    assert list(read_blocks(Source("folder.log", path=tmp_path), status)) == []
    assert status.problems == ["folder.log: is a folder"]
    lines = line_pass(Source("folder.log", path=tmp_path), compile_plan(load_catalog()))
    assert lines.info.problems == ("folder.log: is a folder",)


def test_a_job_with_one_unreadable_file_is_scanned_from_the_rest(tmp_path, monkeypatch):
    job = tmp_path / "jobs" / "run"
    job.mkdir(parents=True)
    (job / "train.log").write_text(OOM)
    (job / "other.log").write_text("ok\n")
    real_open = builtins.open

    def flaky(path, *args, **kwargs):  # other.log fails to open, as on a broken disk
        if str(path).endswith("other.log"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", flaky)
    row = fleet_run.analyze_job(fleet_run.Job("run", str(job), (str(job),), "folder"), (), "fp")
    monkeypatch.undo()
    assert row.row["verdict"] == "failed"
    assert row.row["root_signature"] == "cuda-oom"
    assert "permission denied" in row.row["error"]


# -- compressed inputs ------------------------------------------------------------------

def _bomb(path: Path, megabytes: int) -> None:
    line = b"Training completed. Do not forget to share your model on huggingface.co =)\n"
    block = line * (1024 * 1024 // len(line))
    with open(path, "wb") as fh, zstandard.ZstdCompressor(level=19).stream_writer(fh) as out:
        for _ in range(megabytes):
            out.write(block)


def test_a_decompression_bomb_stops_at_the_ratio_cap(tmp_path):
    bomb = tmp_path / "train.log.zst"
    _bomb(bomb, 48)
    assert bomb.stat().st_size < 64 * 1024  # well over 1000:1
    limits = ReadLimits(ratio_after=4 * 1024 * 1024)
    sources, _ = discover([str(bomb)], limits)
    status = ReadStatus()
    read = sum(len(b) for b in read_blocks(sources[0], status))
    assert read < 24 * 1024 * 1024
    assert "decompression bomb" in status.problems[0]
    assert "--max-ratio" in status.problems[0]


COMPRESSORS = {
    "gzip": lambda data: gzip.compress(data, 9),
    "bz2": lambda data: bz2.compress(data, 9),
    "xz": lambda data: lzma.compress(data),
    "zstd": lambda data: zstandard.ZstdCompressor(level=19).compress(data),
}


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_every_codec_stops_at_the_ratio_cap(tmp_path, codec):
    data = b"loss 1.0 step 1 of 100, nothing to see here\n" * 200_000  # ~9 MB
    packed = tmp_path / "train.log.packed"
    packed.write_bytes(COMPRESSORS[codec](data))
    ratio = len(data) / packed.stat().st_size
    limits = ReadLimits(max_ratio=ratio / 4, ratio_after=1024 * 1024)
    sources, _ = discover([str(packed)], limits)
    status = ReadStatus()
    read = sum(len(b) for b in read_blocks(sources[0], status))
    assert read < len(data)
    assert "decompression bomb" in status.problems[0]
    sources, _ = discover([str(packed)])
    status = ReadStatus()
    assert sum(len(b) for b in read_blocks(sources[0], status)) == len(data)
    assert status.problems == []


def test_decompressed_bytes_have_a_cap_and_a_flag(tmp_path):
    bomb = tmp_path / "train.log.zst"
    _bomb(bomb, 8)
    result = invoke("analyze", "--format", "md", "--max-decompressed", "0.002", str(bomb))
    no_traceback(result)
    assert result.exit_code == 3
    assert "decompressed past" in result.output and "--max-decompressed" in result.output
    assert invoke("analyze", "--format", "md", str(bomb)).exit_code == 0  # 8 MiB: within


def test_repeated_completion_lines_keep_memory_flat():
    plan = compile_plan(load_catalog())
    text = "Training completed. Do not forget to share your model on huggingface.co/models =)\n"
    lines = example_pass(text * 50_000, plan)
    assert lines.completion is not None and lines.completion.line == 50_000


def test_endless_tracebacks_keep_the_first_and_the_last():
    plan = compile_plan(load_catalog())
    one = "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\nValueError: x\n"
    lines = example_pass(one * (MAX_KEPT + 500) + one.replace("ValueError", "KeyError"), plan)
    assert len(lines.tracebacks) == MAX_KEPT
    assert lines.tracebacks[0].parts[0].exception_type == "ValueError"
    assert lines.tracebacks[-1].parts[0].exception_type == "KeyError"


# -- scan: folder names, caches, two scans, symlinks, schedulers ------------------------

def test_a_folder_name_that_is_not_utf8(tmp_path):
    root = tmp_path / "root"
    job = Path(os.fsdecode(bytes(root) + b"/bad\xffname"))
    job.mkdir(parents=True)
    (job / "slurm-7.out").write_text(OOM)
    out = tmp_path / "out"
    result = invoke("scan", str(root), "--out", str(out), "--format", "md")
    no_traceback(result)
    assert result.exit_code == 1
    rows = pq.read_table(out / JOBS_FILE).to_pylist()
    assert rows[0]["path"].endswith("bad\\xffname/slurm-7.out")
    assert rows[0]["root_signature"] == "cuda-oom"
    assert sorted(p.name for p in out.iterdir()) == ["findings.parquet", "jobs.parquet"]
    report = invoke("analyze", "--format", "json", str(job))
    assert "bad\\\\xffname" in report.output  # JSON of the printable name


def _jobs(root: Path, count: int) -> None:
    for i in range(count):
        (root / f"j{i}").mkdir(parents=True)
        (root / f"j{i}" / f"slurm-{i}.out").write_text(OOM if i % 2 else "loss 1.0\n")


def test_two_scans_into_one_folder(tmp_path):
    _jobs(tmp_path / "root", 12)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "forensics", "scan", str(tmp_path / "root"), "--out",
               str(out), "--format", "md", "--jobs", "1"]
    scans = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    for scan in scans:
        _, err = scan.communicate(timeout=120)
        assert scan.returncode == 1, err
        assert b"Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["findings.parquet", "jobs.parquet"]
    assert len(pq.read_table(out / JOBS_FILE)) == 12


@pytest.mark.parametrize("damage", ["missing verdict", "wrong type", "torn file"])
def test_a_cache_that_is_not_this_versions_is_not_trusted(tmp_path, damage):
    _jobs(tmp_path / "root", 4)
    out = tmp_path / "out"
    assert invoke("scan", str(tmp_path / "root"), "--out", str(out)).exit_code == 1
    table = pq.read_table(out / JOBS_FILE)
    if damage == "missing verdict":
        pq.write_table(table.drop(["verdict"]), out / JOBS_FILE)
    elif damage == "wrong type":
        column = table.schema.get_field_index("confidence")
        pq.write_table(table.set_column(column, "confidence", pa.array(["x"] * len(table))),
                       out / JOBS_FILE)
    else:
        (out / JOBS_FILE).write_bytes((out / JOBS_FILE).read_bytes()[:200])
    result = invoke("scan", str(tmp_path / "root"), "--out", str(out), "--format", "json")
    no_traceback(result)
    assert result.exit_code == 1  # two jobs failed: the damaged cache hides nothing
    assert "cache not used" in result.output
    rows = pq.read_table(out / JOBS_FILE).to_pylist()
    assert sum(r["verdict"] == "failed" for r in rows) == 2


def test_a_symlinked_file_in_a_job_folder_is_never_read(tmp_path):
    secret = tmp_path / "elsewhere.log"
    secret.write_text(OOM)
    run = tmp_path / "root" / "logs"
    (run / "attempt_0" / "0").mkdir(parents=True)
    (run / "attempt_0" / "0" / "stdout.log").write_text("loss 1.0\n")
    (run / "attempt_0" / "0" / "stderr.log").symlink_to(secret)
    out = tmp_path / "out"
    result = invoke("scan", str(tmp_path / "root"), "--out", str(out), "--format", "md")
    no_traceback(result)
    rows = pq.read_table(out / JOBS_FILE).to_pylist()
    assert rows and all(r["root_signature"] != "cuda-oom" for r in rows)
    sources, _ = discover([str(run)])
    assert [s.name for s in sources] == ["logs/attempt_0/0/stdout.log"]


def test_an_unreachable_scheduler_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    _jobs(tmp_path / "root", 2)
    monkeypatch.setattr(fleet_run, "SCHEDULER_TIMEOUT", "1s")
    for address in ("tcp://127.0.0.1:9", "not an address"):
        result = invoke("scan", str(tmp_path / "root"), "--out", str(tmp_path / "out"),
                        "--scheduler", address)
        no_traceback(result)
        assert result.exit_code == 2
        assert result.output.startswith(f"forensics: error: --scheduler {address}: cannot")
        assert not any(p.name.endswith(".tmp") for p in (tmp_path / "out").iterdir())


# -- Ctrl-C at any moment -------------------------------------------------------------

def _wait_until_loading(process: subprocess.Popen) -> None:
    """Until the command has begun loading its own modules (the regex engine is mapped):
    before that, Python itself is starting, and a Ctrl-C there is Python's to answer."""
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if "_regex" in maps.read_text():
                return
        except OSError:
            pass
        time.sleep(0.005)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0])
def test_ctrl_c_exits_130_at_any_moment(tmp_path, delay):
    log = tmp_path / "big.log"
    log.write_text("some quiet noise line that matches nothing in the catalog\n" * 400_000)
    root = tmp_path / "root"
    _jobs(root, 40)
    for command in (["analyze", str(log), str(log)],
                    ["scan", str(root), "--out", str(tmp_path / "out"), "--jobs", "1"]):
        process = subprocess.Popen([sys.executable, "-m", "forensics", *command],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_until_loading(process)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        if process.returncode in (0, 1):
            continue  # it finished before the signal came
        assert process.returncode == 130, err
        assert b"Traceback" not in err and b"Aborted!" not in err
        assert err.decode().strip().splitlines()[-1].startswith("forensics: interrupted")


# -- regexes that could backtrack -------------------------------------------------------

def test_unbounded_wildcards_before_more_pattern_are_found():
    assert unbounded_gaps(r"is partitioned.*(?:ZeRO-?3)") == [".*"]
    assert unbounded_gaps(r"404 Client Error.+?for url") == [".+?"]
    assert unbounded_gaps(r"Error(?::\s?(?P<message>.*))?$") == []
    assert unbounded_gaps(r"a.*|b") == []
    assert unbounded_gaps(r"[.*]x\.*y") == []
    assert unbounded_gaps(r"is partitioned.{0,500}?ZeRO") == []


def test_no_catalog_regex_backtracks():
    catalog = load_catalog()
    assert [p for s in catalog.signatures for p in backtracking_problems(s)] == []


def test_a_backtracking_user_regex_is_reported(tmp_path):
    catalog = load_catalog()
    base = next(s for s in catalog.signatures if s.id == "zero3-partitioned-param")
    slow = dataclasses.replace(base, patterns=(regex.compile(r"(?:is|are) partitioned.*ZeRO"),
                                               regex.compile(r"partitioned(\s*\w*)*$")))
    problems = backtracking_problems(slow)
    assert any("patterns[0]: unbounded `.*`" in p for p in problems)
    assert any("patterns[1]: took" in p for p in problems)


def test_every_signature_gets_through_its_adversarial_lines_in_time():
    catalog = load_catalog()
    plan = compile_plan(catalog)
    slow = []
    for signature in catalog.signatures:
        for line in adversarial_lines(signature):
            start = time.perf_counter()
            example_pass(line, plan)
            if time.perf_counter() - start > budget(1.0):
                slow.append((signature.id, line[:40]))
    assert slow == []


@pytest.mark.parametrize("signature_id", ["bf16-numpy", "hub-unreachable",
                                          "host-memory-high", "nccl-timeout"])
def test_one_megabyte_lines_take_linear_time(signature_id):
    catalog = load_catalog()
    plan = compile_plan(catalog)
    signature = next(s for s in catalog.signatures if s.id == signature_id)
    for line in adversarial_lines(signature, 1024 * 1024)[-6:]:
        start = time.perf_counter()
        example_pass(line, plan)
        assert time.perf_counter() - start < budget(10), line[:40]


def test_a_log_that_invents_a_metric_name_every_line(tmp_path):
    log = tmp_path / "names.log"
    log.write_text("".join(f"{{'loss': {i}.5, 'k{i}': 2.0, 'epoch': 0.1}}\n"
                           for i in range(3000)))
    result = invoke("analyze", "--format", "md", str(log))
    no_traceback(result)
    assert "the metrics name over 1024 different things; the timeline keeps the 1024" in \
        result.output
    exported = invoke("timeline", "--format", "csv", str(log)).output.splitlines()
    assert len(exported) == 3001 and len(exported[0].split(",")) == 4 + 1024


def test_progress_bars_whose_total_changes_every_line(tmp_path):
    log = tmp_path / "bars.log"
    log.write_text("".join(f" 5%|▌         | {i}/{1000 + i} [00:01<00:10,  1.00it/s]\n"
                           for i in range(100_000)) + OOM)
    start = time.perf_counter()
    result = invoke("analyze", "--format", "md", str(log))
    assert time.perf_counter() - start < budget(30)
    assert "cuda-oom" in result.output


@pytest.mark.parametrize(("regex_source", "line"), [
    (r"partitioned(\s*\w*)*$", "partitioned " + "a" * 8000 + "!"),
    (r"partitioned (?P<a>\w*)\w*\w*\w*X", "partitioned " + "a" * 3000)])
def test_a_user_regex_that_backtracks_cannot_hang_a_run(tmp_path, regex_source, line):
    patterns = tmp_path / "patterns" / "python"
    patterns.mkdir(parents=True)
    (patterns / "slow-regex.toml").write_text(f'''
id = "slow-regex"
title = "A user's regex that backtracks"
category = "python"
severity = "error"
priority = 50
keywords = ["partitioned"]
patterns = [\'\'\'{regex_source}\'\'\']
cause = "x"
fix = "- y"
references = ["https://example.org"]
examples = ["partitioned a b c"]
counterexamples = ["nothing"]
''')
    log = tmp_path / "train.log"
    log.write_text((line + "\n") * 200 + OOM)
    start = time.perf_counter()
    result = invoke("analyze", "--format", "md", "--patterns", str(tmp_path / "patterns"),
                    str(log))
    no_traceback(result)
    assert time.perf_counter() - start < budget(30)
    assert "cuda-oom" in result.output
    assert "slow-regex's regex ran out of time" in result.output



# -- memory: every hostile input above stays under 300 MB -------------------------------

PEAK_MB = 300
MEASURE = ("import resource, subprocess, sys\n"
           "subprocess.run([sys.executable, '-m', 'forensics', *sys.argv[1:]],\n"
           "               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n")


def _hostile_logs(folder: Path) -> dict[str, Path]:
    logs = {"bomb": folder / "bomb.log.zst", "completions": folder / "completions.log",
            "tracebacks": folder / "tracebacks.log", "one line": folder / "line.log"}
    _bomb(logs["bomb"], 256)
    logs["completions"].write_text("Training completed. Do not forget to share your model "
                                   "on huggingface.co/models =)\n" * 400_000)
    logs["tracebacks"].write_text(("Traceback (most recent call last):\n  File \"a.py\", "
                                   "line 1, in f\nValueError: x\n") * 60_000)
    logs["one line"].write_text("RuntimeError: CUDA error: " + "x" * 40_000_000 + "\n")
    logs["metric names"] = folder / "names.log"
    logs["metric names"].write_text("".join(f"{{'loss': 1.0, 'k{i}': 2.0, 'epoch': 0.1}}\n"
                                            for i in range(100_000)))
    return logs


def test_hostile_inputs_stay_under_the_memory_budget(tmp_path):
    for name, log in _hostile_logs(tmp_path).items():
        result = subprocess.run([sys.executable, "-c", MEASURE, "analyze", "--format", "md",
                                 str(log)], capture_output=True, text=True, timeout=300)
        assert int(result.stdout) < PEAK_MB, (name, result.stdout)


# -- what a second review found --------------------------------------------------------

def test_a_nan_storm_past_the_row_budget_is_thinned_too(tmp_path):
    log = tmp_path / "nan.log"
    log.write_text("".join(f"{{'loss': nan, 'grad_norm': nan, 'epoch': {i / 1e5:.5f}}}\n"
                           for i in range(250_000)))
    start = time.perf_counter()
    result = invoke("analyze", "--format", "md", str(log))
    assert time.perf_counter() - start < budget(60)
    assert "nan-loss" in result.output


def test_a_keyword_on_every_word_keeps_memory_flat(tmp_path):
    log = tmp_path / "dense.log"
    log.write_text(("Error: " * 40 + "\n") * 70_000 + ("tensor([" + "nan, " * 200 + "nan])\n")
                   * 20_000)
    result = subprocess.run([sys.executable, "-c", MEASURE, "analyze", "--format", "md",
                             str(log)], capture_output=True, text=True, timeout=300)
    assert int(result.stdout) < 200


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="needs /dev/null")
def test_output_to_a_device_or_a_symlink_writes_through_it(tmp_path):
    log = tmp_path / "a.log"
    log.write_text(OOM)
    assert invoke("analyze", str(log), "-o", "/dev/null").exit_code == 1
    assert Path("/dev/null").is_char_device()
    (tmp_path / "real.md").write_text("old")
    (tmp_path / "link.md").symlink_to(tmp_path / "real.md")
    assert invoke("analyze", str(log), "-o", str(tmp_path / "link.md")).exit_code == 1
    assert (tmp_path / "link.md").is_symlink()
    assert (tmp_path / "real.md").read_text().startswith("## forensics")


def test_an_input_redirected_to_stdin_is_never_overwritten(tmp_path):
    log = tmp_path / "a.log"
    log.write_text(OOM)
    with open(log, "rb") as stdin:
        result = subprocess.run([sys.executable, "-m", "forensics", "analyze", "-", "-o",
                                 str(log)], stdin=stdin, capture_output=True, timeout=60)
    assert result.returncode == 2
    assert log.read_text() == OOM


def test_usage_errors_mask_what_was_typed():
    token = "hf_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL"
    for args in (["scan", f"/nope/{token}"], ["analyze", "x", "--format", token],
                 ["patterns", "show", token], ["memory", f"/nope/{token}"]):
        result = subprocess.run([sys.executable, "-m", "forensics", *args], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode in (2, 3)
        assert token not in result.stderr and "[REDACTED]" in result.stderr


def test_parquet_and_csv_hold_no_terminal_controls(tmp_path):
    hostile = "evil\x1b]8;;http://x\x1b\\\u202ename\x1b[2J"
    job = tmp_path / "root" / hostile
    job.mkdir(parents=True)
    (job / "slurm-9.out").write_text(f"{{'loss': 1.0, '{hostile}': 2.0, 'epoch': 0.1}}\n" + OOM)
    out = tmp_path / "out"
    invoke("scan", str(tmp_path / "root"), "--out", str(out), "--format", "md")
    cells = [str(v) for name in ("jobs.parquet", "findings.parquet")
             for row in pq.read_table(out / name).to_pylist() for v in row.values()]
    exported = invoke("timeline", "--format", "csv", str(job / "slurm-9.out")).output
    for text in [*cells, exported]:
        assert "\x1b" not in text and "\u202e" not in text


def test_a_device_named_on_the_command_line_is_skipped():
    if not Path("/dev/zero").is_char_device():
        pytest.skip("needs /dev/zero")
    start = time.perf_counter()
    result = invoke("analyze", "--format", "md", "/dev/zero")
    assert time.perf_counter() - start < budget(30)
    assert result.exit_code == 3 and "a device, not a log file" in result.output


def test_numbers_at_the_float_limit_print_no_warnings(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("".join(f"{{'loss': 1e308, 'grad_norm': 1.7e308, 'epoch': {i / 10}}}\n"
                           for i in range(50)))
    result = subprocess.run([sys.executable, "-m", "forensics", "analyze", str(log)],
                            capture_output=True, text=True, timeout=60)
    assert "Warning" not in result.stderr


def test_overlapping_scan_roots_give_each_job_once(tmp_path):
    _jobs(tmp_path / "root", 3)
    out = tmp_path / "out"
    invoke("scan", str(tmp_path / "root"), str(tmp_path / "root" / "j1"),
           str(tmp_path / "root"), "--out", str(out))
    assert len(pq.read_table(out / JOBS_FILE)) == 3


def test_a_catalog_folder_whose_entries_vanish(tmp_path, monkeypatch):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc")
    monkeypatch.setenv("FORENSICS_PATTERNS", "/proc/self/task")
    log = tmp_path / "a.log"
    log.write_text(OOM)
    result = invoke("analyze", "--format", "md", str(log))
    no_traceback(result)
    assert "cuda-oom" in result.output


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le-bom", "utf-16-be-bom"])
def test_a_utf16_log_from_powershell_is_read(tmp_path, encoding):
    text = "{'loss': 1.0, 'epoch': 0.1}\r\n" + OOM.replace("\n", "\r\n")
    data = {"utf-16": text.encode("utf-16"),
            "utf-16-le-bom": b"\xff\xfe" + text.encode("utf-16-le"),
            "utf-16-be-bom": b"\xfe\xff" + text.encode("utf-16-be")}[encoding]
    log = tmp_path / "train.log"
    log.write_bytes(data)
    for target in (log, tmp_path):
        result = invoke("analyze", "--format", "md", str(target))
        assert result.exit_code == 1, result.output
        assert "cuda-oom" in result.output and "binary" not in result.output
