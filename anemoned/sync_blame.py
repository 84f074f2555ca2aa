"""Whose failure is it: one user's, or the destination's? (sync.py)

A user controls their file names and what their reader says, so one
user's errors never fail the others; the destination fails everyone."""
from __future__ import annotations

import re

from . import rclone
from .rclone_stats import StatsCollector
from .users import LocalUser

#: Failure classes that are the destination's, not one user's.
DESTINATION_CLASSES = (rclone.UNREACHABLE, rclone.TIMEOUT, rclone.HOST_KEY_UNKNOWN, rclone.HOST_KEY_MISMATCH,
                       rclone.AUTH_FAILED, rclone.SESSION_REFUSED, rclone.DISK_FULL, rclone.PATH_NOT_WRITABLE,
                       rclone.PATH_MISSING)
_UPSTREAM = re.compile(r'upstream "u(\d+):')


def attribute_start_failures(collector: StatsCollector, batch: list[LocalUser]) -> None:
    """rclone could not start a user's reader (the combine remote names
    the upstream, u<index>): that is the user's failure, not everyone's."""
    for message in list(collector.general_errors):
        m = _UPSTREAM.search(message)
        if m and int(m[1]) < len(batch):
            name = batch[int(m[1])].name
            collector.user_errors.setdefault(name, f"its reader did not start: {message}")
            collector.general_errors.remove(message)


def destination_class(collector: StatsCollector, batch: set[str]) -> str | None:
    """The destination's failure class, if the errors show one: from
    errors about no file in particular, or when every user of the run
    failed writing with the same kind of error (a read-only or full
    server). One user's errors never fail the others: a user controls
    their file names and what their reader says."""
    cls = rclone.classify(collector.general_errors)
    if cls in DESTINATION_CLASSES:
        return cls
    if batch and batch <= set(collector.user_messages):
        writing = [m for msgs in collector.user_messages.values() for m in msgs if "source" not in m.lower()]
        classes = {rclone.classify(msgs) for msgs in collector.user_messages.values()}
        cls = rclone.classify(writing)
        if len(classes) == 1 and cls in DESTINATION_CLASSES:
            return cls
    return None
