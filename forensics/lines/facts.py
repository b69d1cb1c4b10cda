"""Facts about the environment that a log states in passing (NCCL and CUDA versions, GPU
memory, world size): each fact's keywords (the line pass's prefilter) and its regex, in one
table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import regex

from forensics.model import Token, Traceback
from forensics.stacks import MARKERS, stack_titles

SLURM_JOB = "SLURM job"


@dataclass(frozen=True)
class Fact:
    """One environment fact: the literals that flag its lines and the regex that reads it."""

    name: str
    keywords: tuple[str, ...]
    pattern: regex.Pattern[str]


FACTS = (
    Fact("NCCL", ("NCCL version",),
         regex.compile(r"NCCL version (?P<v>\d+\.\d+\.\d+(?:\+cuda[\d.]+)?)")),
    Fact("CUDA", ("CUDA Version",), regex.compile(r"CUDA Version:? (?P<v>\d+\.\d+)")),
    Fact("GPU memory", ("total capacity of",),
         regex.compile(r"GPU(?: \d+)? has a total capacity of (?P<v>[\d.]+ [KMGT]iB)")),
    Fact("world size", ("nranks",), regex.compile(r"\bnranks (?P<v>\d+)\b")),
    Fact("world size", ("world_size", "World size"),
         regex.compile(r"(?i)\bworld[_ ]size\b\W{1,3}(?P<v>\d+)\b")),
    Fact("world size", ("Num processes", "Number of processes"),
         regex.compile(r"Num(?:ber of)? processes\W{1,3}(?P<v>\d+)\b")),
    Fact(SLURM_JOB, ("SLURM_JOB_ID", "SLURM_JOBID"),
         regex.compile(r"\bSLURM_JOB_?ID\W{1,3}(?P<v>\d+)\b")),
)
#: lines that state a fact, or name a training stack (see `forensics.stacks`)
FACT_KEYWORDS = tuple(dict.fromkeys([*(k for fact in FACTS for k in fact.keywords), *MARKERS]))
FRAMEWORKS = ("torch", "transformers", "trl", "deepspeed", "accelerate", "peft", "axolotl",
              "vllm", "bitsandbytes", "flash_attn", "datasets", "lightning", "unsloth")


def environment(tokens: Iterable[Token], python_versions: Iterable[str],
                tracebacks: Iterable[Traceback], stacks: Iterable[str] = (),
                ) -> tuple[tuple[str, str], ...]:
    """The stacks the run used, the facts the job's lines state, the Python versions and
    frameworks its tracebacks show, and the ranks and hosts its prefixes name."""
    tokens = list(tokens)
    facts: dict[str, str] = {}
    if titles := stack_titles(stacks):
        facts["stack"] = titles
    for token in tokens:
        if "fact" not in token.tags:
            continue
        for fact in FACTS:
            found = fact.pattern.search(token.body)
            if found is not None and fact.name not in facts:
                facts[fact.name] = found["v"]
    pythons = sorted(set(python_versions))
    if pythons:
        facts["Python"] = ", ".join(pythons)
    packages = Counter(p for tb in tracebacks for p in tb.packages)
    frameworks = [p for p in FRAMEWORKS if p in packages]
    if frameworks:
        facts["frameworks in tracebacks"] = ", ".join(frameworks)
    ranks = {t.who.rank for t in tokens if t.who.rank is not None}
    if ranks:
        facts["ranks seen"] = ", ".join(str(r) for r in sorted(ranks))
    hosts = {t.who.host for t in tokens if t.who.host}
    if hosts:
        facts["hosts seen"] = ", ".join(sorted(hosts)[:8])
    return tuple(facts.items())
