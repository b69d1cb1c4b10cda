"""Metric extraction from every shape in formats.md, the timeline, and the health rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from forensics import analyze
from forensics.cli import cli
from forensics.metrics.health import assess, run_mode
from forensics.metrics.table import MetricsTable
from forensics.metrics.timeline import build_timeline

from .conftest import SAMPLES


def analysis_of(tmp_path: Path, text: str, name: str = "train.log"):
    path = tmp_path / name
    path.write_text(text)
    return analyze(path)


def frame_of(tmp_path: Path, text: str) -> pd.DataFrame:
    from forensics.catalog import load_catalog
    from forensics.inputs.sources import Source
    from forensics.lines.linepass import compile_plan, line_pass

    table = line_pass(Source("t.log", data=text.encode()), compile_plan(load_catalog())).metrics
    return build_timeline([table]).to_frame()


def bar(step: int, total: int) -> str:
    return f"\r {100 * step // total:>2}%|#    | {step}/{total} [00:10<00:20,  1.50it/s]"


def test_hf4_dicts_take_their_step_from_the_progress_bar(tmp_path):
    text = "".join(f"{bar(s, 50)}\r{' ' * 20}\r{{'loss': {2 - s / 100}, 'grad_norm': 0.5, "
                   f"'learning_rate': 2e-05, 'epoch': {s / 50}}}\n" for s in (10, 20, 30))
    frame = frame_of(tmp_path, text)
    assert list(frame.index) == [10, 20, 30]
    assert frame.loc[30, "loss"] == pytest.approx(1.7)


def test_hf5_quoted_values_numpy_reprs_nan_inf_and_none(tmp_path):
    text = ("{'loss': '2.345', 'grad_norm': '1.235e+04', 'learning_rate': '1.96e-05', "
            "'epoch': '0.04'}\n"
            "{'loss': nan, 'grad_norm': inf, 'kl': None, 'x': np.float64(1.5), 'epoch': 0.05}\n")
    frame = frame_of(tmp_path, text)
    assert list(frame.index) == [1, 2]  # no progress bar: records are numbered
    assert frame.loc[1, "grad_norm"] == 12350.0
    assert math.isnan(frame.loc[2, "loss"]) and math.isinf(frame.loc[2, "grad_norm"])
    assert frame.loc[2, "x"] == 1.5 and math.isnan(frame.loc[2, "kl"])


def test_eval_rows_and_final_summary(tmp_path):
    text = ("{'loss': 1.5, 'epoch': 0.5}\n"
            "{'eval_loss': 1.4, 'eval_runtime': 3.2, 'epoch': 0.5}\n"
            "{'train_runtime': 12.3, 'train_samples_per_second': 8.0, 'train_loss': 1.45, "
            "'epoch': 1.0}\n")
    analysis = analysis_of(tmp_path, text)
    assert analysis.verdict == "completed"
    frame = frame_of(tmp_path, text)
    assert list(frame["kind"]) == ["train", "eval"]


def test_trainer_state_log_history_with_nan_literal(tmp_path):
    history = [{"epoch": 0.1 * i, "grad_norm": 0.5, "learning_rate": 2e-5, "loss": 1.2,
                "step": 10 * i} for i in range(1, 8)]
    history.append({"epoch": 0.8, "grad_norm": float("nan"), "learning_rate": 2e-5,
                    "loss": float("nan"), "step": 80})
    history.append({"epoch": 0.9, "eval_loss": 1.3, "step": 80})
    job = tmp_path / "out" / "checkpoint-80"
    job.mkdir(parents=True)
    (job / "trainer_state.json").write_text(
        json.dumps({"global_step": 80, "max_steps": 400, "log_history": history}, indent=2))
    analysis = analyze(tmp_path / "out")
    root = analysis.root_cause
    assert root.finding.signature == "nan-loss" and root.finding.step == 80
    assert root.finding.first.source.endswith("trainer_state.json")
    assert analysis.timeline.max_steps == 400
    assert analysis.timeline.last_checkpoint.step == 80


def test_a_nan_eval_loss_is_a_divergence_even_while_training_loss_prints(tmp_path):
    lines = [f"{{'loss': {1.8 - i / 50}, 'learning_rate': 0.003, 'epoch': {i / 10}}}"
             for i in range(1, 8)]
    lines.append("{'eval_loss': nan, 'eval_wer': 100.0, 'eval_runtime': 22.4, 'epoch': 0.8}")
    lines.append("{'loss': 2.41, 'learning_rate': 0.003, 'epoch': 0.9}")
    log = tmp_path / "train.log"
    log.write_text("\n".join(lines) + "\n")
    analysis = analyze(log)
    assert analysis.root_cause.finding.signature == "nan-loss"
    assert [(a.metric, a.kind) for a in analysis.anomalies if a.kind == "nan"] == [
        ("eval_loss", "nan")]


def test_a_finite_eval_loss_raises_nothing(tmp_path):
    lines = [f"{{'loss': {1.8 - i / 50}, 'learning_rate': 0.003, 'epoch': {i / 10}}}"
             for i in range(1, 8)] + ["{'eval_loss': 1.52, 'epoch': 0.8}"]
    log = tmp_path / "train.log"
    log.write_text("\n".join(lines) + "\n")
    assert analyze(log).root_cause is None


def test_grpo_names_across_trl_versions(tmp_path):
    old = "".join(f"{{'loss': 0.0, 'rewards/acc': 0.0, 'reward': 0.0, 'reward_std': 0.0, "
                  f"'kl': 0.001, 'completion_length': 180.0, 'epoch': {i / 100}}}\n"
                  for i in range(25))
    anomalies = analysis_of(tmp_path, old).anomalies
    kinds = {(a.metric, a.kind) for a in anomalies}
    assert ("reward", "stuck") in kinds  # one anomaly for the rule, naming the other column
    assert "rewards/acc" in next(a.advice for a in anomalies if a.kind == "stuck")
    assert ("reward_std", "zero") in kinds


def test_ebft_keys_are_judged(tmp_path):
    text = "".join(f"{{'loss': 1.0, 'ebft/diversity': {1.5 + i / 10}, 'ebft/alignment': 0.4, "
                   f"'epoch': {i / 10}}}\n" for i in range(5))
    kinds = {(a.metric, a.kind) for a in analysis_of(tmp_path, text).anomalies}
    assert ("ebft/diversity", "high") in kinds


def test_deepspeed_step_and_memory_lines(tmp_path):
    text = "".join(
        f"[2023-11-07 01:55:{i:02d},711] [INFO] [logging.py:96:log_dist] [Rank 0] step={i}, "
        f"skipped=0, lr=[4.9e-05, 4.9e-05], mom=[(0.9, 0.95), (0.9, 0.95)]\n"
        f"[2023-11-07 01:55:{i:02d},714] [INFO] [timer.py:260:stop] epoch=0/micro_step={4 * i}/"
        f"global_step={i}, RunningAvgSamplesPerSec=25.02, CurrSamplesPerSec=25.70, "
        f"MemAllocated=4.32GB, MaxMemAllocated=38.49GB\n" for i in (10, 20))
    frame = frame_of(tmp_path, text)
    # one record a step: the memory line adds to its step line's
    assert list(frame.index) == [10, 20]
    assert frame.loc[20, "lr"] == 4.9e-05 and frame.loc[20, "skipped"] == 0.0
    assert frame["MaxMemAllocated"].iloc[-1] == 38.49


def test_wandb_run_folder(tmp_path):
    run = tmp_path / "wandb" / "run-20250101_120000-abc123" / "files"
    run.mkdir(parents=True)
    (run / "output.log").write_text("{'loss': 1.1, 'epoch': 0.1}\n"
                                    "torch.OutOfMemoryError: CUDA out of memory. Tried to "
                                    "allocate 2.00 GiB.\n")
    (run / "wandb-summary.json").write_text(json.dumps(
        {"train/loss": 1.1, "train/global_step": 12, "_step": 12, "_runtime": 301}))
    analysis = analyze(tmp_path / "wandb")
    assert analysis.root_cause.finding.signature == "cuda-oom"
    assert any(s.name.endswith("wandb-summary.json") for s in analysis.sources)


def _table(rows: list[dict], kinds=None) -> MetricsTable:
    table = MetricsTable("t")
    for i, row in enumerate(rows):
        table.add(i + 1, i + 1, row, None if kinds is None else kinds[i])
    return table


def kinds_of(rows, kinds=None) -> set[tuple[str, str]]:
    return {(a.metric, a.kind) for a in assess(build_timeline([_table(rows, kinds)]))}


def test_loss_spike_and_plateau():
    rows = [{"loss": 1.2, "grad_norm": 0.5} for _ in range(20)]
    rows[12] = {"loss": 5.0, "grad_norm": 0.5}
    assert ("loss", "spike") in kinds_of(rows)
    flat = [{"loss": 2.6 + (i % 3) * 0.01} for i in range(60)]
    assert ("loss", "plateau") in kinds_of(flat)


def test_a_pretraining_run_is_judged_as_one():
    """A loss of 2.6 is a plateau for chat fine-tuning, and where pre-training is: the run
    that logs tokens consumed (or MFU) is not told its loss is too high."""
    flat = [{"lm loss": 2.6 + (i % 3) * 0.01, "consumed tokens": 4096.0 * i} for i in range(60)]
    timeline = build_timeline([_table(flat)])
    assert run_mode(timeline) == "pretrain"
    assert ("lm loss", "plateau") not in kinds_of(flat)
    diverging = [{**row, "grad norm": 0.8 if i < 50 else 500.0} for i, row in enumerate(flat)]
    assert ("grad norm", "high") in kinds_of(diverging)  # the fine-tuning rules still hold


def test_overfitting():
    rows, kinds = [], []
    for i in range(12):
        rows.append({"loss": 2.0 - i * 0.1})
        kinds.append(0)
        if i % 3 == 2:
            rows.append({"eval_loss": [1.5, 1.4, 1.55, 1.7][i // 3]})
            kinds.append(1)
    assert ("eval_loss", "overfitting") in kinds_of(rows, kinds)


def test_learning_rate_surprises():
    no_warmup = [{"loss": 1.0, "learning_rate": 2e-5 * (1 - i / 40)} for i in range(30)]
    assert ("learning_rate", "no-warmup") in kinds_of(no_warmup)
    rising = [{"loss": 1.0, "learning_rate": min(i, 10) * 1e-6 if i < 25 else i * 1e-6}
              for i in range(1, 41)]
    rising[5]["learning_rate"] = 5e-5  # peak early, then it comes back up at the end
    assert ("learning_rate", "rising") in kinds_of(rising)


def test_completion_length_climbs_to_max_and_clipped_ratio():
    rows = [{"reward": 0.5, "completions/mean_length": 100.0 + i * 40,
             "completions/max_length": 512.0, "completions/clipped_ratio": 0.9}
            for i in range(12)]
    found = kinds_of(rows)
    assert ("completions/mean_length", "climbing") in found
    assert ("completions/clipped_ratio", "high") in found


def test_healthy_sample_has_no_anomalies():
    assert analyze(SAMPLES / "healthy-run.log").anomalies == ()


def test_sft_sample_nan_after_grad_spike():
    analysis = analyze(SAMPLES / "sft-nan.log")
    root = analysis.root_cause
    assert (root.finding.signature, root.finding.step) == ("nan-loss", 140)
    spike = next(a for a in analysis.anomalies if a.kind == "spike")
    assert (spike.metric, spike.step) == ("grad_norm", 137)
    assert any("preceded by a spike of `grad_norm`" in r for r in root.reasons)


def test_what_broke_at_the_failures_own_step_did_not_precede_it():
    """OpenRLHF's reward drops to 0 at the very step its policy loss goes NaN: one event."""
    reasons = analyze(SAMPLES / "openrlhf-kl-blowup.log").root_cause.reasons
    assert any(r.startswith("preceded by a high of `kl` at step 93") for r in reasons)
    assert any(r.startswith("together with a stuck of `reward` at the same step")
               for r in reasons)
    assert not any("0 step(s) before" in r for r in reasons)


def test_grpo_sample_entropy_collapse_and_zero_reward_std():
    analysis = analyze(SAMPLES / "grpo-entropy-collapse.log")
    found = {a.metric: a for a in analysis.anomalies}
    assert found["entropy"].kind == "collapse" and found["entropy"].healthy == "0.05-0.5"
    assert found["reward_std"].kind == "zero"


@pytest.mark.parametrize("fmt", ["csv", "md", "parquet"])
def test_timeline_command(tmp_path, fmt):
    out = tmp_path / f"t.{fmt}"
    result = CliRunner().invoke(cli, ["timeline", "--format", fmt, "-o", str(out),
                                      str(SAMPLES / "sft-nan.log")])
    assert result.exit_code == 0, result.output
    if fmt == "parquet":
        frame = pd.read_parquet(out)
        assert len(frame) == 145 and "grad_norm" in frame.columns
    else:
        text = out.read_text()
        assert "grad_norm" in text and "140" in text


def _bar(n: int, total: int) -> str:
    filled = 10 * n // total
    return (f"\r{100 * n // total:3d}%|{'█' * filled}{' ' * (10 - filled)}| {n}/{total} "
            f"[00:{n % 60:02d}<01:00,  1.00it/s]")


def test_evaluation_bars_do_not_steal_the_training_step(tmp_path):
    """stdout to a file: the training bar's redraws and the evaluation bar's run together on
    `\\r` lines, and the evaluation bar is redrawn more often than the training bar."""
    parts = []
    for step in range(1, 41):
        parts.append(_bar(step, 200))
        if step % 10 == 0:
            parts.append(f"\n{{'loss': {2 - step / 100}, 'learning_rate': 2e-05, "
                         f"'epoch': {step / 200}}}\n")
        if step % 20 == 0:
            parts += [_bar(n, 75) for n in range(76)]
            parts.append(f"\n{{'eval_loss': {1.9 - step / 100}, 'eval_runtime': 7.5, "
                         f"'epoch': {step / 200}}}\n")
    analysis = analysis_of(tmp_path, "".join(parts))
    assert (analysis.timeline.last_step, analysis.timeline.max_steps) == (40, 200)
    frame = frame_of(tmp_path, "".join(parts)).reset_index()
    assert sorted(frame[frame["kind"] == "eval"]["step"]) == [20, 40]
    assert sorted(frame[frame["kind"] == "train"]["step"]) == [10, 20, 30, 40]


def test_records_without_a_step_do_not_borrow_another_emitters(tmp_path):
    """No bar in the file (stdout only); DeepSpeed's step line every 10 steps is its own
    record, and the 50 loss records must not all share its step (or step 0 before it)."""
    lines = []
    for i in range(1, 51):
        lines.append(f"{{'loss': {2 - i / 100}, 'learning_rate': 2e-05, 'epoch': {i / 50:.2f}}}")
        if i % 10 == 0:
            lines.append(f"[2024-01-01 10:00:00,000] [INFO] [logging.py:96:log_dist] [Rank 0] "
                         f"step={i}, skipped=0, lr=[2e-05], mom=[(0.9, 0.999)]")
    frame = frame_of(tmp_path, "\n".join(lines) + "\n").reset_index()
    losses = frame[frame["loss"].notna()]["step"].tolist()
    assert losses == list(range(1, 51))


def test_records_a_lagging_bar_gave_one_step_are_told_apart_by_their_epoch(tmp_path):
    """tqdm redraws at most every 0.1 s: two records 10 steps apart read the same bar."""
    parts = []
    for step in range(10, 210, 10):
        shown = step - step % 20  # the bar was redrawn only every 20 steps
        parts.append(bar(max(shown, 1), 400))
        parts.append(f"\n{{'loss': {2 - step / 1000}, 'learning_rate': 2e-05, "
                     f"'epoch': {step / 100}}}\n")
    frame = frame_of(tmp_path, "".join(parts)).reset_index()
    steps = frame[frame["kind"] == "train"]["step"].tolist()
    assert len(set(steps)) == len(steps) and steps == sorted(steps)
    assert steps[-1] == 200


def test_a_pretty_printed_metrics_dict_is_one_record(tmp_path):
    text = ("{'loss': 1.52, 'learning_rate': 2e-05, 'epoch': 0.5}\n"
            "{'epoch': 1.0,\n 'eval_loss': 0.51,\n 'eval_runtime': 10.2,\n"
            " 'eval_samples_per_second': 98.1}\n"
            "{'loss': 1.41, 'learning_rate': 2e-05, 'epoch': 1.5}\n")
    frame = frame_of(tmp_path, text)
    evals = frame[frame["kind"] == "eval"]
    assert len(evals) == 1 and evals["eval_loss"].iloc[0] == 0.51
    assert evals["eval_runtime"].iloc[0] == 10.2
    assert len(frame[frame["kind"] == "train"]) == 2


@pytest.mark.parametrize(("length", "window", "min_records"),
                         [(1, 10, 5), (6, 10, 5), (10, 10, 5), (11, 10, 5), (300, 10, 5),
                          (50, 7, 1), (50, 3, 3)])
def test_the_spike_baseline_is_the_running_median_of_the_records_before(length, window,
                                                                         min_records):
    """The baseline a spike is judged against, from numpy, is pandas' shifted rolling
    median (what it was computed with before pandas left `analyze`)."""
    from forensics.metrics.health import _running_median

    values = np.random.default_rng(length).lognormal(size=length)
    expected = pd.Series(values).rolling(window, min_periods=min_records).median().shift(1)
    np.testing.assert_array_equal(_running_median(values, window, min_records),
                                  expected.to_numpy())
