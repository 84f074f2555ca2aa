"""The values a job is made of: its kind, what triggered it, its state.

Each is a str enum whose values are the strings the store, the log's
`kind=`/`trigger=` fields and the wire (`job show --json`) carry, so a
member is stored, logged and sent as exactly that string, and a row read
back from the store compares equal to it.
"""
from __future__ import annotations

import enum


class JobKind(enum.StrEnum):
    SYNC = "sync"
    RESTORE = "restore"
    VERIFY = "verify"
    USAGE = "usage"


class Trigger(enum.StrEnum):
    MANUAL = "manual"  # an operator asked (anemonectl)
    SCHEDULE = "schedule"  # the destination's schedule came due
    RETRY = "retry"  # a scheduled job failed and its retry came due
    CATCH_UP = "catch-up"  # a sync the last stop interrupted, run again at start


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # an operator cancelled it
    INTERRUPTED = "interrupted"  # the daemon stopped or died under it
