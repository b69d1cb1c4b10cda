"""health.toml is data the diagnosis trusts: a broken file fails loudly at load, with
`path: field: reason` lines, instead of misjudging a run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from forensics.errors import CatalogError
from forensics.metrics import health
from forensics.metrics.health import anomaly_kinds, rule_problems
from forensics.metrics.rules import DETECTOR_KINDS, RULES_FILE, load_rules, range_rules

RULE = '''[[range]]
metric = ["grad_norm", "train/grad_norm"]
when = "sft"
above = 100.0
kind = "high"
healthy = "0.1-10"
advice = "Clip gradients."
examples = [[0.5, 150.0, 160.0, 170.0]]
counterexamples = [[0.5, 150.0, 0.6, 0.7]]
'''


DETECTOR = '''[[detector]]
kind = "spike"
metric = ["loss"]
families = ["sft"]
factor = 2.0
min_rise = 0.1
window = 10
min_records = 5
healthy = "finite, decreasing"
advice = "Look at that batch."
'''


def _load(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = tmp_path / "health.toml"
    path.write_text(text)
    with pytest.raises(CatalogError) as err:
        range_rules(path)
    return path, err.value.problems


def test_packaged_rules_load():
    rules = range_rules()
    assert rules == range_rules(RULES_FILE)
    assert all(rule.metric and rule.when in ("sft", "grpo", "any") for rule in rules)
    assert not rule_problems()  # every rule flags its examples and none of its near misses
    assert {d.kind for d in load_rules().detectors} == set(DETECTOR_KINDS)
    assert {"high", "collapse", "zero", "stuck"} <= anomaly_kinds()


def test_a_valid_file_at_a_path_loads(tmp_path):
    path = tmp_path / "health.toml"
    path.write_text(RULE + RULE.replace('"sft"', '"grpo"').replace("above = 100.0", "below = 0.5")
                    + "min_run = 5\n")
    first, second = range_rules(path)
    assert (first.above, first.min_run) == (100.0, 3)
    assert (second.below, second.min_run, second.when) == (0.5, 5, "grpo")
    assert "high" in anomaly_kinds(path)


BROKEN = [
    pytest.param(RULE + "colour = 1\n", "range[0].colour: unknown key", id="unknown-key"),
    pytest.param("version = 2\n" + RULE, "version: unknown key", id="unknown-top-level-key"),
    pytest.param("", "range: must be one or more [[range]] tables", id="no-rules"),
    pytest.param('range = "all"\n', "range: must be one or more [[range]] tables", id="range-type"),
    pytest.param(RULE.replace('kind = "high"\n', ""), "range[0].kind: missing", id="missing-key"),
    pytest.param(RULE.replace('metric = ["grad_norm", "train/grad_norm"]', 'metric = "grad_norm"'),
                 "range[0].metric: must be a list of metric names", id="metric-type"),
    pytest.param(RULE.replace('metric = ["grad_norm", "train/grad_norm"]', "metric = []"),
                 "range[0].metric: must be a list of metric names", id="metric-empty"),
    pytest.param(RULE.replace('"sft"', '"rl"'),
                 "range[0].when: 'rl' is not one of sft, grpo, dpo, pretrain, any",
                 id="when-value"),
    pytest.param(RULE.replace('"high"', '"Too High"'),
                 "range[0].kind: 'Too High' is not kebab-case", id="kind-form"),
    pytest.param(RULE.replace('"high"', '"spike"'), "range[0].kind: 'spike' is a detector's kind",
                 id="kind-taken"),
    pytest.param(RULE.replace('healthy = "0.1-10"', "healthy = 10"),
                 "range[0].healthy: must be a non-empty string", id="healthy-type"),
    pytest.param(RULE.replace("above = 100.0", 'above = "100"'),
                 "range[0].above: must be a finite number", id="threshold-type"),
    pytest.param(RULE.replace("above = 100.0", "above = true"),
                 "range[0].above: must be a finite number", id="threshold-bool"),
    pytest.param(RULE.replace("above = 100.0", "above = nan"),
                 "range[0].above: must be a finite number", id="threshold-nan"),
    pytest.param(RULE.replace("above = 100.0\n", ""),
                 "range[0]: needs at least one of above, below, at_most", id="no-threshold"),
    pytest.param(RULE + "below = 200.0\n", "range[0].below: 200 is not below above (100)",
                 id="empty-healthy-band"),
    pytest.param(RULE + "min_run = 0\n", "range[0].min_run: must be a whole number of at least 1",
                 id="min-run-range"),
    pytest.param(RULE + "min_run = 2.5\n", "range[0].min_run: must be a whole number of at least 1",
                 id="min-run-type"),
    pytest.param(RULE + "[[range]\n", "toml:", id="not-toml"),
    pytest.param(RULE.replace("examples = [[0.5, 150.0, 160.0, 170.0]]\n", ""),
                 "range[0].examples: missing", id="no-examples"),
    pytest.param(RULE.replace("[[0.5, 150.0, 160.0, 170.0]]", "[0.5, 150.0]"),
                 "range[0].examples: must be one or more lists of finite numbers",
                 id="examples-shape"),
    pytest.param(RULE + DETECTOR.replace('"spike"', '"wobble"'),
                 "detector[0].kind: 'wobble' is not one of nan, spike", id="detector-kind"),
    pytest.param(RULE + DETECTOR.replace("factor = 2.0", "factor = -2.0"),
                 "detector[0].factor: must be a positive finite number", id="detector-number"),
    pytest.param(RULE + DETECTOR.replace("window = 10\n", ""),
                 "detector[0].window: missing", id="detector-missing-number"),
    pytest.param(RULE + DETECTOR.replace('["sft"]', '["chat"]'),
                 "detector[0].families: must list some of sft, grpo, dpo, pretrain",
                 id="detector-family"),
    pytest.param(RULE + DETECTOR + "above = 2.0\n", "detector[0].above: unknown key",
                 id="detector-foreign-number"),
    pytest.param(RULE + 'stack_advice = { kohya = "Clip." }\n',
                 "range[0].stack_advice.kohya: unknown stack", id="stack-advice-unknown"),
    pytest.param(RULE + 'stack_advice = { verl = "" }\n',
                 "range[0].stack_advice.verl: must be a non-empty string", id="stack-advice-empty"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_health_file_raises_path_field_reason(tmp_path, text, expected):
    path, problems = _load(tmp_path, text)
    assert any(p.startswith(f"{path}: {expected}") for p in problems), problems


def test_every_problem_of_a_file_is_reported(tmp_path):
    _, problems = _load(tmp_path, RULE.replace('"sft"', '"rl"') + "min_run = 0\n"
                        + RULE.replace('kind = "high"\n', ""))
    assert len(problems) == 3, problems


def test_a_rule_that_misses_its_example_or_flags_its_near_miss_is_a_lint_problem(tmp_path):
    path = tmp_path / "health.toml"
    path.write_text(RULE.replace("[[0.5, 150.0, 160.0, 170.0]]", "[[0.5, 150.0, 0.7, 170.0]]")
                    .replace("[[0.5, 150.0, 0.6, 0.7]]", "[[0.5, 150.0, 160.0, 170.0]]"))
    problems = rule_problems(path)
    assert f"{path}: range[0].examples[0]: not flagged" in problems
    assert f"{path}: range[0].counterexamples[0]: flagged" in problems
    # and a file that configures no detector says which ones it lacks
    assert f"{path}: detector: no [[detector]] table for 'plateau'" in problems


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError) as err:
        range_rules(tmp_path / "nowhere.toml")
    assert err.value.problems[0].startswith(f"{tmp_path / 'nowhere.toml'}: file: cannot read")


def test_detector_kinds_name_every_kind_the_detectors_report():
    """The kinds that `Anomaly(metric, kind, ...)` calls in health.py spell out literally are
    exactly DETECTOR_KINDS (a rule kind comes from health.toml instead)."""
    tree = ast.parse(Path(health.__file__).read_text(encoding="utf-8"))
    literal = {
        call.args[1].value for call in ast.walk(tree)
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Anomaly"
        and len(call.args) > 1 and isinstance(call.args[1], ast.Constant)
    }
    assert literal == set(DETECTOR_KINDS)


def test_advice_is_given_in_the_keys_of_the_runs_stack():
    rules = load_rules()
    kl = next(r for r in rules.ranges if r.metric[0] == "kl")
    assert "--init_kl_coef" in kl.advice_for(("deepspeed", "openrlhf", "vllm"))
    assert "kl_loss_coef" in kl.advice_for(("fsdp", "verl", "vllm"))
    assert kl.advice_for(("trl", "deepspeed")) == kl.advice  # TRL's `beta`, the generic text
    clip = next(r for r in rules.ranges if r.metric[0] == "grad_norm" and r.when == "sft")
    # Megatron-DeepSpeed: the framework's flag, not the engine's config key
    assert "--clip-grad" in clip.advice_for(("deepspeed", "megatron"))
    assert "gradient_clipping" in clip.advice_for(("deepspeed",))
    assert "max_grad_norm" in clip.advice_for(("hf-trainer", "deepspeed"))
