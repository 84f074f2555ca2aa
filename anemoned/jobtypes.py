"""The values a job is made of: its kind, what triggered it, its state,
and the job itself as the queue and the api pass it around (Job).

Each is a str enum whose values are the strings the store, the log's
`kind=`/`trigger=` fields and the wire (`job show --json`) carry, so a
member is stored, logged and sent as exactly that string, and a row read
back from the store compares equal to it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


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


@dataclass(frozen=True)
class Job:
    """One row of the store's jobs table, typed. Read again after every
    change (JobQueue.get): the store holds the truth, a Job is a snapshot."""

    id: int
    destination: str
    kind: JobKind
    state: JobState
    dry_run: bool
    trigger: Trigger
    queued_at: str
    #: what the job was asked (sync: allow_deletes, allow_empty, full;
    #: restore: user, to, path, version, overwrite; verify: user, download);
    #: None only in a damaged row (store._row)
    options: dict[str, Any] | None
    started_at: str | None
    finished_at: str | None
    error: str | None
    stats: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Job":
        return cls(id=row["id"], destination=row["destination"], kind=JobKind(row["kind"]),
                   state=JobState(row["state"]), dry_run=bool(row["dry_run"]), trigger=Trigger(row["trigger"]),
                   queued_at=row["queued_at"], options=row["options"], started_at=row["started_at"],
                   finished_at=row["finished_at"], error=row["error"], stats=row["stats"])

    @property
    def active(self) -> bool:
        return self.state in (JobState.QUEUED, JobState.RUNNING)

    def view(self) -> dict[str, Any]:
        """The job as `job show --json` prints it (CONTRACT.md), without
        the progress of a running job (JobQueue.view adds it)."""
        return {
            "id": self.id, "destination": self.destination, "kind": self.kind.value, "state": self.state.value,
            "dry_run": self.dry_run, "trigger": self.trigger.value, "options": self.options,
            "queued_at": self.queued_at, "started_at": self.started_at, "finished_at": self.finished_at,
            "error": self.error, "stats": self.stats,
        }
