"""utc_now(), the wall clock the daemon reads (what must be testable takes it
as a parameter, as ScheduleLoop.clock does), and the ISO-8601 form we show."""
from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 with a UTC offset, to the second (CONTRACT: times)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds") if moment else None


def instant(text: object) -> datetime | None:
    """A stored ISO-8601 time as an aware datetime (UTC when it has no
    offset); None for an empty or missing value."""
    if not isinstance(text, str) or not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
