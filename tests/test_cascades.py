"""Multi-rank, multi-file cascades in the shapes of formats.md: the first domino is the root
cause, with the right rank; what it caused is listed as symptoms."""

from __future__ import annotations

import json
from pathlib import Path

from forensics import analyze


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def roles(analysis) -> dict[str, str]:
    return {f.signature: f.role for f in analysis.findings}


def timeout(rank: int, seq: int = 812) -> str:
    return (f"[rank{rank}]:[E0311 09:31:{10 + rank:02d}.118000000 ProcessGroupNCCL.cpp:632] "
            f"[Rank {rank}] Watchdog caught collective operation timeout: WorkNCCL(SeqNum={seq}, "
            f"OpType=ALLREDUCE, NumelIn=1048576, NumelOut=1048576, Timeout(ms)=600000) ran for "
            f"600091 milliseconds before timing out.\n")


def test_cuda_oom_on_one_rank_then_nccl_timeouts(tmp_path):
    files = {f"rank{r}.log": "{'loss': 1.02, 'epoch': 0.2}\n" + timeout(r) for r in (0, 1, 2, 4)}
    files["rank3.log"] = (
        "{'loss': 1.02, 'epoch': 0.2}\n"
        "[rank3]: Traceback (most recent call last):\n"
        '[rank3]:   File "train.py", line 88, in step\n'
        "[rank3]:     loss.backward()\n"
        "[rank3]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.50 GiB. GPU 3 "
        "has a total capacity of 79.10 GiB of which 1.02 GiB is free.\n")
    analysis = analyze(write(tmp_path / "job", files))
    root = analysis.root_cause.finding
    assert (root.signature, root.rank) == ("cuda-oom", 3)
    assert root.capture_dict["requested"] == "3.50 GiB"
    assert roles(analysis)["nccl-timeout"] == "symptom"
    timeouts = next(f for f in analysis.findings if f.signature == "nccl-timeout")
    assert timeouts.ranks == (0, 1, 2, 4)
    assert {r.rank: r.role for r in analysis.ranks}[3] == "root"


BLOCK = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
train.py FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2025-03-11_09:31:42
  host      : gpu-node-3
  rank      : 1 (local_rank: 1)
  exitcode  : -15 (pid: 4402)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 4402
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2025-03-11_09:31:40
  host      : gpu-node-3
  rank      : {rank} (local_rank: {rank})
  exitcode  : {code} (pid: 4401)
  error_file: <N/A>
  traceback : Signal {signal} received by PID 4401
============================================================
"""


def test_host_oom_kernel_line_sigkill_and_torchrun_block(tmp_path):
    job = write(tmp_path / "job", {
        "train.log": "{'loss': 0.9, 'epoch': 0.1}\n"
                     "W0311 09:31:41.004000 4400 torch/distributed/elastic/multiprocessing/"
                     "api.py:897] Sending process 4402 closing signal SIGTERM\n"
                     + BLOCK.format(rank=2, code=-9, signal="9 (SIGKILL)"),
        "dmesg.txt": "[812345.102331] python invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), "
                     "order=0, oom_score_adj=0\n"
                     "[812345.102551] Out of memory: Killed process 4403 (pt_main_thread) "
                     "total-vm:212345678kB, anon-rss:190123456kB, file-rss:0kB, shmem-rss:0kB, "
                     "UID:1000 pgtables:381244kB oom_score_adj:0\n",
    })
    analysis = analyze(job)
    root = analysis.root_cause
    assert root.finding.signature == "host-oom-sigkill"
    assert root.finding.confirmed is True and not root.missing_evidence
    assert root.finding.rank == 2 and root.finding.who.host == "gpu-node-3"
    assert roles(analysis).get("sigterm-received") == "symptom"
    assert any(s.name.endswith("dmesg.txt") for s in analysis.sources)


def test_sigkill_without_memory_evidence_says_what_is_missing(tmp_path):
    log = write(tmp_path, {"t.log": BLOCK.format(rank=0, code=-9, signal="9 (SIGKILL)")})
    root = analyze(log / "t.log").root_cause
    assert root.finding.signature == "host-oom-sigkill"
    assert root.finding.confirmed is False
    assert "dmesg" in root.missing_evidence and "gpu-node-3" in root.missing_evidence


def test_nccl_abort_everywhere_after_one_ranks_exception(tmp_path):
    lines = []
    for rank in range(4):
        lines.append(f"[rank{rank}]: Traceback (most recent call last):\n")
        lines.append(f'[rank{rank}]:   File "train.py", line 120, in <module>\n')
    lines.append("[rank2]: ValueError: labels must be smaller than vocab_size (32000), got 32011\n")
    for rank in (0, 1, 3):
        lines.append(f"[rank{rank}]: torch.distributed.DistBackendError: NCCL communicator was "
                     f"aborted on rank {rank}.\n")
    analysis = analyze(write(tmp_path, {"all.log": "".join(lines)}) / "all.log")
    root = analysis.root_cause
    assert (root.finding.signature, root.finding.rank) == ("python-exception", 2)
    assert root.finding.exception_type == "ValueError"
    assert roles(analysis)["nccl-abort"] == "symptom"
    assert any("odd rank out" in reason for reason in root.reasons)


def test_slurm_time_limit_during_a_hang(tmp_path):
    log = write(tmp_path, {"slurm-77.out": (
        "{'loss': 1.1, 'epoch': 0.3}\n 30%|###       | 300/1000 [10:00<23:20,  2.00s/it]\n"
        "slurmstepd: error: *** JOB 77 ON node9 CANCELLED AT 2025-03-11T12:00:03 DUE TO TIME "
        "LIMIT ***\nsrun: error: node9: tasks 0-7: Terminated\n")})
    analysis = analyze(log)
    root = analysis.root_cause.finding
    assert root.signature == "slurm-time-limit"
    assert root.capture_dict["node"] == "node9"
    assert roles(analysis)["worker-exit-nonzero"] == "symptom"
    assert analysis.timeline.last_step == 300


def test_nccl_timeout_before_the_time_limit_is_the_root(tmp_path):
    log = write(tmp_path, {"slurm-78.out": timeout(0) + timeout(1) + (
        "slurmstepd: error: *** JOB 78 ON node9 CANCELLED AT 2025-03-11T12:00:03 DUE TO TIME "
        "LIMIT ***\n")})
    analysis = analyze(log)
    assert analysis.root_cause.finding.signature == "nccl-timeout"
    assert roles(analysis)["slurm-time-limit"] == "symptom"


def test_torchrun_block_alone_with_sigbus(tmp_path):
    log = write(tmp_path, {"t.log": BLOCK.format(rank=5, code=-7, signal="7 (SIGBUS)")})
    root = analyze(log / "t.log").root_cause.finding
    assert (root.signature, root.rank, root.who.host) == ("sigbus-exitcode-7", 5, "gpu-node-3")


def test_hang_with_only_watchdog_timeouts(tmp_path):
    log = write(tmp_path, {"t.log": timeout(0, 4121) + timeout(1, 4121)})
    root = analyze(log / "t.log").root_cause.finding
    assert root.signature == "nccl-timeout"
    assert root.capture_dict == {"seq": "4121", "op": "ALLREDUCE", "timeout_ms": "600000"}


def test_log_that_just_stops_is_interrupted(tmp_path):
    text = "".join(f"{{'loss': {2 - i / 100}, 'epoch': {i / 100}}}\n" for i in range(20))
    analysis = analyze(write(tmp_path, {"t.log": text + "some unrelated output\n"}) / "t.log")
    assert analysis.root_cause is None
    assert analysis.verdict == "interrupted"
    assert analysis.timeline.lines_after_last_step == 1


def test_error_json_is_read_and_attributed(tmp_path):
    stack = ('Traceback (most recent call last):\n  File "t.py", line 3, in <module>\n'
             "    run()\nZeroDivisionError: division by zero\n")
    job = write(tmp_path / "logs", {
        "run/attempt_0/0/stdout.log": "{'loss': 1.0, 'epoch': 0.1}\n",
        "run/attempt_0/1/error.json": json.dumps({"message": {
            "message": "ZeroDivisionError: division by zero",
            "extraInfo": {"py_callstack": stack, "timestamp": "1741685400"}}}),
    })
    root = analyze(job).root_cause.finding
    assert (root.signature, root.rank) == ("zero-division", 1)
    assert root.first.source.endswith("attempt_0/1/error.json")
    assert root.who.time is not None


# --- how findings relate: one event told in parts, hints, group relations in time order ---

def test_an_abort_is_explained_by_its_own_what_line(tmp_path):
    """`terminate called ...` comes first on the page, but its `what():` says why."""
    log = write(tmp_path, {"t.log": (
        "terminate called after throwing an instance of 'std::runtime_error'\n"
        "  what():  [Rank 7] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=806,"
        " OpType=BROADCAST, Timeout(ms)=1800000) ran for 1801027 milliseconds before timing "
        "out.\n"
        "ERROR:torch.distributed.elastic.multiprocessing.api:failed (exitcode: -6) local_rank: "
        "7 (pid: 561642) of binary: /usr/bin/python\n")})
    analysis = analyze(log / "t.log")
    assert analysis.root_cause.finding.signature == "nccl-timeout"
    assert roles(analysis)["sigabrt"] == "symptom"


def test_neighbouring_lines_of_other_ranks_are_not_one_event(tmp_path):
    log = write(tmp_path, {"t.log": (
        "[rank2]: ValueError: labels must be smaller than vocab_size (32000), got 32011\n"
        "[rank0]: torch.distributed.DistBackendError: NCCL communicator was aborted on rank 0.\n"
    )})
    analysis = analyze(log / "t.log")
    assert analysis.root_cause.finding.signature == "python-exception"
    assert roles(analysis)["nccl-abort"] == "symptom"


RAY_HEDGE = ("The actor is dead because its worker process has died. Worker exit type: "
             "SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a connection error "
             "code 2. End of file. There are some potential root causes. (1) The process is "
             "killed by SIGKILL by OOM killer due to high memory usage. (2) ray stop --force is "
             "called. (3) The worker is crashed unexpectedly due to SIGSEGV or other unexpected "
             "errors.\n")


def test_a_hedged_list_of_causes_is_a_hint_not_the_root(tmp_path):
    log = write(tmp_path, {"t.log": (
        "(WorkerDict pid=26103) RuntimeError: nonce == returnedNonce INTERNAL ASSERT FAILED at "
        '"/pytorch/torch/csrc/distributed/c10d/TCPStore.cpp":418, please report a bug to '
        "PyTorch. Ping failed, invalid nonce returned\n" + RAY_HEDGE)})
    analysis = analyze(log / "t.log")
    assert analysis.root_cause.finding.signature == "rendezvous-failure"
    assert roles(analysis)["host-oom-sigkill"] != "root"


def test_a_hint_alone_still_names_the_likeliest_cause(tmp_path):
    root = analyze(write(tmp_path, {"t.log": RAY_HEDGE}) / "t.log").root_cause
    assert root.finding.signature == "host-oom-sigkill"
    assert not root.finding.definite


def test_a_message_cut_short_does_not_outrank_one_stated_whole(tmp_path):
    log = write(tmp_path, {"t.log": (
        "RuntimeError: Error(s) in loading state_dict for PeftModelForCausalLM:\n"
        "\tsize mismatch for base_model.model.model.embed_tokens.base_layer.weight: copying a "
        "param with shape torch.Size([32005, 2048]) from checkpoint, the shap")})
    analysis = analyze(log / "t.log")
    assert analysis.root_cause.finding.signature == "state-dict-mismatch"
    assert not next(f for f in analysis.findings
                    if f.signature == "zero3-partitioned-param").definite


def test_a_specific_message_cut_short_still_beats_the_catch_all(tmp_path):
    log = write(tmp_path, {"t.log": (
        "Traceback (most recent call last):\n"
        '  File "train.py", line 3, in <module>\n'
        "    import bitsandbytes\n"
        "RuntimeError:\n"
        "        CUDA Setup failed despite GPU b")})
    assert analyze(log / "t.log").root_cause.finding.signature == "bitsandbytes-setup"


def test_a_group_relation_holds_only_when_the_cause_came_first(tmp_path):
    usage = "pretrain_gpt.py: error: unrecognized arguments: --keep-last-n-checkpoints 5\n"
    store = ("torch.distributed.elastic.rendezvous.api.RendezvousConnectionError: The "
             "connection to the C10d store has failed. See inner exception for details.\n")
    after = analyze(write(tmp_path / "a", {"t.log": usage + store}) / "t.log")
    assert after.root_cause.finding.signature == "cli-usage-error"
    assert roles(after)["rendezvous-failure"] == "symptom"
    before = analyze(write(tmp_path / "b", {"t.log": store + usage}) / "t.log")
    assert before.root_cause.finding.signature == "rendezvous-failure"
