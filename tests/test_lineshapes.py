"""The registry of metric lines that are not Python dicts: every entry's real example lines
give their records, its look-alikes give none, and a log in each shape has a timeline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from forensics import analyze
from forensics.catalog import load_catalog
from forensics.inputs.layouts import METRIC_FILES
from forensics.inputs.sources import Source
from forensics.lines.linepass import compile_plan, line_pass
from forensics.metrics.fileshapes import FILE_SHAPES
from forensics.metrics.lineshapes import PRINTED_DICTS, SHAPES, line_record
from forensics.metrics.names import named_like
from forensics.metrics.table import KIND_NAMES, MetricsTable
from forensics.metrics.timeline import build_timeline
from forensics.report import render
from forensics.stacks import STACKS

from .mermaid_xychart import problems

EXAMPLES = [pytest.param(shape, line, step, values, id=f"{shape.name}-{i}")
            for shape in SHAPES for i, (line, step, values) in enumerate(shape.examples)]
COUNTEREXAMPLES = [pytest.param(line, id=f"{shape.name}-{i}")
                   for shape in SHAPES for i, line in enumerate(shape.counterexamples)]


@pytest.mark.parametrize(("shape", "line", "step", "values"), EXAMPLES)
def test_each_example_line_gives_its_record(shape, line, step, values):
    found = shape.read(line)
    assert found is not None and found[0] == step
    assert found[2] == pytest.approx(values)
    assert line_record(line)[:2] == (shape, step)  # no shape before it reads it otherwise


@pytest.mark.parametrize("line", COUNTEREXAMPLES)
def test_a_look_alike_is_no_record(line):
    assert line_record(line) is None


def test_every_shape_has_examples_and_a_near_miss():
    assert all(shape.examples and shape.counterexamples for shape in SHAPES)


def _log(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "train.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def _megatron(step: int, loss: str, grad: str) -> str:
    return (f" iteration {step:8d}/    1000 | consumed samples: {step * 64:12d} | elapsed time per "
            f"iteration (ms): 31074.1 | learning rate: 5.997E-05 | global batch size:    64 | "
            f"lm loss: {loss} | loss scale: 1.0 | grad norm: {grad} | number of skipped "
            f"iterations:   0 | number of nan iterations:   0 |")


def test_a_megatron_run_has_steps_its_total_and_its_nan_onset(tmp_path):
    lines = [_megatron(s, "3.876781E+00", "1.234") for s in range(1, 30)]
    lines += [_megatron(30, "nan", "nan")]
    analysis = analyze(_log(tmp_path, lines))
    assert (analysis.timeline.last_step, analysis.timeline.max_steps) == (30, 1000)
    assert analysis.root_cause.finding.signature == "nan-loss"
    assert analysis.root_cause.finding.step == 30


def test_a_verl_run_reads_as_an_rl_run(tmp_path):
    lines = [f"(TaskRunner pid=1) step:{s} - actor/entropy:{0.4 - s / 100:.3f} - "
             f"actor/grad_norm:0.35 - critic/score/mean:0.25 - response_length/mean:480.0"
             for s in range(1, 12)]
    analysis = analyze(_log(tmp_path, lines))
    assert analysis.timeline.last_step == 11
    assert analysis.timeline.steps_logged == 11


@pytest.mark.parametrize("last", [
    "Training done in 1104.74 seconds.",
    "`Trainer.fit` stopped: `max_epochs=3` reached.",
    "[after training is done] datetime: 2024-04-09 10:51:29 ",
    # verl's last step; torchtitan's end (HF's `Training completed` is a prefix of it)
    "(TaskRunner pid=2411) 'Final validation metrics: {\\'val-core/gsm8k/reward/mean@1\\': 0.71}'",
    "[rank0]:[titan] 2025-02-01 10:02:33,120 - root - INFO - Training completed",
])
def test_a_run_that_says_it_finished_is_completed(tmp_path, last):
    lines = [f"Step {s}: grad_norm=1.1, loss={2.0 - s / 100:.3f}, lr=1e-05" for s in range(1, 9)]
    assert analyze(_log(tmp_path, [*lines, last])).verdict == "completed"
    assert analyze(_log(tmp_path, lines)).verdict == "interrupted"  # a log that just stops


MERMAID = re.compile(r"```mermaid\n(.*?)```", re.S)


def test_charts_hold_plain_decimals_and_one_point_per_step(tmp_path):
    lines = [f"{{'loss': {2 - s / 50}, 'learning_rate': {2.5e-05 * (1 - s / 40)}, "
             f"'grad_norm': {1e-4 * s}, 'epoch': {s / 40}}}" for s in range(1, 40)]
    report = render(analyze(_log(tmp_path, lines)), "md")
    charts = MERMAID.findall(report)
    assert any('grad_norm by step (x 10^-3)' in chart for chart in charts)
    for chart in charts:
        assert not re.search(r"\d[eE][-+]?\d", chart), chart
        assert "nan" not in chart and "inf" not in chart
        xs = re.search(r"x-axis \[(.*?)\]", chart)[1].split(", ")
        assert len(xs) == len(set(xs))


def test_every_golden_chart_parses_as_mermaid():
    goldens = sorted((Path(__file__).parent.parent / "sample_logs" / "golden").glob("*.md"))
    charts = [(golden.name, chart) for golden in goldens
              for chart in MERMAID.findall(golden.read_text())]
    assert len(charts) >= 10
    for name, chart in charts:
        assert not problems(chart), (name, problems(chart))
        assert not re.search(r"\d[eE][-+]?\d", chart), name


@pytest.mark.parametrize("chart", [
    'xychart-beta\n    title "lr by step"\n    x-axis [1, 2]\n    y-axis "lr" 0 --> 1\n'
    "    line [2.5e-05, 1]",
    'xychart-beta\n    x-axis [1, 2]\n    line [0.5, nan]',
    'xychart-beta\n    y-axis "loss" 0 --> inf\n    line [0.5, 1]',
    'graph TD\n    a --> b'])
def test_the_grammar_check_rejects_what_mermaid_rejects(chart):
    assert problems(chart)


def test_health_rules_read_an_emitters_own_names(tmp_path):
    """verl's `actor/entropy` is the entropy the GRPO collapse rule watches."""
    lines = [f"(TaskRunner pid=1) step:{s} - actor/entropy:{0.3 if s < 6 else 0.001} - "
             f"actor/grad_norm:0.35 - critic/score/mean:0.25" for s in range(1, 16)]
    anomalies = analyze(_log(tmp_path, lines)).anomalies
    assert ("actor/entropy", "collapse") in {(a.metric, a.kind) for a in anomalies}


def test_a_two_record_grpo_excerpt_with_no_reward_spread_is_the_finding(tmp_path):
    lines = [f"{{'loss': 0.0, 'reward': 0.5, 'reward_std': 0.0, 'frac_reward_zero_std': 1.0, "
             f"'kl': 0.0, 'entropy': 0.3, 'epoch': {s / 100}}}" for s in (1, 2)]
    kinds = {(a.metric, a.kind) for a in analyze(_log(tmp_path, lines)).anomalies}
    assert {("reward_std", "zero"), ("frac_reward_zero_std", "high")} <= kinds
    # a reward still at 0 on the first two steps is how runs start, not a stuck reward
    start = [line.replace("'reward': 0.5, 'reward_std': 0.0, 'frac_reward_zero_std': 1.0",
                          "'reward': 0.0, 'reward_std': 0.2, 'frac_reward_zero_std': 0.1")
             for line in lines]
    assert not analyze(_log(tmp_path, start)).anomalies


def test_a_preference_run_is_not_judged_by_the_rl_rules(tmp_path):
    """DPO's rewards/chosen is an implicit reward: near 0 for 25 steps is no reward bug."""
    lines = [f"{{'loss': 0.69, 'grad_norm': 3.1, 'learning_rate': 5e-07, 'rewards/chosen': 0.0, "
             f"'rewards/rejected': 0.0, 'rewards/accuracies': 0.0, 'rewards/margins': 0.0, "
             f"'logps/chosen': -300.5, 'epoch': {s / 100}}}" for s in range(1, 26)]
    assert not [a for a in analyze(_log(tmp_path, lines)).anomalies if a.kind == "stuck"]


def test_many_columns_breaking_one_rule_are_one_anomaly(tmp_path):
    names = [f"rewards/check_{i}/mean" for i in range(30)]
    lines = ["{" + ", ".join(f"'{n}': 0.0" for n in names)
             + f", 'reward': 0.0, 'reward_std': 0.1, 'epoch': {s / 100}}}" for s in range(1, 26)]
    stuck = [a for a in analyze(_log(tmp_path, lines)).anomalies if a.kind == "stuck"]
    assert len(stuck) == 1 and "30 other column(s)" in stuck[0].advice


def test_a_metrics_jsonl_file_in_a_job_folder_is_read(tmp_path):
    job = tmp_path / "run"
    job.mkdir()
    (job / "train.log").write_text("starting\n")
    (job / "metrics.jsonl").write_text("".join(
        f'{{"step": {s}, "train/loss": {2 - s / 100}, "train/grad_norm": 1.1}}\n'
        for s in range(1, 21)) + '{"step": 21, "train/loss": NaN, "train/grad_norm": NaN}\n')
    analysis = analyze(job)
    assert analysis.timeline.last_step == 21
    assert analysis.root_cause.finding.signature == "nan-loss"


def test_a_lightning_bar_gives_one_record_per_step_and_its_nan(tmp_path):
    """The bar is redrawn twice a step (new count, then new postfix), all on `\\r` lines."""
    redraws, previous = [], "2.000"
    for epoch in range(2):
        for batch in range(1, 41):
            loss = "nan" if (epoch, batch) >= (1, 30) else f"{2 - (epoch * 40 + batch) / 100:.3f}"
            for shown in (previous, loss):
                redraws.append(f"\rEpoch {epoch}:  {batch * 100 // 40:2d}%|███       | {batch}/40 "
                               f"[00:{batch:02d}<00:30,  1.65it/s, v_num=3, train_loss={shown}]")
            previous = loss
    log = tmp_path / "train.log"
    log.write_text("".join(redraws) + "\n")
    frame = build_timeline([line_pass(Source(str(log), log), compile_plan(load_catalog()))
                            .metrics]).to_frame()
    assert list(frame.index) == list(range(1, 81))  # epoch x 40 + batch, each once
    root = analyze(log).root_cause
    assert root.finding.signature == "nan-loss" and root.finding.step == 70


@pytest.mark.parametrize(("name", "line", "kind", "values"),
                         [pytest.param(*entry, id=entry[0]) for entry in PRINTED_DICTS])
def test_each_printed_dict_variant_gives_its_record(name, line, kind, values):
    table = MetricsTable("train.log")
    # twice: the first is read item by item, the second by the key sequence it taught
    table.add_printed([1, 2], [10, 20], [line, line])
    if kind == "summary":  # the final summary is kept aside
        assert len(table) == 0 and table.summary == pytest.approx(values)
        return
    for index, step in enumerate((10, 20)):
        row = table.row(index)
        assert (row.step, KIND_NAMES[row.kind]) == (step, kind)
        assert row.values == pytest.approx(values)


@pytest.mark.parametrize("shape", FILE_SHAPES.values(), ids=list(FILE_SHAPES))
def test_each_metric_file_gives_its_first_record(tmp_path, shape):
    name = next(name for name, kind in METRIC_FILES.items() if kind == shape.kind)
    path = tmp_path / name
    text, step, values = shape.example
    path.write_text(text)
    scanned = line_pass(Source(name, path, content=shape.kind), compile_plan(load_catalog()))
    assert scanned.metrics.row(0).step == step
    assert scanned.metrics.row(0).values == pytest.approx(values)


def test_a_metric_file_that_is_not_one_gives_no_timeline_and_says_why(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("model,accuracy\nllama,0.71\n")  # an evaluation table: no step column
    state = tmp_path / "trainer_state.json"
    state.write_text('{"log_history": [')  # cut off while written
    plan = compile_plan(load_catalog())
    assert len(line_pass(Source("metrics.csv", csv, content="metrics-csv"), plan).metrics) == 0
    broken = line_pass(Source("trainer_state.json", state, content="trainer-state"), plan)
    assert len(broken.metrics) == 0
    assert broken.info.problems and "not readable JSON" in broken.info.problems[0]


@pytest.mark.parametrize(("column", "canonical", "named"), [
    ("avr_loss", "loss", True), ("nll_loss", "loss", True), ("actor/pg_loss", "loss", True),
    ("lm loss", "loss", True), ("loss scale", "loss", False), ("loss_scale", "loss", False),
    ("glossary", "loss", False), ("clip/grad_norm", "grad_norm", True),
    ("grad_norm_var", "grad_norm", True), ("norm_grad", "grad_norm", False)])
def test_a_name_is_a_metric_by_its_words(column, canonical, named):
    assert named_like(column, canonical) is named


def test_a_loss_of_any_name_going_nan_is_the_nan_onset(tmp_path):
    """musubi-tuner's bar postfix `avr_loss=nan`: no alias lists `avr_loss`, its words do."""
    lines = [f"steps:  {s}%|█ | {s * 10}/1000 [00:10<01:30,  2.94s/it, avr_loss="
             f"{'nan' if s >= 6 else f'{0.2 - s / 100:.3f}'}]" for s in range(1, 9)]
    analysis = analyze(_log(tmp_path, lines))
    assert analysis.root_cause.finding.signature == "nan-loss"
    assert analysis.root_cause.finding.step == 60


def test_a_shape_names_a_known_stack_and_its_run_gets_that_stacks_keys(tmp_path):
    assert all(shape.stack in STACKS for shape in SHAPES if shape.stack)
    lines = [_megatron(s, "3.876781E+00", "1.234") for s in range(1, 30)]
    analysis = analyze(_log(tmp_path, [*lines, _megatron(30, "nan", "nan")]))
    assert dict(analysis.environment)["stack"] == "Megatron-LM"
    assert any("--clip-grad" in fix for fix in analysis.fixes)
    assert not any("max_grad_norm" in fix for fix in analysis.fixes)


def test_a_trainer_state_record_is_at_the_line_its_entry_opens_on(tmp_path):
    history = [{"epoch": 0.1 * i, "loss": 1.0 / i, "step": 10 * i} for i in range(1, 4)]
    state = {"global_step": 30, "log_history": history, "max_steps": 100}
    plan = compile_plan(load_catalog())
    pretty = tmp_path / "trainer_state.json"
    pretty.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")  # as HF writes it
    table = line_pass(Source("trainer_state.json", pretty, content="trainer-state"), plan).metrics
    lines = pretty.read_text().splitlines()
    assert [lines[table.row(i).line - 1].strip() for i in range(3)] == ["{", "{", "{"]
    assert [table.row(i).step for i in range(3)] == [10, 20, 30]
    flat = tmp_path / "flat" / "trainer_state.json"
    flat.parent.mkdir()
    flat.write_text(json.dumps(state))  # one line: entries are numbered instead
    table = line_pass(Source("trainer_state.json", flat, content="trainer-state"), plan).metrics
    assert [table.row(i).line for i in range(3)] == [1, 2, 3]
