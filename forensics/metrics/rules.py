"""health.toml as data the diagnosis trusts: its range rules (a metric's red-flag threshold,
with example series that must fire and near misses that must not) and the parameters,
healthy ranges and advice of the shape detectors, checked at load. A broken file fails
loudly with `path: field: reason` lines instead of misjudging a run."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from forensics import tomlfile
from forensics.errors import CatalogError
from forensics.stacks import STACKS

RULES_FILE = Path(__file__).with_name("health.toml")
#: the trainer families a run is judged as (`metrics.health.run_mode`)
FAMILIES = ("sft", "grpo", "dpo", "pretrain")
WHEN = (*FAMILIES, "any")
#: the rules each trainer family is judged by (`when` in health.toml): a preference run
#: (DPO, ORPO, KTO) trains like SFT, and its `rewards/chosen` is an implicit reward that no
#: reward function produces, so the RL rules are not its; pre-training is judged like SFT
JUDGED_BY = {"sft": ("any", "sft"), "grpo": ("any", "grpo"), "dpo": ("any", "sft", "dpo"),
             "pretrain": ("any", "sft", "pretrain")}
#: each shape detector's kind and the numbers it needs (`[[detector]]` tables)
DETECTOR_PARAMETERS: dict[str, tuple[str, ...]] = {
    "nan": (),
    "spike": ("factor", "min_rise", "window", "min_records"),
    "plateau": ("above", "flat_ratio", "min_records"),
    "overfitting": ("eval_rise", "min_evals", "min_records"),
    "no-warmup": ("start_ratio", "decay_ratio", "min_records"),
    "rising": ("tail", "rise", "min_records"),
    "climbing": ("records", "growth", "near_max"),
}
DETECTOR_KINDS = tuple(DETECTOR_PARAMETERS)
_TEXT = ("kind", "healthy", "advice")
_THRESHOLDS = ("above", "below", "at_most")
_KIND = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass(frozen=True)
class RangeRule:
    """A red-flag threshold for one metric, with the series it must and must not flag."""

    metric: tuple[str, ...]
    when: str
    kind: str
    healthy: str
    advice: str
    above: float | None = None
    below: float | None = None
    at_most: float | None = None
    min_run: int = 3
    examples: tuple[tuple[float, ...], ...] = ()
    counterexamples: tuple[tuple[float, ...], ...] = ()
    stack_advice: tuple[tuple[str, str], ...] = ()  # (stack, advice in its keys), in order

    def advice_for(self, stacks: tuple[str, ...]) -> str:
        """The advice in the keys of the first of the run's stacks that has its own."""
        return _advice_for(self.advice, self.stack_advice, stacks)

    def violated(self, values: np.ndarray) -> np.ndarray:
        """Which values are out of the healthy range (NaN never is)."""
        bad = np.zeros(len(values), dtype=bool)
        if self.above is not None:
            bad |= values > self.above
        if self.below is not None:
            bad |= values < self.below
        if self.at_most is not None:
            bad |= values <= self.at_most
        return bad & ~np.isnan(values)


@dataclass(frozen=True)
class Detector:
    """A shape detector's settings: the metrics it watches, the families it judges, its
    numbers (`DETECTOR_PARAMETERS`), and what it says."""

    kind: str
    metric: tuple[str, ...]
    families: tuple[str, ...]
    healthy: str
    advice: str
    parameters: tuple[tuple[str, float], ...]
    stack_advice: tuple[tuple[str, str], ...] = ()

    def advice_for(self, stacks: tuple[str, ...]) -> str:
        """The advice in the keys of the first of the run's stacks that has its own."""
        return _advice_for(self.advice, self.stack_advice, stacks)

    def __getitem__(self, name: str) -> float:
        return dict(self.parameters)[name]


@dataclass(frozen=True)
class Rules:
    """Everything health.toml says."""

    ranges: tuple[RangeRule, ...]
    detectors: tuple[Detector, ...]

    def detector(self, kind: str) -> Detector | None:
        """The (first) detector of a kind."""
        return next((d for d in self.detectors if d.kind == kind), None)


@cache
def load_rules(path: str | Path | None = None) -> Rules:
    """The rules of health.toml (or of the file at `path`).

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
    for key in sorted(set(data) - {"range", "detector"}):
        problems.append(f"{path}: {key}: unknown key")
    ranges = _tables(path, data, "range", problems, required=True)
    detectors = _tables(path, data, "detector", problems, required=False)
    rules = Rules(
        tuple(_range_rule(path, f"range[{i}]", table, problems) for i, table in enumerate(ranges)),
        tuple(_detector(path, f"detector[{i}]", table, problems)
              for i, table in enumerate(detectors)))
    if problems:
        raise CatalogError(problems)
    return rules


def range_rules(path: str | Path | None = None) -> tuple[RangeRule, ...]:
    """The range rules of health.toml (or of the file at `path`)."""
    return load_rules(path).ranges


def _tables(path: Path, data: dict, key: str, problems: list[str],
            required: bool) -> list[dict]:
    tables = data.get(key, None if required else [])
    if not isinstance(tables, list) or (required and not tables) \
            or not all(isinstance(t, dict) for t in tables):
        problems.append(f"{path}: {key}: must be one or more [[{key}]] tables")
        return []
    return tables


def _range_rule(path: Path, where: str, table: dict, problems: list[str]) -> RangeRule | None:
    """One [[range]] table checked and converted; problems are appended."""
    start = len(problems)
    _known_keys(path, where, table, {"metric", "when", "min_run", "examples", "counterexamples",
                                     "stack_advice", *_TEXT, *_THRESHOLDS}, problems)
    _required(path, where, table, ("metric", "when", *_TEXT, "examples", "counterexamples"),
              problems)
    metric = _metric(path, where, table, problems)
    _texts(path, where, table, ("when", *_TEXT), problems)
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
    series = {key: _series(path, f"{where}.{key}", table.get(key, []), problems)
              for key in ("examples", "counterexamples")}
    by_stack = _stack_advice(path, where, table, problems)
    if len(problems) > start:
        return None
    return RangeRule(metric=metric, when=when, kind=kind, healthy=table["healthy"],
                     advice=table["advice"], min_run=min_run, **limits, **series,
                     stack_advice=by_stack)


def _detector(path: Path, where: str, table: dict, problems: list[str]) -> Detector | None:
    """One [[detector]] table checked and converted; problems are appended."""
    start = len(problems)
    kind = table.get("kind")
    needed = DETECTOR_PARAMETERS.get(kind, ()) if isinstance(kind, str) else ()
    _known_keys(path, where, table, {"metric", "families", "stack_advice", *_TEXT, *needed},
                problems)
    _required(path, where, table, ("metric", "families", *_TEXT, *needed), problems)
    if "kind" in table and kind not in DETECTOR_PARAMETERS:
        problems.append(f"{path}: {where}.kind: {kind!r} is not one of "
                        f"{', '.join(DETECTOR_KINDS)}")
    metric = _metric(path, where, table, problems)
    _texts(path, where, table, _TEXT, problems)
    families = table.get("families", [])
    if not isinstance(families, list) or not families \
            or not all(f in FAMILIES for f in families):
        problems.append(f"{path}: {where}.families: must list some of {', '.join(FAMILIES)}")
    for name in needed:
        value = table.get(name)
        if name in table and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value <= 0):
            problems.append(f"{path}: {where}.{name}: must be a positive finite number")
    by_stack = _stack_advice(path, where, table, problems)
    if len(problems) > start:
        return None
    return Detector(kind, metric, tuple(families), table["healthy"], table["advice"],
                    tuple((name, float(table[name])) for name in needed), by_stack)


def _stack_advice(path: Path, where: str, table: dict,
                  problems: list[str]) -> tuple[tuple[str, str], ...]:
    """A rule's advice in the keys of particular stacks: `{verl = "...", openrlhf = "..."}`,
    each a known stack (forensics/stacks.toml) and a non-empty text."""
    value = table.get("stack_advice", {})
    if not isinstance(value, dict):
        problems.append(f"{path}: {where}.stack_advice: must be a table of stack = advice")
        return ()
    for stack, text in value.items():
        if stack not in STACKS:
            problems.append(f"{path}: {where}.stack_advice.{stack}: unknown stack; known: "
                            f"{', '.join(STACKS)}")
        elif not isinstance(text, str) or not text.strip():
            problems.append(f"{path}: {where}.stack_advice.{stack}: must be a non-empty string")
    return tuple(value.items())


#: the stacks whose keys the generic advice is written in (HF TrainingArguments, TRL configs,
#: axolotl YAML): a run on one of them gets it whatever engine it also uses
GENERIC_STACKS = frozenset({"hf-trainer", "trl", "axolotl"})


def _advice_for(advice: str, by_stack: tuple[tuple[str, str], ...],
                stacks: tuple[str, ...]) -> str:
    """The generic advice on the stacks it is written for; else the first stack advice (in
    health.toml's order: a framework's own keys before its engine's) of a stack the run
    uses; else the generic advice."""
    if GENERIC_STACKS.intersection(stacks):
        return advice
    return next((text for key, text in by_stack if key in stacks), advice)


def _known_keys(path: Path, where: str, table: dict, known: set[str],
                problems: list[str]) -> None:
    for key in sorted(set(table) - known):
        problems.append(f"{path}: {where}.{key}: unknown key")


def _required(path: Path, where: str, table: dict, keys: tuple[str, ...],
              problems: list[str]) -> None:
    for key in keys:
        if key not in table:
            problems.append(f"{path}: {where}.{key}: missing")


def _metric(path: Path, where: str, table: dict, problems: list[str]) -> tuple[str, ...]:
    metric = table.get("metric", [])
    if "metric" in table and (not isinstance(metric, list) or not metric
                              or not all(isinstance(m, str) and m for m in metric)):
        problems.append(f"{path}: {where}.metric: must be a list of metric names")
        return ()
    return tuple(metric)


def _texts(path: Path, where: str, table: dict, keys: tuple[str, ...],
           problems: list[str]) -> None:
    for key in keys:
        value = table.get(key)
        if key in table and (not isinstance(value, str) or not value.strip()):
            problems.append(f"{path}: {where}.{key}: must be a non-empty string")


def _series(path: Path, where: str, value: object,
            problems: list[str]) -> tuple[tuple[float, ...], ...]:
    """Example series: one or more lists of finite numbers, a metric's logged values."""
    if not isinstance(value, list) or not value or not all(
            isinstance(s, list) and s and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in s) for s in value):
        problems.append(f"{path}: {where}: must be one or more lists of finite numbers")
        return ()
    return tuple(tuple(float(v) for v in s) for s in value)


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
