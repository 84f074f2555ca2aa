"""The one place that reads the wall clock, and the ISO-8601 form we show."""
from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 with a UTC offset, to the second (CONTRACT: times)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds") if moment else None
