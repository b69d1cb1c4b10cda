"""The training stacks a run used, told from its log, and a signature's fix in their terms:
bullets tagged `- [axolotl] ...` are kept for the stacks the run used, and placeholders such
as `{job_id}` or a capture's name are filled with what the log says."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import regex

from forensics import tomlfile

STACKS_FILE = Path(__file__).with_name("stacks.toml")
#: values every fix may name; a signature's own named captures may be named too
CONTEXT_VALUES = ("job_id", "host", "time")
_TAGGED = regex.compile(r"^\[(?P<tags>[a-z0-9, -]+)\]\s*(?P<text>.*)$", regex.S)
_PLACEHOLDER = regex.compile(r"\{(?P<name>[a-z_][a-z0-9_]*)\}")
#: a value filled into a command: a job id, a host, a number, a size (nothing that could be
#: markup or a second command)
_SAFE_VALUE = regex.compile(r"^[\w.:@/+-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Stack:
    """One training stack: what betrays it in a log and whose advice its own replaces."""

    id: str
    title: str
    markers: tuple[str, ...]
    packages: tuple[str, ...] = ()
    covers: tuple[str, ...] = ()
    named: bool = False

    def named_in(self, text: str) -> bool:
        """Whether prose names this stack (by its title, as a word: `trl` in a command or
        `vllm_` in a key is not the name)."""
        return regex.search(rf"(?<![\w-]){regex.escape(self.title)}(?![\w-])",
                            text) is not None


@dataclass(frozen=True, slots=True)
class FixItem:
    """One bullet of a signature's fix and the stacks it is for (none: every run)."""

    text: str
    stacks: tuple[str, ...] = ()

    def placeholders(self) -> tuple[str, ...]:
        return tuple(found["name"] for found in _PLACEHOLDER.finditer(self.text))


def _load() -> dict[str, Stack]:
    data = tomlfile.loads(STACKS_FILE.read_text(encoding="utf-8"))
    return {key: Stack(id=key, title=value["title"], markers=tuple(value["markers"]),
                       packages=tuple(value.get("packages", ())),
                       covers=tuple(value.get("covers", ())), named=value.get("named", False))
            for key, value in data.items()}


STACKS = _load()
MARKERS = tuple(dict.fromkeys(m for stack in STACKS.values() for m in stack.markers))


def detect_stacks(lines: Iterable[str], packages: Iterable[str], slurm_job: bool = False,
                  known: Iterable[str] = ()) -> tuple[str, ...]:
    """The stacks whose markers the lines hold or whose packages the tracebacks pass
    through (SLURM also when a file is named as SLURM names its output; `known`: found
    otherwise, by the metric lines they print), in catalog order, less those a detected
    wrapper covers."""
    found: set[str] = {"slurm"} if slurm_job else set()
    found.update(s for s in known if s in STACKS)
    packages = set(packages)
    for stack in STACKS.values():
        if packages & set(stack.packages):
            found.add(stack.id)
    for line in lines:
        found.update(stack.id for stack in STACKS.values()
                     if stack.id not in found and any(m in line for m in stack.markers))
    covered = {c for s in found for c in STACKS[s].covers}
    return tuple(s for s in STACKS if s in found and s not in covered)


def parse_fix(text: str) -> tuple[tuple[FixItem, ...], list[str]]:
    """A `fix` field as bullets (a line that is not a bullet continues the one above), and
    what is wrong with their tags."""
    bullets: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(("- ", "* ")):
            bullets.append(stripped[2:].strip())
        elif bullets:
            bullets[-1] += " " + stripped
        else:
            bullets.append(stripped)
    items, problems = [], []
    for bullet in bullets:
        tagged = _TAGGED.match(bullet)
        if tagged is None:
            items.append(FixItem(bullet))
            continue
        tags = tuple(t.strip() for t in tagged["tags"].split(",") if t.strip())
        problems += [f"unknown stack tag [{t}]; known: {', '.join(STACKS)}"
                     for t in tags if t not in STACKS]
        items.append(FixItem(tagged["text"].strip(), tuple(t for t in tags if t in STACKS)))
    return tuple(items), problems


def fix_problems(items: tuple[FixItem, ...], captures: Iterable[str]) -> list[str]:
    """Lint: generic bullets name no stack whose keys are its own, some bullet is generic
    when others are tagged, and every placeholder is a context value or a capture."""
    problems = []
    for item in items:
        if not item.stacks:
            problems += [f"names {stack.title} but is not tagged [{stack.id}]: {item.text!r}"
                         for stack in STACKS.values() if stack.named and stack.named_in(item.text)]
        allowed = set(CONTEXT_VALUES) | set(captures)
        problems += [f"unknown placeholder {{{name}}}; a fix may name "
                     f"{', '.join('{' + v + '}' for v in sorted(allowed))}"
                     for name in item.placeholders() if name not in allowed]
    if items and all(item.stacks for item in items):
        problems.append("every bullet is tagged; a run of another stack would get no advice")
    return problems


def advice(items: Iterable[FixItem], stacks: tuple[str, ...],
           values: Mapping[str, str]) -> tuple[str, ...]:
    """The bullets for a run of these stacks (all of them when none was told), each tagged
    one led by its stacks' names, placeholders filled (`NAME` where the log is silent)."""
    out = []
    for item in items:
        if stacks and item.stacks and not set(item.stacks) & set(stacks):
            continue
        text = _PLACEHOLDER.sub(lambda m: _value(values, m["name"]), item.text)
        if item.stacks:
            lead = text[:1].lower() if text[1:2].islower() else text[:1]
            text = f"{' / '.join(STACKS[s].title for s in item.stacks)}: {lead}{text[1:]}"
        out.append(text)
    return tuple(out)


def _value(values: Mapping[str, str], name: str) -> str:
    value = values.get(name, "")
    return value if _SAFE_VALUE.match(value) else name.upper()


def stack_titles(stacks: Iterable[str]) -> str:
    """The stacks' names, for the report's environment."""
    return ", ".join(STACKS[s].title for s in stacks)
