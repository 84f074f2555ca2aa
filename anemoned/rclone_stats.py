"""Job statistics and progress from rclone's JSON log records.

Counts come from one record per copied or deleted file (with its size),
never from rclone's running byte total, which also counts bytes of
attempts that were retried. Paths in a sync's records start with the
user's name (the source is a combine remote with one upstream per user).
"""
from __future__ import annotations

import re
import time
from typing import Any, Iterable

#: rclone's own summaries of per-file errors: not a failure of their own.
_SUMMARY = re.compile(r"^(Attempt \d+/\d+ failed|Failed to sync with \d+ errors|not deleting |"
                      r"Not deleting |Can't retry any of the errors)", re.IGNORECASE)


def user_of(name: Any) -> str | None:
    if isinstance(name, str) and "/" in name:
        return name.split("/", 1)[0]
    return None


def new_user_stats(status: str = "pending", warning: str | None = None) -> dict[str, Any]:
    return {"files_transferred": 0, "bytes_transferred": 0, "files_deleted": 0, "errors": 0,
            "status": status, "warning": warning}


class StatsCollector:
    """One rclone run's records turned into per-user counts and progress."""

    def __init__(self, users: Iterable[str], dry_run: bool, moves_delete: bool = False) -> None:
        self.dry_run = dry_run
        #: a run that moves deleted files into versions/ (an incremental
        #: sync's deletions): each move is a deletion from backup/
        self.moves_delete = moves_delete
        #: user -> {path in the user's tree: size rclone wrote, or None
        #: when rclone found the remote file identical}: rclone's own
        #: per-file confirmations, what the remote index is built from
        self.confirmed: dict[str, dict[str, int | None]] = {}
        self.users: dict[str, dict[str, Any]] = {u: new_user_stats() for u in users}
        self.final: dict[str, Any] = {}
        self.errors: list[str] = []
        #: error messages about no file in particular, minus rclone's
        #: summaries of the per-file ones ("Attempt 1/3 failed with...")
        self.general_errors: list[str] = []
        #: user -> first error message about one of their files ("path: msg")
        self.user_errors: dict[str, str] = {}
        #: user -> rclone's messages about their files, the file's name
        #: taken out (a name may hold any words: "no space left.img")
        self.user_messages: dict[str, list[str]] = {}
        self.current_user: str | None = None
        self.refused_deletes = 0
        #: users some of whose deletions the delete guard refused
        self.refused_users: set[str] = set()
        self.activity: tuple[Any, ...] = ()
        self.last_activity = time.monotonic()

    def feed(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Account for one record; returns a progress dict for stats records."""
        if isinstance(record.get("stats"), dict):
            self.final = record["stats"]
            s = self.final
            activity = (s.get("bytes"), s.get("checks"), s.get("transfers"), s.get("deletes"), s.get("errors"),
                        s.get("renames"), s.get("listed"))
            if activity != self.activity:
                self.activity = activity
                self.last_activity = time.monotonic()
            return self.progress()
        obj = record.get("object") if record.get("objectType") != "string" else None
        user = user_of(obj)
        per_user = self.users.get(user) if user else None
        msg = str(record.get("msg", ""))
        if per_user is not None:
            self.current_user = user
            is_object = record.get("objectType") not in ("string", None) and "Directory" not in str(
                record.get("objectType"))
            if msg.startswith("Copied (") or (self.dry_run and record.get("skipped") == "copy"):
                per_user["files_transferred"] += 1
                per_user["bytes_transferred"] += int(record.get("size") or 0)
                if msg.startswith("Copied (") and is_object and isinstance(record.get("size"), int):
                    self.confirmed.setdefault(user, {})[obj.split("/", 1)[1]] = record["size"]
            elif msg in ("Deleted", "Moved into backup dir") or (
                    self.dry_run and record.get("skipped") in ("delete", "move into backup dir")):
                per_user["files_deleted"] += 1
            elif self.moves_delete and is_object and (msg.startswith("Moved (") or (
                    self.dry_run and record.get("skipped") == "move")):
                per_user["files_deleted"] += 1
            elif msg == "Unchanged skipping" and is_object:
                self.confirmed.setdefault(user, {})[obj.split("/", 1)[1]] = None
        if "max-delete threshold reached" in msg:
            self.refused_deletes += 1
            refused = user_of(record.get("object"))
            if refused in self.users:
                self.refused_users.add(refused)
        if record.get("level") in ("error", "critical", "fatal"):
            self.errors.append(msg)
            # Errors about a directory come with a plain string object
            # ("alice/sub"): they are that user's too.
            raw = record.get("object")
            owner = user if per_user is not None else user_of(raw) if isinstance(raw, str) else None
            if owner in self.users and "max-delete threshold reached" not in msg:
                rel = raw.split("/", 1)[1]
                self.users[owner]["errors"] += 1
                self.user_errors.setdefault(owner, f"{rel}: {msg}")
                self.user_messages.setdefault(owner, []).append(msg.replace(raw, "…").replace(rel, "…"))
            elif not _SUMMARY.match(msg):
                self.general_errors.append(msg)
        return None

    def transferring_users(self) -> set[str]:
        names = [t.get("name") for t in self.final.get("transferring") or [] if isinstance(t, dict)]
        return {u for u in map(user_of, names) if u in self.users}

    def compared(self) -> int:
        """Files compared on both sides. rclone's `checks` also counts every
        deletion and every server-side move (an old version moved into
        versions/), so a sync of 44 files with 3 of those said 47 checked."""
        s = self.final
        return max(0, int(s.get("checks") or 0) - int(s.get("deletes") or 0) - int(s.get("serverSideMoves") or 0))

    def progress(self) -> dict[str, Any]:
        s = self.final
        current = next(iter(sorted(self.transferring_users())), None)
        return {
            "bytes": s.get("bytes", 0), "total_bytes": s.get("totalBytes", 0),
            "files": s.get("transfers", 0), "total_files": s.get("totalTransfers", 0),
            "checks": s.get("checks", 0), "speed": round(s.get("speed") or 0), "eta_s": s.get("eta"),
            "current_user": current or self.current_user,
        }
