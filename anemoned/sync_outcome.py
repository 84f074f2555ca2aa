"""What a sync job is asked to do (SyncSettings, decided before it
starts) and what the engine (sync.py) reports back (SyncResult, whose
users a failure leaves not done fail_pending marks failed)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .rclone import FailureClass


@dataclass(frozen=True)
class SyncSettings:
    """What one sync job does, decided before it starts."""

    remote_path: str
    dry_run: bool = False
    max_delete: int | None = None  # None: no limit (the operator allowed the deletions)
    versions_folder: str | None = None  # None: deleted and overwritten files are not kept
    allow_empty: frozenset[str] = frozenset()
    stall_timeout_s: float = 300.0
    #: the destination's parallelism and bandwidth flags (link_options.py),
    #: given to every rclone run of the sync: full, incremental copy, deletions
    link_args: tuple[str, ...] = ()


@dataclass
class SyncResult:
    ok: bool
    error: str | None
    #: per user: the contract's per-user stats, status succeeded, failed,
    #: stalled (from this engine), plus their `error` when not succeeded
    users: dict[str, dict[str, Any]]
    checks: int = 0
    refused_deletes: int = 0
    #: the destination-level failure class, when the destination failed
    failure_class: FailureClass | None = None
    #: per succeeded user: rclone's confirmations (remote_index.py)
    confirmed: dict[str, dict[str, int | None]] = field(default_factory=dict)
    #: per succeeded incremental user: the paths its deletions removed
    deleted: dict[str, list[str]] = field(default_factory=dict)


def fail_pending(users: dict[str, dict[str, Any]], names: list[str], why: str) -> None:
    """The named users not yet succeeded, failed or stalled fail, for `why`."""
    for name in names:
        if users[name]["status"] == "pending":
            users[name].update(status="failed", error=why)
