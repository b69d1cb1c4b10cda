"""How a process ended decides what can be its root cause: a warning printed just before a
traceback whose exception line is missing, a wait that never ended, a traceback cut off in
a paste, an IPython traceback. Each rule is tested with its benign look-alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from forensics import analyze
from forensics.lines.signals import signal_of

CUT_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/opt/app/train.py", line 12, in <module>\n'
    "    main()\n"
    '  File "/opt/conda/lib/python3.10/multiprocessing/queues.py", line 336, in __init__\n'
    "    self._rlock = ctx.Lock()\n")
DISK_WARNING = ("/opt/conda/lib/python3.10/site-packages/joblib/_multiprocessing_helpers.py:46:"
                " UserWarning: [Errno 28] No space left on device.  joblib will operate in "
                "serial mode\n  warnings.warn('%s.  joblib will operate in serial mode' % (e,))\n")
WAIT = "INFO:trl.extras.vllm_client:Server is not up yet. Retrying in 2.0 seconds...\n"


def run(tmp_path: Path, text: str):
    path = tmp_path / "job.log"
    path.write_text(text)
    return analyze(path)


def root_of(analysis) -> str | None:
    return analysis.root_cause.finding.signature if analysis.root_cause else None


def test_a_warning_that_announces_a_cut_traceback_is_the_root(tmp_path):
    analysis = run(tmp_path, DISK_WARNING + CUT_TRACEBACK)
    assert root_of(analysis) == "disk-full"
    assert analysis.root_cause.confidence < 0.8  # stated only as a warning
    assert any("only as a warning" in r for r in analysis.root_cause.reasons)


def test_the_same_warning_before_a_whole_traceback_is_context(tmp_path):
    analysis = run(tmp_path, DISK_WARNING + CUT_TRACEBACK
                   + "ValueError: batch size must be positive\n")
    assert root_of(analysis) == "python-exception"
    assert analysis.root_cause.finding.exception_type == "ValueError"


def test_the_same_warning_in_a_run_that_went_on_is_not_a_failure(tmp_path):
    analysis = run(tmp_path, DISK_WARNING + "{'loss': 1.2, 'epoch': 0.1}\n")
    assert analysis.root_cause is None


def test_a_cut_traceback_alone_is_a_death_not_unknown(tmp_path):
    analysis = run(tmp_path, "loading shards\n" + CUT_TRACEBACK)
    assert analysis.verdict == "failed"
    assert root_of(analysis) == "python-exception"
    captures = dict(analysis.root_cause.finding.captures)
    assert captures["traceback"] == "cut off before its exception line"


def test_a_log_that_ends_while_waiting_names_what_it_waited_for(tmp_path):
    analysis = run(tmp_path, "{'loss': 0.1, 'epoch': 0.01}\n" + WAIT * 30)
    assert root_of(analysis) == "vllm-server-unreachable"
    assert any("still waiting" in r for r in analysis.root_cause.reasons)


def test_a_wait_stopped_by_hand_still_names_what_it_waited_for(tmp_path):
    stop = ("Traceback (most recent call last):\n"
            '  File "/opt/app/grpo.py", line 40, in <module>\n'
            "    trainer.train()\n"
            "KeyboardInterrupt\n")
    analysis = run(tmp_path, WAIT * 5 + stop)
    assert "vllm-server-unreachable" in {f.signature for f in analysis.findings
                                         if f.role in ("root", "contributing")}


def test_a_wait_that_ended_is_not_a_failure(tmp_path):
    analysis = run(tmp_path, WAIT * 3 + "INFO:trl.extras.vllm_client:Server is up!\n"
                   + "{'loss': 0.1, 'reward': 0.5, 'epoch': 0.01}\n")
    assert analysis.root_cause is None
    assert "vllm-server-unreachable" in {f.signature for f in analysis.findings}


def test_an_xla_rendezvous_that_came_unstuck_is_not_a_hang(tmp_path):
    stuck = ("2024-07-29 17:14:59.920189: E external/xla/xla/service/rendezvous.cc:38] This "
             "thread has been waiting for `initialize clique for rank 6; clique=devices=[0,1]; "
             "stream=0; run_id=7` for 10 seconds and may be stuck. Expected 8 threads to join "
             "the rendezvous, but not all of them arrived on time.\n")
    unstuck = ("2024-07-29 17:15:02.120189: E external/xla/xla/service/rendezvous.cc:42] Thread "
               "is unstuck! Warning above was a false-positive. Perhaps the timeout is too "
               "short.\n")
    assert root_of(run(tmp_path, stuck * 2)) == "fsdp-hang"
    assert run(tmp_path, stuck + unstuck).root_cause is None


IPYTHON = (
    "---------------------------------------------------------------------------\n"
    "IndexError                                Traceback (most recent call last)\n"
    "[/tmp/ipython-input-3966643938.py](https://localhost:8080/#) in <cell line: 0>()\n"
    "----> 1 from unsloth import FastLanguageModel\n"
    "      2 import torch\n"
    "\n"
    "6 frames\n"
    "[/usr/local/lib/python3.12/dist-packages/unsloth/models/rl.py](https://localhost:8080/#)"
    " in patch_functions(RLTrainer, trainer_file)\n"
    "    853             last_line = sampling_params.split(\"\\n\")[-1]\n"
    "--> 854             last_prev_line = sampling_params.split(\"\\n\")[-2]\n")


def test_an_ipython_traceback_gives_its_exception_and_message(tmp_path):
    analysis = run(tmp_path, IPYTHON + "\nIndexError: list index out of range\n")
    finding = analysis.root_cause.finding
    assert (finding.exception_type, finding.first.line) == ("IndexError", 12)
    assert "traceback" not in dict(finding.captures)


def test_a_cut_ipython_traceback_still_names_its_exception(tmp_path):
    finding = run(tmp_path, IPYTHON).root_cause.finding
    assert finding.exception_type == "IndexError"
    assert dict(finding.captures)["traceback"] == "cut off before its last exception line"


def test_a_traceback_flattened_onto_one_line_gives_its_last_exception(tmp_path):
    flat = ("Trainable parameters = 1,099,295,744 ------------------------------------------- "
            "TypeError Traceback (most recent call last) /tmp/ipython-input-77.py in "
            "<cell line: 0>() ----> 1 trainer_stats = trainer.train() 23 frames "
            "/usr/local/lib/python3.12/dist-packages/peft/utils/other.py in forward(self, x, "
            "*args, **kwargs) --> 247 return self.original_module(x) TypeError: "
            "AuxiliaryTrainingWrapper.forward() missing 1 required positional argument: 'x'\n")
    finding = run(tmp_path, flat).root_cause.finding
    assert finding.exception_type == "TypeError"
    assert finding.first.text.startswith("TypeError: AuxiliaryTrainingWrapper.forward()")


def test_a_line_that_merely_mentions_a_traceback_is_not_one(tmp_path):
    text = ("INFO hint: set PYTHONFAULTHANDLER=1 to see a Traceback (most recent call last) "
            "of every thread; ValueError: is raised for bad configs\n"
            "{'loss': 0.3, 'epoch': 1.0}\n")
    assert run(tmp_path, text).root_cause is None


def test_a_bare_exception_line_the_run_went_past_is_not_its_end(tmp_path):
    noise = "AttributeError: 'MessageFactory' object has no attribute 'GetPrototype'\n" * 3
    serving = "".join(f"INFO 03-04 22:{m:02d}:06 [loggers.py:123] Engine 000: Avg prompt "
                      f"throughput: 12.0 tokens/s, Running: 1 reqs\n" for m in range(50))
    assert run(tmp_path, noise + serving).root_cause is None
    assert root_of(run(tmp_path, serving + noise)) == "python-exception"  # the last words


@pytest.mark.parametrize(("line", "signature"), [
    ("已杀死", "host-oom-sigkill"),                    # zh_CN bash: Killed
    ("./train.sh: line 3: 8156 已杀死     python train.py", "host-oom-sigkill"),
    ("段错误 (核心已转储)", "segfault"),                 # zh_CN: Segmentation fault (core dumped)
    ("Speicherzugriffsfehler (Speicherabzug geschrieben)", "segfault"),   # de_DE
    ("Getötet", "host-oom-sigkill"),
    ("Processus arrêté", "host-oom-sigkill"),           # fr_FR
    ("Ошибка сегментирования (стек памяти сброшен на диск)", "segfault"),  # ru_RU
])
def test_a_shell_reports_a_fatal_signal_in_its_own_language(tmp_path, line, signature):
    assert root_of(run(tmp_path, f"step 12 loss 1.03\n{line}\n")) == signature


@pytest.mark.parametrize(("line", "signal"), [
    ("[2024-10-29 01:28:47,101] [INFO] [launch.py:325:sigkill_handler] Main process received "
     "SIGINT, exiting", 2),  # DeepSpeed's launcher, Ctrl-C
    ("KeyboardInterrupt: terminated", 15),  # a SIGTERM handler's own exception (vLLM)
    ("KeyboardInterrupt", None), ("raise KeyboardInterrupt(\"terminated\")", None)])
def test_a_launcher_or_handler_names_the_signal_it_got(line, signal):
    assert signal_of(line) == signal


def test_a_signal_handlers_exception_is_the_signal_not_an_unknown_exception(tmp_path):
    log = ('  File "/venv/lib/python3.10/site-packages/vllm/entrypoints/openai/api_server.py", '
           'line 1307, in signal_handler\n    raise KeyboardInterrupt("terminated")\n'
           "KeyboardInterrupt: terminated\n")
    assert root_of(run(tmp_path, "Traceback (most recent call last):\n" + log)) == \
        "sigterm-received"


def test_a_signal_word_inside_a_sentence_is_not_a_death(tmp_path):
    assert root_of(run(tmp_path, "step 12: the worker was not killed; Getötet is German for "
                                 "Killed\nstep 13 loss 1.02\n")) is None


def test_an_error_the_program_says_it_ignored_is_not_a_root(tmp_path):
    ignored = ("[2026-03-24 16:25:19] Ignore import error when loading sglang.srt.models.glmasr:"
               " cannot import name 'GlmAsrConfig' from 'transformers' (/usr/local/lib/"
               "python3.10/dist-packages/transformers/__init__.py)\n")
    assert root_of(run(tmp_path, ignored + "Load weight end. elapsed=5.47 s\n")) is None
    # the same error, not ignored, ends the run
    raised = ("ImportError: cannot import name 'GlmAsrConfig' from 'transformers' "
              "(/usr/local/lib/python3.10/dist-packages/transformers/__init__.py)\n")
    assert root_of(run(tmp_path, raised)) == "version-mismatch"
    # xformers says it caught the ImportError and goes on without Triton
    caught = ("A matching Triton is not available, some optimizations will not be enabled.\n"
              "Error caught was: No module named 'triton'\n") * 3
    assert root_of(run(tmp_path, caught + "steps:  10%|█   | 780/7800 [05:04<45:36,  2.57it/s, "
                                          "loss=0.117]\n")) is None


def test_slurms_may_have_been_killed_is_still_its_oom_report(tmp_path):
    line = ("slurmstepd: error: Detected 1 oom-kill event(s) in StepId=191.batch cgroup. Some "
            "of your processes may have been killed by the cgroup out-of-memory handler.\n")
    assert root_of(run(tmp_path, line)) == "slurm-oom-kill"


def test_a_launcher_killing_its_workers_is_a_death_not_unknown(tmp_path):
    """DeepSpeed's launcher only kills the other workers once one has ended."""
    log = ("[2024-01-22 16:50:44,316] [INFO] [utils.py:799:see_memory_usage] CPU Virtual "
           "Memory: used = 26.4 GB, percent = 84.6%\n"
           "[2024-01-22 16:50:49,553] [INFO] [launch.py:315:sigkill_handler] Killing "
           "subprocess 1080504\n")
    analysis = run(tmp_path, log)
    assert analysis.verdict == "failed"
    assert root_of(analysis) == "worker-exit-nonzero"


def test_a_paste_that_begins_inside_a_traceback_is_a_death(tmp_path):
    """The header was cut off above the first frame (its indent lost too); the last frame
    quotes an `assert`, so the assertion is what ended it."""
    log = ('File ".../lib/python3.9/site-packages/deepspeed/runtime/zero/stage3.py", line 525, '
           "in defragment\n    assert len(set(t.dtype for t in tensors)) == 1\n")
    analysis = run(tmp_path, log)
    assert analysis.verdict == "failed"
    assert root_of(analysis) == "assertion-error"


def test_frames_in_the_middle_of_a_log_open_no_traceback_without_their_header(tmp_path):
    log = ("step 10 loss 1.2\n"
           '  File "/opt/app/train.py", line 12, in <module>\n'
           "step 11 loss 1.1\n")
    assert run(tmp_path, log).verdict != "failed"
