"""Turn the timestamps logs print into comparable numbers (seconds since the epoch, local
time taken as UTC: only the order matters)."""

from __future__ import annotations

import calendar

import regex

_FULL = regex.compile(
    r"(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[ T_](?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)"
    r"(?:[,.](?P<frac>\d+))?"
)
# glog "0616 00:44:58.915000" (month and day, no year); torch prints "307" for March 7th
_GLOG = regex.compile(r"^(?P<md>\d{3,4}) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:\.(?P<frac>\d+))?$")


def to_epoch(text: str | None, year: int = 1970) -> float | None:
    """Seconds for a printed timestamp, or None when it has no date (a bare clock, an
    uptime). Dates without a year (glog) take `year`."""
    if not text:
        return None
    found = _FULL.search(text)
    if found is not None:
        return _seconds(int(found["y"]), int(found["mo"]), int(found["d"]), found)
    found = _GLOG.match(text.strip())
    if found is not None:
        md = found["md"]
        month, day = int(md[:-2]), int(md[-2:])
        if 1 <= month <= 12 and 1 <= day <= 31:
            return _seconds(year, month, day, found)
    return None


def year_of(text: str | None) -> int | None:
    """The year a full timestamp names."""
    found = _FULL.search(text or "")
    return int(found["y"]) if found else None


def _seconds(year: int, month: int, day: int, found: regex.Match[str]) -> float | None:
    try:
        whole = calendar.timegm((year, month, day, int(found["h"]), int(found["mi"]),
                                 int(found["s"]), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    frac = found["frac"]
    return whole + (int(frac) / 10 ** len(frac) if frac else 0.0)
