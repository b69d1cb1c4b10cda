"""Judge a timeline against the healthy ranges practitioners use: range rules come from
`health.toml`; the detectors below look at shapes (onsets, spikes, plateaus, trends)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from forensics import tomlfile
from forensics.errors import CatalogError
from forensics.metrics.names import spellings
from forensics.metrics.timeline import Timeline, nonfinite_onset
from forensics.model import Anomaly

RULES_FILE = Path(__file__).with_name("health.toml")
LOSS = spellings("loss")
GRAD_NORM = spellings("grad_norm")
LEARNING_RATE = spellings("learning_rate")
EVAL_LOSS = spellings("eval_loss")
GRPO_HINTS = ("reward", "rewards/", "kl", "entropy", "completions/", "frac_reward_zero_std",
              "critic/score", "actor/entropy")
#: what pre-training loops log and fine-tuning trainers do not (Megatron-LM, NeMo, torchtitan,
#: nanoGPT): tokens or samples consumed, model FLOPs utilisation, throughput in tokens
PRETRAIN_HINTS = ("consumed samples", "consumed tokens", "consumed_samples", "tokens_seen",
                  "lm loss", "mfu", "tflops", "tps")
SPIKE_WINDOW = 10
SHORT_EXCERPT_RUN = 5  # rules needing at most this run also judge a shorter excerpt whole
LOSS_SPIKE_FACTOR = 2.0
GRAD_SPIKE_FACTOR = 10.0


@dataclass(frozen=True)
class RangeRule:
    """A red-flag threshold for one metric."""

    metric: tuple[str, ...]
    when: str
    kind: str
    healthy: str
    advice: str
    above: float | None = None
    below: float | None = None
    at_most: float | None = None
    min_run: int = 3

    def violated(self, values: pd.Series) -> pd.Series:
        bad = pd.Series(False, index=values.index)
        if self.above is not None:
            bad |= values > self.above
        if self.below is not None:
            bad |= values < self.below
        if self.at_most is not None:
            bad |= values <= self.at_most
        return bad & values.notna()


#: anomaly kinds the shape detectors below report; the range rules add theirs (`kind`)
DETECTOR_KINDS = ("nan", "spike", "plateau", "overfitting", "no-warmup", "rising", "climbing")
WHEN = ("sft", "grpo", "dpo", "pretrain", "any")
#: the rules each trainer family is judged by (`when` in health.toml): a preference run
#: (DPO, ORPO, KTO) trains like SFT, and its `rewards/chosen` is an implicit reward that no
#: reward function produces, so the RL rules are not its
JUDGED_BY = {"sft": ("any", "sft"), "grpo": ("any", "grpo"), "dpo": ("any", "sft", "dpo"),
             "pretrain": ("any", "sft", "pretrain")}
PREFERENCE_HINTS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen",
                    "train/rewards/chosen")
_RULE_TEXT = ("when", "kind", "healthy", "advice")
_THRESHOLDS = ("above", "below", "at_most")
_KIND = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@cache
def range_rules(path: str | Path | None = None) -> tuple[RangeRule, ...]:
    """The range rules of health.toml (or of the file at `path`).

    Raises CatalogError with `path: field: reason` lines when the file is wrong.
    """
    path = Path(path) if path is not None else RULES_FILE
    problems: list[str] = []
    try:
        data = tomlfile.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise CatalogError([f"{path}: file: cannot read ({err})"]) from err
    except tomlfile.TOMLDecodeError as err:
        raise CatalogError([f"{path}: toml: {err}"]) from err
    for key in sorted(set(data) - {"range"}):
        problems.append(f"{path}: {key}: unknown key")
    tables = data.get("range")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        problems.append(f"{path}: range: must be one or more [[range]] tables")
        tables = []
    rules = [_range_rule(path, f"range[{i}]", table, problems) for i, table in enumerate(tables)]
    if problems:
        raise CatalogError(problems)
    return tuple(rules)


def _range_rule(path: Path, where: str, table: dict, problems: list[str]) -> RangeRule | None:
    """One [[range]] table checked and converted; problems are appended."""
    start = len(problems)
    known = {"metric", "min_run", *_RULE_TEXT, *_THRESHOLDS}
    for key in sorted(set(table) - known):
        problems.append(f"{path}: {where}.{key}: unknown key")
    for key in ("metric", *_RULE_TEXT):
        if key not in table:
            problems.append(f"{path}: {where}.{key}: missing")
    metric = table.get("metric", [])
    if "metric" in table and (not isinstance(metric, list) or not metric
                              or not all(isinstance(m, str) and m for m in metric)):
        problems.append(f"{path}: {where}.metric: must be a list of metric names")
    for key in _RULE_TEXT:
        value = table.get(key)
        if key in table and (not isinstance(value, str) or not value.strip()):
            problems.append(f"{path}: {where}.{key}: must be a non-empty string")
    when, kind = table.get("when"), table.get("kind")
    if isinstance(when, str) and when and when not in WHEN:
        problems.append(f"{path}: {where}.when: {when!r} is not one of {', '.join(WHEN)}")
    if isinstance(kind, str) and kind and not _KIND.match(kind):
        problems.append(f"{path}: {where}.kind: {kind!r} is not kebab-case")
    elif kind in DETECTOR_KINDS:
        problems.append(f"{path}: {where}.kind: {kind!r} is a detector's kind; name the red "
                        f"flag differently")
    limits = _limits(path, where, table, problems)
    min_run = table.get("min_run", 3)
    if isinstance(min_run, bool) or not isinstance(min_run, int) or min_run < 1:
        problems.append(f"{path}: {where}.min_run: must be a whole number of at least 1")
    if len(problems) > start:
        return None
    return RangeRule(metric=tuple(metric), when=when, kind=kind, healthy=table["healthy"],
                     advice=table["advice"], min_run=min_run, **limits)


def _limits(path: Path, where: str, table: dict, problems: list[str]) -> dict[str, float]:
    """A rule's thresholds: at least one, finite, and a healthy band that is not empty."""
    limits: dict[str, float] = {}
    for key in _THRESHOLDS:
        value = table.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            problems.append(f"{path}: {where}.{key}: must be a finite number")
        else:
            limits[key] = float(value)
    if not any(key in table for key in _THRESHOLDS):
        problems.append(f"{path}: {where}: needs at least one of {', '.join(_THRESHOLDS)}")
    if "above" in limits and "below" in limits and limits["below"] >= limits["above"]:
        problems.append(f"{path}: {where}.below: {limits['below']:g} is not below above "
                        f"({limits['above']:g}): every value would be a red flag")
    return limits


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


def assess(timeline: Timeline) -> list[Anomaly]:
    """Every anomaly of the run, in step order."""
    mode = run_mode(timeline)
    train = timeline.train
    anomalies: list[Anomaly] = []
    # a loss that evaluation computes as NaN means the weights (or their fp16 forward) have
    # gone non-finite, even while the training loss still prints numbers
    onset = nonfinite_onset(timeline, (*LOSS, *GRAD_NORM)) \
        or nonfinite_onset(timeline, EVAL_LOSS, "eval")
    if onset is not None:
        step, metric = onset
        anomalies.append(Anomaly(metric, "nan", step, step, math.nan, _healthy(metric, mode),
                                 "The first non-finite value: inspect this step's batch, clip "
                                 "gradients, lower the learning rate, prefer bf16 to fp16."))
    for rule in range_rules():
        if rule.when in JUDGED_BY[mode]:
            anomalies += _one_per_rule([a for column in _matching(train.columns, rule.metric)
                                        if (a := _range_anomaly(rule, column, train[column]))])
    anomalies += _spikes(train, mode)
    if mode != "pretrain":  # its loss sits well above chat fine-tuning's for a long while
        anomalies += _plateau(train)
    anomalies += _overfitting(train, timeline.eval)
    if mode != "grpo":  # RL recipes often run a flat or decaying rate with no warmup
        anomalies += _learning_rate(train)
    anomalies += _length_climb(train)
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


def _healthy(metric: str, mode: str) -> str:
    """The healthy range health.toml gives a metric in this mode."""
    for rule in range_rules():
        if rule.when in JUDGED_BY[mode] and _matching(pd.Index([metric]), rule.metric):
            return rule.healthy
    return "finite, decreasing"


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


def _spikes(train: pd.DataFrame, mode: str) -> list[Anomaly]:
    out = []
    for names, factor, advice in (
        (LOSS, LOSS_SPIKE_FACTOR, "A sudden loss jump: look for a malformed or very long sample "
         "in that batch, lower the learning rate or lengthen warmup."),
        (GRAD_NORM, GRAD_SPIKE_FACTOR, "A gradient spike: clip gradients (`max_grad_norm: 1.0`), "
         "lower the learning rate; a spike right before NaN is the usual path to divergence."),
    ):
        column = _first(train.columns, names)
        if column is None:
            continue
        values = train[column].dropna()
        if len(values) <= 5:
            continue
        baseline = values.rolling(SPIKE_WINDOW, min_periods=5).median().shift(1)
        hits = np.flatnonzero(((baseline > 0) & (values > baseline * factor)
                               & (values - baseline > 0.1)).to_numpy())
        if not len(hits):
            continue
        first, last = hits[0], hits[-1]
        ratio = values.iloc[first] / baseline.iloc[first]
        out.append(Anomaly(column, "spike", int(values.index[first]), int(values.index[last]),
                           float(values.iloc[first]),
                           f"{_healthy(column, mode)} (x{ratio:.0f} over the running median)",
                           advice))
    return out


def _plateau(train: pd.DataFrame) -> list[Anomaly]:
    column = _first(train.columns, LOSS)
    if column is None:
        return []
    values = train[column].dropna()
    if len(values) < 40:
        return []
    quarter = len(values) // 4
    early, late = values.iloc[:quarter].median(), values.iloc[-quarter:].median()
    if late > 2.0 and late >= 0.97 * early:
        return [Anomaly(column, "plateau", int(values.index[quarter]), int(values.index[-1]),
                        float(late), "decreasing; typically 0.5-2.0 for chat fine-tuning",
                        "Loss is flat well above the usual range: raise the learning rate 2-5x "
                        "(LoRA 1e-4-3e-4, full 1e-5-5e-5), check warmup and label masking "
                        "(`axolotl preprocess` then inspect samples).")]
    return []


def _overfitting(train: pd.DataFrame, evals: pd.DataFrame) -> list[Anomaly]:
    eval_column = _first(evals.columns, EVAL_LOSS)
    train_column = _first(train.columns, LOSS)
    if eval_column is None or train_column is None:
        return []
    eval_loss = evals[eval_column].dropna()
    train_loss = train[train_column].dropna()
    if len(eval_loss) < 3 or len(train_loss) < 6:
        return []
    best = eval_loss.idxmin()
    rising = eval_loss.iloc[-1] > eval_loss.min() * 1.05 and eval_loss.iloc[-1] > eval_loss.iloc[-2]
    half = len(train_loss) // 2
    falling = train_loss.iloc[half:].mean() < train_loss.iloc[:half].mean()
    if not (rising and falling):
        return []
    return [Anomaly(eval_column, "overfitting", int(best), int(eval_loss.index[-1]),
                    float(eval_loss.iloc[-1]), "tracks train loss with a small gap",
                    "Eval loss rises while train loss falls: fewer epochs, more `weight_decay` "
                    "(0.01-0.1), smaller `lora_r`, `lora_dropout: 0.05`; keep the checkpoint "
                    f"of step {int(best)}.")]


def _learning_rate(train: pd.DataFrame) -> list[Anomaly]:
    column = _first(train.columns, LEARNING_RATE)
    if column is None:
        return []
    lr = train[column].dropna()
    if len(lr) < 20 or lr.max() <= 0:
        return []
    out = []
    peak_position = int(np.argmax(lr.to_numpy()))
    decays = lr.iloc[-1] < 0.5 * lr.max()
    if lr.iloc[0] >= 0.99 * lr.max() and decays:
        out.append(Anomaly(column, "no-warmup", int(lr.index[0]), int(lr.index[0]),
                           float(lr.iloc[0]), "warmup then decay",
                           "The schedule starts at its peak: set `warmup_steps` (or "
                           "`warmup_ratio`) to 5-10% of the steps."))
    tail_start = int(len(lr) * 0.75)
    if peak_position < tail_start and lr.iloc[-1] > 1.05 * lr.iloc[tail_start]:
        out.append(Anomaly(column, "rising", int(lr.index[tail_start]), int(lr.index[-1]),
                           float(lr.iloc[-1]), "warmup then decay",
                           "The learning rate climbs again at the end: check the scheduler "
                           "(`lr_scheduler_type`, restarts) and `max_steps` vs the real run."))
    return out


def _length_climb(train: pd.DataFrame) -> list[Anomaly]:
    mean = _first(train.columns, ("completions/mean_length", "completion_length"))
    if mean is None:
        return []
    lengths = train[mean].dropna()
    if len(lengths) < 10:
        return []
    ceiling = train["completions/max_length"].max() if "completions/max_length" in train else None
    last = lengths.iloc[-10:]
    climbing = bool((last.diff().dropna() >= 0).all()) and last.iloc[-1] > 1.5 * lengths.iloc[0]
    near_max = ceiling is not None and not math.isnan(ceiling) and last.iloc[-1] >= 0.9 * ceiling
    if not (climbing and near_max):
        return []
    return [Anomaly(mean, "climbing", int(last.index[0]), int(last.index[-1]),
                    float(last.iloc[-1]), "task-dependent, not pinned at the maximum",
                    "Completion length climbs to the maximum: a sign of reward hacking. Add a "
                    "length penalty or check what the reward actually rewards.")]
