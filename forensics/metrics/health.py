"""Judge a timeline against the healthy ranges practitioners use: range rules and the
detectors' numbers and advice come from `health.toml` (`metrics.rules`); the detectors below
look at shapes (onsets, spikes, plateaus, trends)."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

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
from forensics.metrics.timeline import Timeline, nonfinite_onset
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
    train = timeline.train
    anomalies: list[Anomaly] = []
    for rule in rules.ranges:
        if rule.when in JUDGED_BY[mode]:
            rule = replace(rule, advice=rule.advice_for(stacks))
            anomalies += _one_per_rule([a for column in _matching(train.columns, rule.metric)
                                        if (a := _range_anomaly(rule, column, train[column]))])
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


def _matching(columns: pd.Index, names: tuple[str, ...]) -> list[str]:
    """Columns named by `names` (or by another spelling of the same metric: Megatron's
    `grad norm`, verl's `actor/entropy`), where `*` stands for one path part (no `/`)."""
    found = []
    for name in dict.fromkeys(s for n in names for s in spellings(n)):
        pattern = re.compile("^" + "[^/]*".join(map(re.escape, name.split("*"))) + "$")
        found += [c for c in columns if c not in found and pattern.match(c)]
    return found


def _first(columns: pd.Index, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in columns), None)


def _watched(detector: Detector) -> tuple[str, ...]:
    """Every spelling of the metrics a detector watches (health.toml's `metric`), in order."""
    return tuple(dict.fromkeys(s for name in detector.metric for s in spellings(name)))


def _watched_values(detector: Detector, frame: pd.DataFrame) -> pd.Series | None:
    """The logged values of the first column the detector watches (None if none is logged)."""
    column = _first(frame.columns, _watched(detector))
    return None if column is None else frame[column].dropna()


def _healthy(metric: str, mode: str, otherwise: str) -> str:
    """The healthy range health.toml's range rules give a metric in this mode."""
    for rule in range_rules():
        if rule.when in JUDGED_BY[mode] and _matching(pd.Index([metric]), rule.metric):
            return rule.healthy
    return otherwise


def _range_anomaly(rule: RangeRule, column: str, values: pd.Series) -> Anomaly | None:
    bad = rule.violated(values).to_numpy()
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
    steps = values.index
    value = float(values.iloc[start])
    return Anomaly(column, rule.kind, int(steps[start]), int(steps[best_end]), value,
                   rule.healthy, rule.advice)


def _nonfinite(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """The first non-finite loss or gradient norm; a loss that evaluation computes as NaN
    means the weights (or their fp16 forward) have gone non-finite, even while the training
    loss still prints numbers."""
    watched = _watched(detector)
    # then any other column whose name says it is one (`avr_loss`, `nll_loss`)
    watched += tuple(c for c in timeline.train.columns if c not in watched
                     and any(named_like(c, name) for name in detector.metric))
    onset = nonfinite_onset(timeline, watched) or nonfinite_onset(timeline, EVAL_LOSS, "eval")
    if onset is None:
        return []
    step, metric = onset
    return [Anomaly(metric, "nan", step, step, math.nan,
                    _healthy(metric, mode, detector.healthy), detector.advice)]


def _spike(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """A jump over the running median of the records before it."""
    values = _watched_values(detector, timeline.train)
    if values is None or len(values) <= detector["min_records"]:
        return []
    column = str(values.name)
    baseline = values.rolling(int(detector["window"]), min_periods=int(detector["min_records"])
                              ).median().shift(1)
    hits = np.flatnonzero(((baseline > 0) & (values > baseline * detector["factor"])
                           & (values - baseline > detector["min_rise"])).to_numpy())
    if not len(hits):
        return []
    first, last = hits[0], hits[-1]
    ratio = values.iloc[first] / baseline.iloc[first]
    return [Anomaly(column, "spike", int(values.index[first]), int(values.index[last]),
                    float(values.iloc[first]),
                    f"{_healthy(column, mode, detector.healthy)} "
                    f"(x{ratio:.0f} over the running median)",
                    detector.advice)]


def _plateau(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """A loss whose last quarter is no lower than its first, and high."""
    values = _watched_values(detector, timeline.train)
    if values is None or len(values) < detector["min_records"]:
        return []
    column = str(values.name)
    quarter = len(values) // 4
    early, late = values.iloc[:quarter].median(), values.iloc[-quarter:].median()
    if late > detector["above"] and late >= detector["flat_ratio"] * early:
        return [Anomaly(column, "plateau", int(values.index[quarter]), int(values.index[-1]),
                        float(late), detector.healthy, detector.advice)]
    return []


def _overfitting(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """Evaluation loss rising past its best while the training loss still falls."""
    train, evals = timeline.train, timeline.eval
    eval_column = _first(evals.columns, _watched(detector))
    train_column = _first(train.columns, LOSS)
    if eval_column is None or train_column is None:
        return []
    eval_loss = evals[eval_column].dropna()
    train_loss = train[train_column].dropna()
    if len(eval_loss) < detector["min_evals"] or len(train_loss) < detector["min_records"]:
        return []
    best = eval_loss.idxmin()
    rising = (eval_loss.iloc[-1] > eval_loss.min() * detector["eval_rise"]
              and eval_loss.iloc[-1] > eval_loss.iloc[-2])
    half = len(train_loss) // 2
    falling = train_loss.iloc[half:].mean() < train_loss.iloc[:half].mean()
    if not (rising and falling):
        return []
    return [Anomaly(eval_column, "overfitting", int(best), int(eval_loss.index[-1]),
                    float(eval_loss.iloc[-1]), detector.healthy,
                    f"{detector.advice} Keep the checkpoint of step {int(best)}.")]


def _learning_rates(train: pd.DataFrame, detector: Detector) -> pd.Series | None:
    lr = _watched_values(detector, train)
    return lr if lr is not None and len(lr) >= detector["min_records"] and lr.max() > 0 \
        else None


def _no_warmup(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """A schedule that starts at its peak and decays."""
    lr = _learning_rates(timeline.train, detector)
    if lr is None:
        return []
    if lr.iloc[0] >= detector["start_ratio"] * lr.max() \
            and lr.iloc[-1] < detector["decay_ratio"] * lr.max():
        return [Anomaly(str(lr.name), "no-warmup", int(lr.index[0]), int(lr.index[0]),
                        float(lr.iloc[0]), detector.healthy, detector.advice)]
    return []


def _rising(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """A learning rate that climbs again in the run's last part, after its peak."""
    lr = _learning_rates(timeline.train, detector)
    if lr is None:
        return []
    tail_start = int(len(lr) * detector["tail"])
    if int(np.argmax(lr.to_numpy())) < tail_start \
            and lr.iloc[-1] > detector["rise"] * lr.iloc[tail_start]:
        return [Anomaly(str(lr.name), "rising", int(lr.index[tail_start]), int(lr.index[-1]),
                        float(lr.iloc[-1]), detector.healthy, detector.advice)]
    return []


def _climbing(detector: Detector, timeline: Timeline, mode: str) -> list[Anomaly]:
    """Completion length climbing on every recent record to near its maximum."""
    train = timeline.train
    lengths = _watched_values(detector, train)
    records = int(detector["records"])
    if lengths is None or len(lengths) < records:
        return []
    mean = str(lengths.name)
    ceiling = train["completions/max_length"].max() if "completions/max_length" in train else None
    last = lengths.iloc[-records:]
    climbing = bool((last.diff().dropna() >= 0).all()) \
        and last.iloc[-1] > detector["growth"] * lengths.iloc[0]
    near_max = ceiling is not None and not math.isnan(ceiling) \
        and last.iloc[-1] >= detector["near_max"] * ceiling
    if not (climbing and near_max):
        return []
    return [Anomaly(mean, "climbing", int(last.index[0]), int(last.index[-1]),
                    float(last.iloc[-1]), detector.healthy, detector.advice)]


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
                found = _range_anomaly(rule, rule.metric[0],
                                       pd.Series(values, index=range(1, len(values) + 1)))
                if (found is not None) != fires:
                    problems.append(f"{where}: range[{index}].{key}[{n}]: "
                                    f"{'not flagged' if fires else 'flagged'}")
    return problems
