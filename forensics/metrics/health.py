"""Judge a timeline against the healthy ranges practitioners use: range rules and the
detectors' numbers and advice come from `health.toml` (`metrics.rules`); the detectors below
look at shapes (onsets, spikes, plateaus, trends)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from forensics.errors import CatalogError
from forensics.metrics.names import named_like, spellings
from forensics.metrics.rules import (
    DETECTOR_KINDS,
    JUDGED_BY,
    Detector,
    RangeRule,
    load_rules,
    range_rules,
)
from forensics.metrics.table import EVAL
from forensics.metrics.timeline import Metric, Timeline, nonfinite_onset
from forensics.model import Anomaly

LOSS = spellings("loss")
EVAL_LOSS = spellings("eval_loss")
GRPO_HINTS = ("reward", "rewards/", "kl", "entropy", "completions/", "frac_reward_zero_std",
              "critic/score", "actor/entropy")
#: what pre-training loops log and fine-tuning trainers do not (Megatron-LM, NeMo, torchtitan,
#: nanoGPT): tokens or samples consumed, model FLOPs utilisation, throughput in tokens
PRETRAIN_HINTS = ("consumed samples", "consumed tokens", "consumed_samples", "tokens_seen",
                  "lm loss", "mfu", "tflops", "tps")
SHORT_EXCERPT_RUN = 5  # rules needing at most this run also judge a shorter excerpt whole
PREFERENCE_HINTS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen",
                    "train/rewards/chosen")


def anomaly_kinds(path: str | Path | None = None) -> frozenset[str]:
    """Every anomaly kind `assess` can report: the detectors' and the range rules'."""
    return frozenset(DETECTOR_KINDS) | {rule.kind for rule in range_rules(path)}


def run_mode(timeline: Timeline) -> str:
    """`dpo` when the run logs a preference trainer's metrics, `grpo` when it logs RL
    metrics, `pretrain` when it logs what pre-training loops count (tokens consumed, MFU),
    else `sft`."""
    columns = timeline.metric_columns
    if any(c in PREFERENCE_HINTS for c in columns):
        return "dpo"
    if any(c.startswith(GRPO_HINTS) for c in columns):
        return "grpo"
    return "pretrain" if any(c in PRETRAIN_HINTS for c in columns) else "sft"


def assess(timeline: Timeline, stacks: tuple[str, ...] = ()) -> list[Anomaly]:
    """Every anomaly of the run, in step order, its advice in the keys of the run's stacks
    where health.toml has them."""
    rules = load_rules()
    mode = run_mode(timeline)
    anomalies: list[Anomaly] = []
    for rule in rules.ranges:
        if rule.when in JUDGED_BY[mode]:
            rule = replace(rule, advice=rule.advice_for(stacks))
            found = [a for column in _matching(timeline.names, rule.metric)
                     if (a := _range_anomaly(rule, timeline.metric(column)))]
            anomalies += _one_per_rule(found)
    for detector in rules.detectors:
        if mode in detector.families:
            detector = replace(detector, advice=detector.advice_for(stacks))
            anomalies += DETECTORS[detector.kind](detector, timeline, mode)
    return sorted(anomalies, key=lambda a: (a.step, a.metric))


def _one_per_rule(found: list[Anomaly]) -> list[Anomaly]:
    """One anomaly per rule: the earliest, naming the other columns (30 reward functions all
    stuck at 0 are one finding, not 30)."""
    if len(found) <= 1:
        return found
    first, *others = sorted(found, key=lambda a: (a.step, a.metric))
    names = ", ".join(a.metric for a in others[:5]) + (", ..." if len(others) > 5 else "")
    return [replace(first, advice=f"{first.advice} The same on {len(others)} other "
                                  f"column(s): {names}.")]


def _matching(columns: Sequence[str], names: tuple[str, ...]) -> list[str]:
    """Columns named by `names` (or by another spelling of the same metric: Megatron's
    `grad norm`, verl's `actor/entropy`), where `*` stands for one path part (no `/`)."""
    found = []
    for name in dict.fromkeys(s for n in names for s in spellings(n)):
        pattern = re.compile("^" + "[^/]*".join(map(re.escape, name.split("*"))) + "$")
        found += [c for c in columns if c not in found and pattern.match(c)]
    return found


def _first(columns: Sequence[str], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in columns), None)


def _watched(detector: Detector) -> tuple[str, ...]:
    """Every spelling of the metrics a detector watches (health.toml's `metric`), in order."""
    return tuple(dict.fromkeys(s for name in detector.metric for s in spellings(name)))


def _watched_values(detector: Detector, timeline: Timeline) -> Metric | None:
    """The finite logged training values of the first column the detector watches (None if
    none is logged)."""
    column = _first(timeline.names, _watched(detector))
    return None if column is None else timeline.logged(column)


def _healthy(metric: str, mode: str, otherwise: str) -> str:
    """The healthy range health.toml's range rules give a metric in this mode."""
    for rule in range_rules():
        if rule.when in JUDGED_BY[mode] and _matching([metric], rule.metric):
            return rule.healthy
    return otherwise


def _range_anomaly(rule: RangeRule, metric: Metric) -> Anomaly | None:
    """The longest run of out-of-range values (a record that did not log the metric ends a
    run), when it is long enough for the rule."""
    bad = rule.violated(metric.values)
    run = best = 0
    best_end = -1
    for i, flag in enumerate(bad):
        run = run + 1 if flag else 0
        if run > best:
            best, best_end = run, i
    # an excerpt shorter than the rule's run counts when every step of it is in the red (for
    # the rules that need a short run: reward_std 0 on two GRPO steps is the finding; a
    # reward still 0 on two steps is how most runs start)
    whole_excerpt = 0 < best == len(bad) < rule.min_run <= SHORT_EXCERPT_RUN
    if best < rule.min_run and not whole_excerpt:
        return None
    start = best_end - best + 1
    steps = metric.steps
    return Anomaly(metric.name, rule.kind, int(steps[start]), int(steps[best_end]),
                   float(metric.values[start]), rule.healthy, rule.advice)


def _nonfinite(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """The first non-finite loss or gradient norm; a loss that evaluation computes as NaN
    means the weights (or their fp16 forward) have gone non-finite, even while the training
    loss still prints numbers."""
    watched = _watched(detector)
    # then any other column whose name says it is one (`avr_loss`, `nll_loss`)
    watched += tuple(c for c in timeline.names if c not in watched
                     and any(named_like(c, name) for name in detector.metric))
    onset = nonfinite_onset(timeline, watched) or nonfinite_onset(timeline, EVAL_LOSS, EVAL)
    if onset is None:
        return []
    step, metric = onset
    return [Anomaly(metric, "nan", step, step, math.nan,
                    _healthy(metric, mode, detector.healthy), detector.advice)]


def _running_median(values: np.ndarray, window: int, min_records: int) -> np.ndarray:
    """Each value's baseline: the median of the up to `window` values before it, NaN where
    fewer than `min_records` come before it."""
    baseline = np.full(len(values), np.nan)
    for i in range(max(min_records, 1), min(window, len(values))):
        baseline[i] = np.median(values[:i])
    if len(values) > window:
        baseline[window:] = np.median(sliding_window_view(values[:-1], window), axis=1)
    return baseline


def _spike(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """A jump over the running median of the records before it."""
    metric = _watched_values(detector, timeline)
    if metric is None or len(metric) <= detector["min_records"]:
        return []
    values = metric.values
    baseline = _running_median(values, int(detector["window"]), int(detector["min_records"]))
    hits = np.flatnonzero((baseline > 0) & (values > baseline * detector["factor"])
                          & (values - baseline > detector["min_rise"]))
    if not len(hits):
        return []
    first, last = hits[0], hits[-1]
    ratio = values[first] / baseline[first]
    return [Anomaly(metric.name, "spike", int(metric.steps[first]), int(metric.steps[last]),
                    float(values[first]),
                    f"{_healthy(metric.name, mode, detector.healthy)} "
                    f"(x{ratio:.0f} over the running median)",
                    detector.advice)]


def _plateau(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """A loss whose last quarter is no lower than its first, and high."""
    metric = _watched_values(detector, timeline)
    if metric is None or len(metric) < detector["min_records"]:
        return []
    quarter = len(metric) // 4
    early = float(np.median(metric.values[:quarter]))
    late = float(np.median(metric.values[-quarter:]))
    if late > detector["above"] and late >= detector["flat_ratio"] * early:
        return [Anomaly(metric.name, "plateau", int(metric.steps[quarter]),
                        int(metric.steps[-1]), late, detector.healthy, detector.advice)]
    return []


def _overfitting(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """Evaluation loss rising past its best while the training loss still falls."""
    eval_column = _first(timeline.names, _watched(detector))
    train_column = _first(timeline.names, LOSS)
    if eval_column is None or train_column is None:
        return []
    evaluated = timeline.logged(eval_column, EVAL)
    eval_loss, train_loss = evaluated.values, timeline.logged(train_column).values
    if len(eval_loss) < detector["min_evals"] or len(train_loss) < detector["min_records"]:
        return []
    best = int(evaluated.steps[np.argmin(eval_loss)])
    rising = (eval_loss[-1] > eval_loss.min() * detector["eval_rise"]
              and eval_loss[-1] > eval_loss[-2])
    half = len(train_loss) // 2
    falling = train_loss[half:].mean() < train_loss[:half].mean()
    if not (rising and falling):
        return []
    return [Anomaly(eval_column, "overfitting", best, int(evaluated.steps[-1]),
                    float(eval_loss[-1]),
                    detector.healthy, f"{detector.advice} Keep the checkpoint of step {best}.")]


def _learning_rates(timeline: Timeline, detector: Detector) -> Metric | None:
    lr = _watched_values(detector, timeline)
    return lr if lr is not None and len(lr) >= detector["min_records"] \
        and lr.values.max() > 0 else None


def _no_warmup(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """A schedule that starts at its peak and decays."""
    lr = _learning_rates(timeline, detector)
    if lr is None:
        return []
    values, peak = lr.values, lr.values.max()
    if values[0] >= detector["start_ratio"] * peak and values[-1] < detector["decay_ratio"] * peak:
        return [Anomaly(lr.name, "no-warmup", int(lr.steps[0]), int(lr.steps[0]),
                        float(values[0]), detector.healthy, detector.advice)]
    return []


def _rising(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """A learning rate that climbs again in the run's last part, after its peak."""
    lr = _learning_rates(timeline, detector)
    if lr is None:
        return []
    values = lr.values
    tail_start = int(len(values) * detector["tail"])
    if int(np.argmax(values)) < tail_start and values[-1] > detector["rise"] * values[tail_start]:
        return [Anomaly(lr.name, "rising", int(lr.steps[tail_start]), int(lr.steps[-1]),
                        float(values[-1]), detector.healthy, detector.advice)]
    return []


def _climbing(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """Completion length climbing on every recent record to near its maximum."""
    lengths = _watched_values(detector, timeline)
    records = int(detector["records"])
    if lengths is None or len(lengths) < records:
        return []
    ceiling = timeline.logged("completions/max_length").values \
        if timeline.has("completions/max_length") else None
    last = lengths.values[-records:]
    climbing = bool((np.diff(last) >= 0).all()) \
        and last[-1] > detector["growth"] * lengths.values[0]
    near_max = ceiling is not None and len(ceiling) > 0 \
        and last[-1] >= detector["near_max"] * ceiling.max()
    if not (climbing and near_max):
        return []
    return [Anomaly(lengths.name, "climbing", int(lengths.steps[-records]),
                    int(lengths.steps[-1]), float(last[-1]), detector.healthy,
                    detector.advice)]


DETECTORS = {"nan": _nonfinite, "spike": _spike, "plateau": _plateau,
             "overfitting": _overfitting, "no-warmup": _no_warmup, "rising": _rising,
             "climbing": _climbing}


def rule_problems(path: str | Path | None = None) -> list[str]:
    """health.toml linted like the catalog: it loads, every detector kind is configured, and
    each range rule flags its example series and none of its near misses."""
    try:
        rules = load_rules(path)
    except CatalogError as err:
        return list(err.problems)
    where = path or "health.toml"
    problems = [f"{where}: detector: no [[detector]] table for {kind!r}"
                for kind in DETECTOR_KINDS if rules.detector(kind) is None]
    for index, rule in enumerate(rules.ranges):
        for key, series, fires in (("examples", rule.examples, True),
                                   ("counterexamples", rule.counterexamples, False)):
            for n, values in enumerate(series):
                steps = np.arange(1, len(values) + 1)
                found = _range_anomaly(rule, Metric(rule.metric[0], steps,
                                                    np.array(values, dtype=np.float64)))
                if (found is not None) != fires:
                    problems.append(f"{where}: range[{index}].{key}[{n}]: "
                                    f"{'not flagged' if fires else 'flagged'}")
    return problems
