"""Fatal signals in every spelling a log uses: launcher exit codes (`exitcode -9`,
`exit code 137`), Python's `<Signals.SIGKILL: 9>`, shells (`Killed`, `Segmentation fault
(core dumped)`, macOS `Abort trap: 6`, zsh's `[1]  31148 abort  python x.py`), debuggers
(`Program received signal SIGSEGV`), faulthandler, absl's failure
handler, torch's DataLoader (`killed by signal: Bus error`) and "got signal: 15". One table
maps numbers and names; catalog signatures declare the signals that mean them (`signals`)."""

from __future__ import annotations

import regex

from forensics.catalog import SIGNAL_NAMES

#: the fatal signals a training run dies of, by number (the catalog's `signals` names them)
SIGNALS = {number: name for name, number in SIGNAL_NAMES.items()}
#: the words strsignal(3) and shells print for them
DESCRIPTIONS = {"Hangup": 1, "Interrupt": 2, "Illegal instruction": 4, "Aborted": 6,
                "Abort trap": 6, "Bus error": 7, "Bus": 7, "Floating point exception": 8,
                "Killed": 9, "Segmentation fault": 11, "Terminated": 15,
                # the same words in the locales shells are often run in (glibc's translations)
                "已杀死": 9, "段错误": 11, "已放弃": 6, "总线错误": 7, "浮点数例外": 8,
                "非法指令": 4, "已终止": 15, "強制終了": 9, "セグメンテーション違反です": 11,
                "Getötet": 9, "Speicherzugriffsfehler": 11, "Abgebrochen": 6,
                "Processus arrêté": 9, "Erreur de segmentation": 11, "Abandon": 6,
                "Убито": 9, "Ошибка сегментирования": 11, "Аварийный останов": 6}
#: zsh's job reports: "[1]    31148 abort      python lora.py", "zsh: killed     python x.py"
ZSH_WORDS = {"hangup": 1, "interrupt": 2, "illegal hardware instruction": 4, "abort": 6,
             "bus error": 7, "floating point exception": 8, "killed": 9,
             "segmentation fault": 11, "terminated": 15}
#: literals that flag a line for the grammar below (the line pass's prefilter)
KEYWORDS = ("SIG", "signal", "Signal", "Killed", "core dumped", "exitcode", "exit code",
            "Interrupt: terminated",
            "Exit code", "exit status", "return code", "returncode", "Segmentation fault",
            "Bus error", "Aborted", "Floating point exception", "Terminated", "Hangup",
            "Illegal instruction", "Abort trap", "zsh: ", "abort  ", "killed  ",
            "segmentation fault  ", "bus error  ", "已杀死", "段错误", "已放弃", "总线错误",
            "強制終了", "セグメンテーション違反", "Getötet", "Speicherzugriffsfehler",
            "Processus arrêté", "Erreur de segmentation", "Убито", "Ошибка сегментирования")

_NAME = r"SIG(?:HUP|INT|ILL|ABRT|BUS|FPE|KILL|SEGV|TERM)"
_WORDS = "|".join(sorted((regex.escape(w) for w in DESCRIPTIONS), key=len, reverse=True))
_ANY = rf"(?:(?P<name>{_NAME})|(?P<number>\d{{1,2}})\b|(?P<word>{_WORDS}))"
_DEATH = regex.compile("|".join((
    rf"<Signals\.(?P<name>{_NAME}): \d+>",
    r"(?:terminated|killed|died|exited|stopped|crashed|aborted)\b[^\n]{0,40}?"
    rf"\b(?:with|by|due to|from|on) (?:the )?(?:fatal )?(?:signal[: ]+{_ANY}|(?P<name>{_NAME}))",
    rf"(?:got|received|caught|receiving) (?:fatal )?signal:? (?:(?P<name>{_NAME})"
    r"|(?P<number>\d{1,2})\b)",
    rf"\b[Ss]ignal (?P<number>\d{{1,2}}) \({_NAME}\) received",
    # DeepSpeed's launcher: "Main process received SIGINT, exiting"
    rf"\b[Pp]rocess received (?P<name>{_NAME}), exiting",
    # a SIGTERM handler's own exception (vLLM's API server, uvicorn-style shutdowns):
    # "raise KeyboardInterrupt("terminated")", the word as zsh spells it
    r"^KeyboardInterrupt: (?P<zsh>terminated)$",
    r"Received (?P<number>\d{1,2}) death signal",
    rf"Program (?:received|terminated with) signal (?P<name>{_NAME})",
    rf"Fatal Python error: (?P<word>{_WORDS})",
    rf"\*\*\* (?P<name>{_NAME}) received at time=",
    r"(?:exit ?code|exit status|return ?code|returned non-zero exit status)[ :=]+"
    r"(?:-(?P<negative>\d{1,2})\b|(?P<shell>1[2-5]\d)\b)",
)))
# a shell's own report: "bash: line 1: 12989 Killed  python train.py",
# "Segmentation fault (core dumped)", macOS "./train.sh: line 1:  1108 Abort trap: 6  ..."
_SHELL = regex.compile(
    rf"^(?:[\w./-]+: line \d+:\s+)?(?:\d+\s+)?(?P<word>{_WORDS})(?: ?\([^()\n]{{1,40}}\)|: \d+)?"
    r"(?:\s{2,}\S.*)?\s*$"
)
_ZSH = regex.compile(
    r"^(?:zsh: |\[\d+\]\s+[+-]?\s*\d+ )(?P<zsh>"
    + "|".join(sorted(ZSH_WORDS, key=len, reverse=True)) + r")(?: \(core dumped\))?\s{2,}\S"
)


#: a line that offers causes as possibilities ("There are some potential root causes. (1)
#: The process is killed by SIGKILL by OOM killer ... (3) ... SIGSEGV"): it reports no
#: signal, and what it names is a hint, not a statement
HEDGED = regex.compile(r"(?i)\b(?:potential|possible|probable|likely) (?:root )?causes?\b"
                       r"|\bmay be (?:caused by|due to)\b|\bpossibly because\b")
# nor does one that says a process may have been killed (SLURM's cgroup report says "may
# have been", and its own signature reads it as the fact it is)
_NO_SIGNAL = regex.compile(rf"{HEDGED.pattern}|(?i:\bmay have been\b)")


def signal_of(body: str) -> int | None:
    """The fatal signal a line reports a process died of, or None."""
    if _NO_SIGNAL.search(body):
        return None
    found = _SHELL.match(body.strip()) or _ZSH.match(body) or _DEATH.search(body)
    if found is None:
        return None
    groups = found.groupdict()
    if groups.get("zsh"):
        return ZSH_WORDS[groups["zsh"]]
    if groups.get("name"):
        return SIGNAL_NAMES[groups["name"]]
    if groups.get("word"):
        return DESCRIPTIONS[groups["word"]]
    number = groups.get("number") or groups.get("negative")
    if number is None and groups.get("shell"):
        number = str(int(groups["shell"]) - 128)
    return int(number) if number is not None and int(number) in SIGNALS else None


def signal_name(number: int) -> str:
    """`SIGKILL` for 9."""
    return SIGNALS[number]
