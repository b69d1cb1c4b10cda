"""Turn one raw log line into clean segments: ANSI codes removed, `\\r` redraws and glued
progress bars split off, and launcher/logger prefixes parsed into an `Attribution`.

The scanner calls this only for the few lines its automaton flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

from forensics.model import NO_ATTRIBUTION, Attribution, Level

ANSI = regex.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# A tqdm bar at the start of a segment, with text glued after it.
PROGRESS_BAR = regex.compile(
    r"^[^|\r\n]{0,120}?\d+%\|[^|\n]{0,200}\|\s*[\d.,]+[kMG]?/[\d.,?]+[kMG]?\s*\[[^\]\n]{0,80}\]"
)

# Each prefix rule is anchored at the start of what is left and consumes one trailing space.
# Named groups feed the Attribution (rank, local_rank, host, pid, time) and the line's level
# (`level` holds a level word, `glog` a glog letter).
_PREFIX_RULES = [
    # Ray / vLLM actor output: "(RayWorkerWrapper pid=92234, ip=172.19.24.110) ",
    # "(head, rank=0, pid=4773) "
    r"\((?:[\w.-]+,? )?(?:rank=(?P<rank>\d+), )?pid=(?P<pid>\d+)(?:, ip=(?P<host>[\w.:-]+))?\) ",
    # a Markdown quote of a pasted log: "> "
    r"> (?=\S)",
    # srun --label: "15: "
    r"(?P<rank>\d{1,5}): (?=\S)",
    # torch excepthook / glog: "[rank3]: " or "[rank3]:"
    r"\[rank(?P<rank>\d+)\]: ?",
    # torchrun --tee: "[default3]:"
    r"\[(?:default|trainer|worker)(?P<local_rank>\d+)\]: ?",
    # log-line-prefix template "[3]:"
    r"\[(?P<rank>\d+)\]: ?(?=\S)",
    # Hydra's job logging (NeMo, verl, ...): "[2025-08-01 02:47:31,433][name][ERROR] - "
    r"\[(?P<time>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?)\]\[[\w.-]+\]"
    r"\[(?P<level>\w+)\] - ",
    # axolotl / logging: "[2024-01-19 08:19:49,149] "
    r"\[(?P<time>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?)\] ",
    # kernel uptime "[74889.644138] " (seconds since boot: shown, not comparable)
    r"\[\s*(?P<time>\d+\.\d{6})\] ",
    # clock and a bracketed level letter (openpi, loguru-style): "01:06:35.612 [I] "
    r"(?P<time>\d\d:\d\d:\d\d(?:\.\d+)?) \[(?P<glog>[DVIWEF])\] ",
    # bare clock "[11:41:59.064379] "
    r"\[(?P<time>\d\d:\d\d:\d\d(?:\.\d+)?)\] ",
    # ISO / logging timestamp at line start, optional " | LEVEL | where - ", " - LEVEL - " or
    # torchtitan's " - logger - LEVEL - "
    r"(?P<time>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?(?:Z|[+-]\d\d:?\d\d)?) "
    r"(?:\|\s*(?P<level>\w+)\s*\|\s*\S+ - |- (?P<level>\w+) - (?:[\w.]+ - )?"
    r"|- [\w.]+ - (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) - )?",
    # vLLM / SGLang loggers: "ERROR 08-18 19:58:43 [serving_chat.py:203] "
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<time>\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) "
    r"\[[\w./-]+:\d+\] ",
    # "04/01/2024 19:13:45 - WARNING - __main__ - "
    r"(?P<time>\d\d/\d\d/\d{4} \d\d:\d\d:\d\d) - (?P<level>\w+) - [\w.]+ - ",
    # glog: "E0301 12:41:09.004000 4000 torch/x.py:869] " and "[E1218 20:27:21.42 File.cpp:629] "
    r"\[?(?P<glog>[VIWEF])(?P<time>\d{3,4} \d\d:\d\d:\d\d(?:\.\d+)?) (?:(?P<pid>\d+) )?"
    r"[\w./-]+:\d+\] ",
    r"\[(?P<glog>[VIWEF]) [\w./-]+:\d+\] ",
    # NCCL: "node-1:185:1027 [7] "
    r"(?P<host>[\w.-]+):(?P<pid>\d+):\d+ \[\d+\] ",
    # HF detail: "[WARNING|logging.py:329] 2024-04-01 19:13:46,400 >> "
    r"\[(?P<level>\w+)\|[\w.]+:\d+\] [\d-]+ [\d:,]+ >> ",
    # level, logger location, PID and RANK fields of axolotl / DeepSpeed; ms-swift's
    # "[WARNING:swift] "
    r"\[(?P<level>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)(?::[\w.]+)?\] ",
    r"\[PID:(?P<pid>\d+)\] ",
    r"\[RANK:(?P<local_rank>\d+)\] ",
    r"\[Rank (?P<rank>-?\d+)\] ",
    # a level word a tool prints before the exception it reports: "Error: RuntimeError: ..."
    r"(?P<level>ERROR|Error|FATAL|Fatal)[:：] (?=(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*"
    r"(?:Error|Exception|Interrupt|Exit):)",
    r"\[[\w.]+(?::\d+)?(?::\w+)?\] (?=\[|\S)",
    # any other short bracketed tag before the text, e.g. a run id
    r"\[[^\]\s][^\]]{0,78}\] (?=\S)",
]
PREFIX = regex.compile("|".join(f"(?:{rule})" for rule in _PREFIX_RULES))
_GROUPS = ("rank", "local_rank", "host", "pid", "time", "level", "glog")
LEVEL_WORDS = {"TRACE": Level.DEBUG, "DEBUG": Level.DEBUG, "INFO": Level.INFO,
               "NOTICE": Level.INFO, "WARN": Level.WARNING, "WARNING": Level.WARNING,
               "ERROR": Level.ERROR, "ERR": Level.ERROR, "CRITICAL": Level.FATAL,
               "FATAL": Level.FATAL}
GLOG_LETTERS = {"D": Level.DEBUG, "V": Level.DEBUG, "I": Level.INFO, "W": Level.WARNING,
                "E": Level.ERROR, "F": Level.FATAL}
# the level a message body states at its start: NCCL INFO/WARN, `WARNING:root:`, uvicorn's
# `INFO:     127.0.0.1 ...`, vLLM's
# `INFO 03-01 12:00:01 ...`, `INFO - trl.x - `, `wandb: WARNING`,
# `torch._dynamo.convert_frame: [WARNING]`,
# and Python warnings (`x.py:3: UserWarning: ...`)
_BODY_LEVEL = regex.compile(
    r"^(?:(?:[\w./-]+:\d+ )?NCCL (?P<level>INFO|WARN)\b"
    r"|(?P<level>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)"
    r"(?=:[\w.<]|:\s{2,}\S|\s+\d\d-\d\d |\s+\[| - [\w.]+ - )"
    r"|(?:wandb|swanlab|comet_ml|mlflow): (?P<level>DEBUG|INFO|WARNING|ERROR)\b"
    r"|[\w.]{1,120}: \[(?P<level>DEBUG|INFO|WARNING|ERROR)\]"
    r"|(?:\S{1,300}:\d+: )?(?P<warning>[A-Z]\w{0,40}Warning): )"
)


# where another rank's output starts in the middle of a line
_RANK_BREAK = regex.compile(r"(?<=\S)(?=\[rank\d+\]:)")


@dataclass(frozen=True, slots=True)
class Segment:
    """One logical line: the cleaned text, the message body after its prefixes, who printed
    it and the level it states."""

    text: str
    body: str
    who: Attribution
    level: Level = Level.UNMARKED


def clean(raw: str) -> str:
    """Remove ANSI colour codes and trailing line breaks."""
    if "\x1b" in raw:
        raw = ANSI.sub("", raw)
    return raw.rstrip("\r\n")


def segments(raw_line: str) -> list[Segment]:
    """Split a physical line into logical lines and parse each one's prefixes."""
    line = clean(raw_line)
    parts = line.split("\r") if "\r" in line else [line]
    if line.count("[rank") > 1:  # ranks interleaved on one line: one segment per rank
        parts = [piece for part in parts for piece in _RANK_BREAK.split(part)]
    out: list[Segment] = []
    for part in parts:
        if "%|" in part:
            part = _drop_progress_bars(part)
        if not part.strip() and len(parts) > 1:
            continue
        out.append(parse_prefixes(part))
    return out or [parse_prefixes("")]


def _drop_progress_bars(part: str) -> str:
    while True:
        bar = PROGRESS_BAR.match(part)
        if bar is None or bar.end() >= len(part):
            return part
        part = part[bar.end():]


def parse_prefixes(text: str) -> Segment:
    """Strip the known prefixes at the start of `text` and collect what they say."""
    fields: dict[str, str] = {}
    pos = 0
    while True:
        match = PREFIX.match(text, pos)
        if match is None or match.end() == pos:
            break
        for name in _GROUPS:
            value = match.group(name)
            if value is not None and name not in fields:
                fields[name] = value
        pos = match.end()
    body = text[pos:] if pos < len(text) else text
    level = _level(fields, body)
    if not fields.keys() - {"level", "glog"}:
        return Segment(text, body, NO_ATTRIBUTION, level)
    return Segment(text, body, _attribution(fields), level)


def _level(fields: dict[str, str], body: str) -> Level:
    """The level the line's prefixes state, else the one its body starts with."""
    if "glog" in fields:
        return GLOG_LETTERS[fields["glog"]]
    word = fields.get("level", "").upper()
    if word in LEVEL_WORDS:
        return LEVEL_WORDS[word]
    found = _BODY_LEVEL.match(body)
    if found is None:
        return Level.UNMARKED
    if found["warning"]:
        return Level.WARNING
    return LEVEL_WORDS.get(found["level"].upper(), Level.UNMARKED)


def _attribution(fields: dict[str, str]) -> Attribution:
    def number(key: str) -> int | None:
        value = fields.get(key)
        return int(value) if value is not None and value.lstrip("-").isdigit() else None

    rank = number("rank")
    return Attribution(
        rank=rank if rank is None or rank >= 0 else None,
        local_rank=number("local_rank"),
        host=fields.get("host"),
        pid=number("pid"),
        time=fields.get("time"),
    )
