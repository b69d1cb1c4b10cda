"""Fixes by stack: which stacks a log shows, which fix bullets a run of them gets, and the
values (job id, host, captures) filled into their commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from forensics.catalog import load_catalog
from forensics.pipeline import analyze
from forensics.stacks import (
    STACKS,
    FixItem,
    advice,
    detect_stacks,
    fix_problems,
    parse_fix,
)

OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
       "total capacity of 79.15 GiB of which 1.02 GiB is free.")

#: lines each stack prints (or its tracebacks pass through), in the shapes real runs print
STACK_LINES = {
    "axolotl": ["[2024-05-01 10:00:00,123] [INFO] [axolotl.train.train:67] [PID:1234] "
                "[RANK:0] loading model and peft_config..."],
    "hf-trainer": ["***** Running training *****", "  Num examples = 1,000",
                   '  File "/usr/lib/python3.10/site-packages/transformers/trainer.py", '
                   "line 1859, in train"],
    "trl": ['  File "/usr/lib/python3.10/site-packages/trl/trainer/grpo_trainer.py", '
            "line 1012, in _generate_and_score_completions"],
    "deepspeed": ["[2024-05-01 10:00:01,000] [INFO] [config.py:1000:print] "
                  "DeepSpeedEngine configuration:"],
    "fsdp": ['  File "/usr/lib/python3.10/site-packages/torch/distributed/fsdp/'
             'fully_sharded_data_parallel.py", line 849, in forward'],
    "accelerate": ["The following values were not passed to `accelerate launch` and had "
                   "defaults used instead:"],
    "verl": ['(TaskRunner pid=12345)   File "/workspace/verl/verl/trainer/ppo/ray_trainer.py",'
             " line 1005, in fit"],
    "openrlhf": ['  File "/usr/local/lib/python3.10/dist-packages/openrlhf/trainer/'
                 'ppo_trainer.py", line 310, in fit'],
    "megatron": ['  File "/workspace/Megatron-LM/megatron/core/pipeline_parallel/schedules.py",'
                 " line 395, in forward_backward_no_pipelining"],
    "nemo": ["[NeMo I 2024-05-01 10:00:00 nemo_logging:381] Rank 0 has data parallel group"],
    "torchtitan": ["[rank0]:[titan] 2025-01-01 10:00:00,000 - root - INFO - Starting job: "
                   "Llama 3 8B training"],
    "lightning": ["GPU available: True (cuda), used: True",
                  "TPU available: False, using: 0 TPU cores"],
    "vllm": ["INFO 05-01 10:00:00 [__init__.py:239] Automatically detected platform cuda.",
             '  File "/usr/lib/python3.10/site-packages/vllm/worker/worker.py", line 230, '
             "in determine_num_available_blocks"],
}
#: a key that only this stack's own advice names, for the CUDA OOM fix
OOM_KEYS = {
    "axolotl": "micro_batch_size", "hf-trainer": "per_device_train_batch_size",
    "trl": "max_completion_length", "deepspeed": "offload_optimizer",
    "fsdp": "CPUOffloadPolicy", "accelerate": "fsdp_offload_params",
    "verl": "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
    "openrlhf": "--micro_train_batch_size", "megatron": "--micro-batch-size",
    "nemo": "model.micro_batch_size", "torchtitan": "--training.local_batch_size",
    "lightning": "accumulate_grad_batches", "vllm": "--max-num-seqs",
}


def _names(text: str, key: str) -> bool:
    """Whether the text names the key itself (not a longer key that holds it)."""
    return re.search(rf"(?<![\w.-]){re.escape(key)}(?![\w-])", text) is not None


def _log(tmp_path: Path, lines: list[str], name: str = "train.log") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _oom_run(tmp_path: Path, *stacks: str) -> list[str]:
    lines = [line for stack in stacks for line in STACK_LINES[stack]]
    lines += ["Traceback (most recent call last):",
              '  File "/work/train.py", line 10, in <module>', "    loss.backward()", OOM]
    analysis = analyze(_log(tmp_path, lines))
    assert analysis.root_cause is not None
    assert analysis.root_cause.finding.signature == "cuda-oom"
    return list(analysis.fixes)


# --- telling the stack -------------------------------------------------------------------

@pytest.mark.parametrize("stack", sorted(STACK_LINES))
def test_each_stack_is_told_from_its_own_lines(stack):
    found = detect_stacks(STACK_LINES[stack], ())
    assert stack in found


def test_a_wrapper_replaces_the_stack_it_wraps():
    lines = STACK_LINES["axolotl"] + STACK_LINES["hf-trainer"]
    assert detect_stacks(lines, ()) == ("axolotl",)
    assert detect_stacks(STACK_LINES["nemo"] + STACK_LINES["megatron"], ()) == ("nemo",)


def test_traceback_packages_and_slurm_file_names_tell_a_stack():
    assert detect_stacks((), ("vllm", "torch")) == ("vllm",)
    assert detect_stacks((), (), slurm_job=True) == ("slurm",)


@pytest.mark.parametrize("line", [
    # DeepSpeed installed but not used: accelerate's probe and transformers' own source line
    "[2024-05-01 10:00:00,000] [INFO] [real_accelerator.py:203:get_accelerator] Setting "
    "ds_accelerator to cuda (auto detect)",
    "    if is_deepspeed_zero3_enabled() and not is_quantized:",
    # words that hold a stack's name as a part
    "NCCL INFO comm 0x55 rank 0 nranks 8 - overlap_comm enabled, overlapping reductions",
    "Using the latest cached version of the module from /root/.cache/huggingface/modules",
])
def test_near_misses_tell_no_stack(line):
    assert detect_stacks([line], ()) == ()


# --- the fix field -----------------------------------------------------------------------

def test_bullets_parse_with_their_tags_and_continuation_lines():
    items, problems = parse_fix("- Halve the batch.\n- [axolotl, trl] Lower\n  the length.\n"
                                "- [nosuch] Something.")
    assert items[0] == FixItem("Halve the batch.")
    assert items[1] == FixItem("Lower the length.", ("axolotl", "trl"))
    assert items[2].stacks == ()
    assert problems == [f"unknown stack tag [nosuch]; known: {', '.join(STACKS)}"]


def test_lint_wants_stack_names_tagged_generic_advice_and_known_placeholders():
    items = (FixItem("Set axolotl `micro_batch_size`."),
             FixItem("Run `sacct -j {job_id}` and `{mystery}`.", ("slurm",)))
    problems = fix_problems(items, captures={"job"})
    assert any("names axolotl but is not tagged [axolotl]" in p for p in problems)
    assert any("unknown placeholder {mystery}" in p for p in problems)
    assert not fix_problems((FixItem("Run `trl vllm-serve` or pip install trl."),), set())
    assert fix_problems((FixItem("x", ("axolotl",)),), set()) == [
        "every bullet is tagged; a run of another stack would get no advice"]


def test_the_builtin_catalog_has_generic_advice_wherever_advice_is_tagged():
    for signature in load_catalog().signatures:
        assert any(not item.stacks for item in signature.fix), signature.id


# --- advice for one run ------------------------------------------------------------------

def test_advice_keeps_generic_and_own_stack_bullets_and_fills_values():
    items = (FixItem("Generic."), FixItem("Use `micro_batch_size`.", ("axolotl",)),
             FixItem("Use `per_device_train_batch_size`.", ("hf-trainer",)),
             FixItem("Run `sacct -j {job_id}` on {host}.", ("slurm",)))
    assert advice(items, ("hf-trainer",), {}) == (
        "Generic.", "HF Trainer: use `per_device_train_batch_size`.")
    everything = advice(items, (), {"job_id": "4711"})
    assert len(everything) == 4 and "SLURM: run `sacct -j 4711` on HOST." in everything


@pytest.mark.parametrize("value", ["4711; rm -rf /", "`x`", "<b>", "a" * 65, ""])
def test_values_that_could_be_markup_or_commands_stay_placeholders(value):
    (text,) = advice((FixItem("`sacct -j {job_id}`"),), (), {"job_id": value})
    assert text == "`sacct -j JOB_ID`"


# --- end to end --------------------------------------------------------------------------

def test_an_hf_trainer_deepspeed_run_gets_no_axolotl_or_vllm_keys(tmp_path):
    fixes = "\n".join(_oom_run(tmp_path, "hf-trainer", "deepspeed"))
    assert "per_device_train_batch_size" in fixes and "offload_optimizer" in fixes
    for foreign in ("axolotl", "micro_batch_size", "vLLM", "vllm", "verl", "--micro-batch-size"):
        assert not _names(fixes, foreign)


@pytest.mark.parametrize("stack", sorted(OOM_KEYS))
def test_each_stack_gets_the_oom_advice_in_its_own_keys(tmp_path, stack):
    fixes = "\n".join(_oom_run(tmp_path, stack))
    assert _names(fixes, OOM_KEYS[stack])
    own = set(detect_stacks(STACK_LINES[stack], ()))
    for other, key in OOM_KEYS.items():
        if other not in own and key not in {OOM_KEYS[s] for s in own}:
            assert not _names(fixes, key), (stack, other)


def test_a_run_of_no_known_stack_gets_every_bullet_labelled(tmp_path):
    fixes = _oom_run(tmp_path)
    assert any(f.startswith("axolotl: ") for f in fixes)
    assert any(f.startswith("HF Trainer: ") for f in fixes)


SLURM_END = ("slurmstepd: error: *** JOB 494583 ON node12 CANCELLED AT 2024-04-20T09:09:37 "
             "DUE TO TIME LIMIT ***")


@pytest.mark.parametrize(("name", "lines", "job"), [
    ("slurm-881234.out", ["step 10 done", "slurmstepd: error: *** STEP 881234.0 ON node3 "
                          "CANCELLED AT 2024-04-20T09:09:37 DUE TO TIME LIMIT ***"], "881234"),
    ("train.log", ["SLURM_JOB_ID=77001", "step 10 done", SLURM_END], "494583"),
    ("train.log", ["SLURM_JOB_ID=77001", "step 10 done",
                   "slurmstepd: error: *** STEP 77001.0 ON node3 CANCELLED AT "
                   "2024-04-20T09:09:37 DUE TO TIME LIMIT ***"], "77001"),
])
def test_a_slurm_jobs_commands_carry_its_job_id(tmp_path, name, lines, job):
    analysis = analyze(_log(tmp_path, lines, name))
    assert analysis.root_cause.finding.signature == "slurm-time-limit"
    assert f"sacct -j {job} " in "\n".join(analysis.fixes)
    assert "JOB_ID" not in "\n".join(analysis.fixes)


def test_the_job_id_comes_from_the_file_name_when_the_lines_do_not_say(tmp_path):
    lines = ["Traceback (most recent call last):", '  File "/work/train.py", line 3',
             "torch.distributed.elastic.multiprocessing.api.SignalException: Process 4242 "
             "got signal: 15"]
    analysis = analyze(_log(tmp_path, lines, "slurm-5550123.out"))
    assert analysis.root_cause.finding.signature == "sigterm-received"
    assert "sacct -j 5550123 " in "\n".join(analysis.fixes)
    assert dict(analysis.environment)["stack"] == "SLURM"
