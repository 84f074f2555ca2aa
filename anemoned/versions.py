"""Versions folders and the delete guard's limit: pure helpers."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


def version_folder(started: datetime) -> str:
    """The name of this sync's versions folder: sortable, no colons."""
    return started.astimezone(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")


def next_folder(started: datetime, last_sync_stats: object) -> str:
    """This sync's versions folder: its start second, or one second after
    the destination's last sync's folder when that is not earlier. Two
    syncs never share a folder (the second's move of a file changed in
    both would replace the copy the first saved there), and nobody waits."""
    last = last_sync_stats.get("versions_folder") if isinstance(last_sync_stats, dict) else None
    previous = parse_version_folder(last) if isinstance(last, str) else None
    if previous is not None and previous >= started.replace(microsecond=0):
        return version_folder(previous + timedelta(seconds=1))
    return version_folder(started)


def parse_version_folder(name: str) -> datetime | None:
    try:
        return datetime.strptime(name, "%Y-%m-%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


#: Deleting this many files never trips the percentage guard: on a small
#: backup a few deletions are a large share and still routine.
PERCENT_FLOOR = 100


def delete_limit(max_delete: int, max_delete_percent: int, remote_files: int | None) -> int:
    """How many deletions a sync may make: the count limit, and the
    percentage of the remote's files (when known, and not below
    PERCENT_FLOOR)."""
    limit = max_delete
    if remote_files is not None:
        limit = min(limit, max(PERCENT_FLOOR, remote_files * max_delete_percent // 100))
    return limit
