"""Schedules: parsing, and the pure maths of when a destination runs next.

Rules (also in the README):
- Calendar schedules (daily, weekly, monthly, cron) are read as wall-clock
  times in the configured zone. A time that does not exist that day (the
  hour skipped when clocks go forward) runs at the first valid moment after
  it; a time that exists twice (clocks go back) runs once, at the first.
- monthly DAY: a day the month lacks (31 in April) means that month's last day.
- interval: every N minutes/hours/days counted from the last scheduled run
  (or from when the schedule was set); at least MIN_INTERVAL.
- The next run is computed after the last *scheduled* run; a manual sync
  does not move it. When that moment has already passed (the daemon was
  down or the machine asleep), the destination runs once, now, if
  catch_up (default), else at the next moment after now (skip_missed):
  never once per missed moment.
- A failed scheduled sync is retried after RETRY_DELAYS (5 min, 15 min,
  1 h), unless the next scheduled moment comes first; after the last retry
  it waits for the next scheduled moment.

Instants are UTC-aware datetimes; nothing here reads the clock.
"""
from __future__ import annotations

import calendar
import os
import re
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from .errors import InvalidField

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: A schedule must have a next moment within this long, or it is refused:
#: every date a 5-field cron can name recurs within 4 years (29 February),
#: so what does not is a date that never comes (31 February).
HORIZON = timedelta(days=4 * 366)
RETRY_DELAYS = (timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1))
_DURATION_RE = re.compile(r"^(\d{1,6})([smhd])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)\Z")


class ScheduleError(ValueError):
    """A schedule whose next moment cannot be computed (a date that never
    comes, or a stored value that is not a schedule)."""


def min_interval() -> timedelta:
    """5 minutes; ANEMONED_MIN_INTERVAL_S lowers it for tests only."""
    return timedelta(seconds=int(os.environ.get("ANEMONED_MIN_INTERVAL_S", "300")))


# -- parsing -----------------------------------------------------------------------

def _duration(text: Any) -> timedelta | None:
    m = _DURATION_RE.match(text.strip().lower()) if isinstance(text, str) else None
    return timedelta(seconds=int(m[1]) * _UNITS[m[2]]) if m else None


def parse_duration(text: str) -> timedelta:
    """A duration a person gave, held to today's minimum."""
    value = _duration(text)
    if value is None:
        raise InvalidField("schedule.every", "must be a duration such as 30m, 2h or 1d")
    if value < min_interval():
        raise InvalidField("schedule.every", f"must be at least {int(min_interval().total_seconds() // 60)} minutes")
    return value


def _parse_time(value: Any) -> str:
    m = _TIME_RE.match(value) if isinstance(value, str) else None
    if not m:
        raise InvalidField("schedule.time", "must be HH:MM (24-hour clock)")
    return f"{int(m[1]):02d}:{m[2]}"


def _parse_weekday(value: Any) -> str:
    text = str(value).strip().lower()
    for i, name in enumerate(WEEKDAYS):
        if text in (name, calendar.day_name[i].lower(), str(i + 1)):
            return name
    raise InvalidField("schedule.day", "must be a weekday: mon, tue, wed, thu, fri, sat or sun")


def _parse_month_day(value: Any) -> int:
    try:
        day = int(value)
    except (TypeError, ValueError):
        day = 0
    if not 1 <= day <= 31 or isinstance(value, bool):
        raise InvalidField("schedule.day", "must be a day of the month from 1 to 31")
    return day


def parse_schedule(raw: dict[str, Any], catch_up: bool | None = None) -> dict[str, Any]:
    """Validate and normalise a schedule object; raises naming the field."""
    kind = raw.get("kind")
    extra = set(raw) - {"kind", "every", "time", "day", "expr", "catch_up"}
    if extra:
        raise InvalidField(f"schedule.{sorted(extra)[0]}", "unknown field")
    if catch_up is None:
        catch_up = raw.get("catch_up", True)
    if not isinstance(catch_up, bool):
        raise InvalidField("schedule.catch_up", "must be true or false")
    if kind == "off":
        return {"kind": "off"}
    if kind == "interval":
        every = str(raw.get("every", ""))
        parse_duration(every)
        out: dict[str, Any] = {"kind": "interval", "every": every.strip().lower()}
    elif kind == "daily":
        out = {"kind": "daily", "time": _parse_time(raw.get("time"))}
    elif kind == "weekly":
        out = {"kind": "weekly", "day": _parse_weekday(raw.get("day")), "time": _parse_time(raw.get("time"))}
    elif kind == "monthly":
        out = {"kind": "monthly", "day": _parse_month_day(raw.get("day")), "time": _parse_time(raw.get("time"))}
    elif kind == "cron":
        expr = raw.get("expr")
        if not isinstance(expr, str) or len(expr.split()) != 5 or not croniter.is_valid(expr):
            raise InvalidField("schedule.expr", "must be a 5-field cron expression such as '30 2 * * 1-5'")
        out = {"kind": "cron", "expr": " ".join(expr.split())}
    else:
        raise InvalidField("schedule.kind", "must be off, interval, daily, weekly, monthly or cron")
    out["catch_up"] = catch_up
    return out


def check_horizon(schedule: dict[str, Any], now: datetime, tz: ZoneInfo) -> None:
    """Refuse (naming the field) a schedule with no moment within HORIZON
    of now. Pure."""
    try:
        next_occurrence(schedule, now, tz)
    except ScheduleError as err:
        field = "schedule.expr" if schedule.get("kind") == "cron" else "schedule"
        raise InvalidField(field, f"{err}; check the date (31 February never comes)") from None


# -- time zones --------------------------------------------------------------------

def zone(name: str | None) -> ZoneInfo:
    """The configured zone, else the system's (TZ, /etc/localtime), else UTC."""
    if name:
        return ZoneInfo(name)
    tz_env = os.environ.get("TZ", "").lstrip(":")
    candidates = [tz_env] if tz_env else []
    try:
        target = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in target:
            candidates.append(target.split("/zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    for candidate in candidates:
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def _exists(naive: datetime, tz: ZoneInfo) -> bool:
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) == naive


def resolve_wall_time(naive: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time: a time inside a DST gap
    moves to the first valid minute after it; a repeated time is its first
    occurrence (fold=0)."""
    probe = naive
    for _ in range(24 * 60):  # gaps are at most a few hours
        if _exists(probe, tz):
            return probe.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
        probe = (probe + timedelta(minutes=1)).replace(second=0, microsecond=0)
    raise ValueError(f"no valid local time after {naive} in {tz}")


# -- next occurrence -------------------------------------------------------------

def _day_matches(schedule: dict[str, Any], day: date) -> bool:
    kind = schedule["kind"]
    if kind == "daily":
        return True
    if kind == "weekly":
        return WEEKDAYS[day.weekday()] == schedule["day"]
    last = calendar.monthrange(day.year, day.month)[1]
    return day.day == min(schedule["day"], last)


def next_occurrence(schedule: dict[str, Any], after: datetime, tz: ZoneInfo) -> datetime | None:
    """The first scheduled instant strictly after `after` (UTC-aware), or
    None for `off`; raises ScheduleError when there is none within HORIZON
    (or the schedule is not one). Pure."""
    kind = schedule["kind"]
    if kind == "off":
        return None
    if kind == "interval":
        # A stored interval was checked when it was set; it is not held to
        # today's minimum again (that is a request's rule, not the clock's).
        every = _duration(schedule["every"])
        if every is None or every <= timedelta(0):
            raise ScheduleError(f"interval {schedule['every']!r} is not a duration")
        return after + every
    local_after = after.astimezone(tz).replace(tzinfo=None)
    if kind == "cron":
        try:
            it = croniter(schedule["expr"], local_after)
            while True:
                candidate = resolve_wall_time(it.get_next(datetime), tz)
                if candidate > after + HORIZON:
                    break
                if candidate > after:
                    return candidate
        except CroniterError as err:
            raise ScheduleError(f"cron {schedule['expr']!r} has no date to run on ({err})") from None
        raise ScheduleError(f"cron {schedule['expr']!r} has no date to run on within 4 years")
    if kind not in ("daily", "weekly", "monthly"):
        raise ScheduleError(f"unknown schedule kind {kind!r}")
    hh, mm = (int(x) for x in schedule["time"].split(":"))
    day = local_after.date() - timedelta(days=1)  # a gap can move yesterday's time past midnight
    for _ in range(400):
        if _day_matches(schedule, day):
            candidate = resolve_wall_time(datetime.combine(day, time(hh, mm)), tz)
            if candidate > after:
                return candidate
        day += timedelta(days=1)
    raise ScheduleError(f"{kind} schedule has no moment within a year")


def next_run(schedule: dict[str, Any], state: dict[str, Any], now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the destination should next run (UTC), given the schedule, its
    bookkeeping (anchor, last_scheduled, retry_at) and now. A result <= now
    means "run now". Pure."""
    _check_stored(schedule, state)
    if schedule.get("kind", "off") == "off":
        return None
    reference = _instant(state.get("last_scheduled")) or _instant(state.get("anchor")) or now
    due = next_occurrence(schedule, reference, tz)
    retry = _instant(state.get("retry_at"))
    if retry is not None and (due is None or retry < due):
        return retry
    return due


def skip_missed(schedule: dict[str, Any], state: dict[str, Any], now: datetime, tz: ZoneInfo) -> dict[str, Any] | None:
    """For a schedule that does not catch up: the bookkeeping that drops the
    moments missed while the daemon was down or the machine asleep, or None
    when nothing was missed. Called at start-up and after a wake-up that
    came far too late; a moment that is merely due now is not "missed"."""
    _check_stored(schedule, state)
    if schedule.get("kind", "off") == "off" or schedule.get("catch_up", True):
        return None
    reference = _instant(state.get("last_scheduled")) or _instant(state.get("anchor")) or now
    due = next_occurrence(schedule, reference, tz)
    if due is None or due > now:
        return None
    if schedule["kind"] == "interval":
        every = parse_duration(schedule["every"])
        last = reference + every * ((now - reference) // every)  # keep the grid
    else:
        last = now
    return {**state, "last_scheduled": last.isoformat(), "retry_at": None}


def after_scheduled_start(state: dict[str, Any], now: datetime, is_retry: bool) -> dict[str, Any]:
    """Bookkeeping once a scheduled run starts (or is absorbed by a job
    already running): the moment is used up, any pending retry too; a
    regular moment starts a fresh round of retries."""
    new = {**state, "last_scheduled": now.isoformat(), "retry_at": None}
    if not is_retry:
        new["failures"] = 0
    return new


def after_scheduled_finish(schedule: dict[str, Any], state: dict[str, Any], succeeded: bool, finished: datetime,
                           tz: ZoneInfo) -> dict[str, Any]:
    """Bookkeeping once a scheduled job ended: reset on success; on failure
    plan the next retry, unless retries are used up or the next scheduled
    moment comes first."""
    if succeeded:
        return {**state, "failures": 0, "retry_at": None}
    failures = int(state.get("failures", 0)) + 1
    retry_at = None
    if failures <= len(RETRY_DELAYS):
        candidate = finished + RETRY_DELAYS[failures - 1]
        upcoming = next_occurrence(schedule, _instant(state.get("last_scheduled")) or finished, tz)
        if upcoming is None or candidate < upcoming:
            retry_at = candidate.isoformat()
    return {**state, "failures": failures, "retry_at": retry_at}


def _check_stored(schedule: Any, state: Any) -> None:
    """A schedule and its bookkeeping as read back from the database must
    at least be objects (a damaged cell reads as None)."""
    if not isinstance(schedule, dict) or not isinstance(state, dict):
        raise ScheduleError("the stored schedule is not readable")


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
