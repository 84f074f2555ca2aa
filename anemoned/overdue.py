"""Overdue detection: when a destination's backup is older than it should
be. Pure: everything, including `now` and the zone, is an argument.

A destination is overdue when the age of its last successful (not dry-run)
sync passes its allowed age:
- `max_age`, when the operator set one (any schedule);
- else twice its sync schedule's period, when it has a schedule (the
  period of a calendar or cron schedule is the longest gap between its
  next PERIOD_SAMPLES moments, so a weekdays-only cron allows the weekend);
- else it is never overdue. Disabled destinations are never overdue: they
  do not run on purpose.

Before a first success the clock starts when the destination was added;
after a schedule change, when the schedule was set (its `anchor`): a new
schedule gets one full allowance before it can be overdue.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .errors import InvalidField
from .scheduler import ScheduleError, min_interval, next_occurrence
from .timeutil import instant

PERIOD_SAMPLES = 16
_DURATION_RE = re.compile(r"^(\d{1,6})([smhd])\Z")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class Overdue:
    since: datetime  # the moment the allowed age ran out
    last_success: datetime | None
    allowed: timedelta
    rule: str  # "max_age" | "schedule"

    def message(self) -> str:
        last = f"last successful sync {self.last_success.isoformat()}" if self.last_success else "no successful sync yet"
        why = "max_age" if self.rule == "max_age" else "twice the schedule's period"
        return f"overdue since {self.since.isoformat()}: {last}, allowed age {format_duration(self.allowed)} ({why})"

    def view(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "last_success": self.last_success.isoformat() if self.last_success
                else None, "allowed_age": format_duration(self.allowed), "rule": self.rule}


def format_duration(td: timedelta) -> str:
    """The largest unit that states it exactly: 2d, 36h, 90m, 45s."""
    seconds = int(td.total_seconds())
    for unit, size in _UNITS.items():
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_duration_s(seconds: int) -> str | None:
    """A stored max_age as shown: None when off."""
    return format_duration(timedelta(seconds=seconds)) if seconds else None


def parse_max_age(text: Any) -> int:
    """max_age in seconds from `36h`, `2d`, ...; `off` or `0` is 0 (off).
    At least the minimum schedule interval (5 minutes)."""
    if text in ("off", "0", 0):
        return 0
    m = _DURATION_RE.match(text.strip().lower()) if isinstance(text, str) else None
    if not m:
        raise InvalidField("max_age", "must be a duration such as 36h or 2d, or off")
    seconds = int(m[1]) * _UNITS[m[2]]
    if seconds < min_interval().total_seconds():
        raise InvalidField("max_age", f"must be at least {format_duration(min_interval())}")
    return seconds


def schedule_period(schedule: dict[str, Any], now: datetime, tz: ZoneInfo) -> timedelta | None:
    """The longest gap between the schedule's next moments, or None for off
    or for a stored schedule that cannot be computed (that schedule is off,
    and the scheduler's warning says so; only max_age can then make the
    destination overdue)."""
    try:
        moment = next_occurrence(schedule, now, tz)
        if moment is None:
            return None
        longest = timedelta(0)
        for _ in range(PERIOD_SAMPLES):
            following = next_occurrence(schedule, moment, tz)
            if following is None:
                break
            longest = max(longest, following - moment)
            moment = following
    except (ScheduleError, KeyError, TypeError, ValueError):
        return None
    return longest or None


def deadline(enabled: bool, schedule: dict[str, Any], schedule_state: dict[str, Any], created_at: str,
             max_age_s: int, last_success: datetime | None, tz: ZoneInfo) -> Overdue | None:
    """When the destination becomes overdue if no sync succeeds first (the
    Overdue it would then be), or None when it cannot be overdue."""
    if not enabled:
        return None
    start = last_success or instant(created_at)
    if max_age_s > 0:
        allowed, rule = timedelta(seconds=max_age_s), "max_age"
    else:
        if not isinstance(schedule, dict) or schedule.get("kind", "off") == "off":
            return None  # off, or a stored schedule that cannot be read
        anchor = instant((schedule_state or {}).get("anchor"))
        start = max(s for s in (start, anchor) if s is not None) if (start or anchor) else None
        # the gaps that follow the start are the ones it had to wait through
        period = schedule_period(schedule, start, tz) if start else None
        if period is None:
            return None
        allowed, rule = 2 * period, "schedule"
    if start is None:
        return None
    return Overdue(start + allowed, last_success, allowed, rule)


def evaluate(enabled: bool, schedule: dict[str, Any], schedule_state: dict[str, Any], created_at: str,
             max_age_s: int, last_success: datetime | None, now: datetime, tz: ZoneInfo) -> Overdue | None:
    """Whether the destination is overdue at `now`, and since when."""
    due = deadline(enabled, schedule, schedule_state, created_at, max_age_s, last_success, tz)
    return due if due is not None and now > due.since else None
