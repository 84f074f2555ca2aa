"""A sync job: mirror every user's backup/ to {remote_path}/backup/{user}/.

Design (from NOTES-performance): ONE rclone process per job. The source is
a `combine` remote whose upstreams are `user=/users_dir/user/backup`, synced
to `dest:{remote_path}/backup`; rclone then shares one SSH connection pool
for all users instead of paying handshakes per user, and with
disable_hashcheck it compares size and modification time (content is proven
by a separate verify job).

rclone is told to touch only the user directories synced this time (include
rules naming exactly those users, everything else excluded; rclone never
deletes what a filter excludes). A remote user directory whose local user is not
backed up this time (no backup/, empty, symlinked, unsafe, gone) is
therefore kept exactly as it is, without the remote having to be listed
first (which would cost one more SSH handshake per job) and without relying
on any memory of what the remote holds.

Pure parts (planning, argv, reading rclone's JSON log) are separate from the
one coroutine that runs things.
"""
from __future__ import annotations

import json
import os
import stat
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from . import rclone, usage
from .destinations import USER_RE

#: Per-job log files are capped; the rest of a huge log is dropped with a note.
JOB_LOG_MAX_BYTES = 8 * 1024 * 1024


# -- planning (pure once the directory facts are gathered) -------------------

@dataclass(frozen=True)
class LocalUser:
    name: str
    backup_dir: Path
    problem: str | None  # why it is not backed up this time, or None


@dataclass
class SyncPlan:
    included: list[LocalUser]
    #: users not backed up this time, with the reason (shown per user)
    skipped: dict[str, str]
    #: the remote user directories this sync may change: the included users
    #: and those the operator allowed to become empty or go
    synced: set[str]
    #: warnings that are not about one user (unsafe names, ...)
    warnings: list[str] = field(default_factory=list)


def safe_user_name(name: str) -> bool:
    return bool(USER_RE.match(name)) and name not in (".", "..")


def scan_users(users_dir: Path) -> tuple[list[LocalUser], list[str]]:
    """Every sub-directory of users_dir as a LocalUser, plus warnings for
    entries that are not turned into remote paths at all."""
    users: list[LocalUser] = []
    warnings: list[str] = []
    try:
        entries = sorted(os.scandir(users_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return [], [f"users_dir {users_dir} does not exist"]
    users_dev = users_dir.stat().st_dev
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if not safe_user_name(entry.name):
            warnings.append(f"skipped a user directory with an unsafe name: {entry.name!r}")
            continue
        backup = Path(entry.path) / "backup"
        users.append(LocalUser(entry.name, backup, _backup_problem(backup, users_dev)))
    return users, warnings


def _backup_problem(backup: Path, users_dev: int) -> str | None:
    try:
        st = backup.lstat()
    except FileNotFoundError:
        return "no backup/ directory"
    except OSError as exc:
        return f"backup/ cannot be read: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return "backup/ is a symbolic link; it is not followed"
    if not stat.S_ISDIR(st.st_mode):
        return "backup/ is not a directory"
    if st.st_dev != users_dev:
        return "backup/ is on another file system; it is not crossed"
    try:
        with os.scandir(backup) as it:
            empty = next(it, None) is None
    except OSError as exc:
        return f"backup/ cannot be read: {exc.strerror}"
    return "backup/ is empty" if empty else None


def make_plan(users: list[LocalUser], warnings: list[str], remote_users: Iterable[str],
              allow_empty: Iterable[str] = ()) -> SyncPlan:
    """Which users to sync and which to skip.

    remote_users are the user directories known to exist remotely (from
    the last successful sync); a user missing from it may still have a
    remote copy. So an empty backup/ is never mirrored unless the operator
    allows it: it looks like an accident when a copy exists, and there is
    nothing to send when none does. A skip is reported (with a warning)
    when a remote copy is known or the tree has a problem worth telling;
    a user with no backup/ or an empty one and no known copy simply has
    nothing to back up yet, and is not mentioned.
    """
    remote = set(remote_users)
    allowed = set(allow_empty)  # the operator said: an empty tree is what I mean
    included: list[LocalUser] = []
    skipped: dict[str, str] = {}
    for user in users:
        if user.problem is None or (user.problem == "backup/ is empty" and user.name in allowed):
            included.append(user)
        elif user.name in allowed:
            continue  # mirrored as empty: the sync removes the remote copy
        elif user.name in remote:
            skipped[user.name] = f"{user.problem}; the remote copy is kept as it is"
        elif user.problem not in ("no backup/ directory", "backup/ is empty"):
            skipped[user.name] = user.problem
    local_names = {u.name for u in users}
    for name in sorted(remote - local_names - allowed):
        if safe_user_name(name):
            skipped[name] = "no such user directory any more; the remote copy is kept as it is"
    synced = {u.name for u in included} | {n for n in allowed if safe_user_name(n)}
    return SyncPlan(included, skipped, synced, list(warnings))


def combine_upstreams(users: list[LocalUser]) -> str:
    """The combine remote's `upstreams` value: space-separated, each entry
    quoted CSV-style (rclone's SpaceSepList), so a path with spaces or
    quotes in users_dir stays one entry. User names were validated."""
    return " ".join('"' + f"{u.name}={u.backup_dir}".replace('"', '""') + '"' for u in users)


#: Names per include rule: rclone reads filter files line by line with a
#: 64 KiB line limit; 500 names of at most 32 characters stay well below it.
NAMES_PER_RULE = 500


def include_rules(names: Iterable[str]) -> str:
    """rclone filter rules that let the sync see only the given top-level
    directories, then exclude everything else, so that other remote
    directories are neither listed, changed nor deleted. One `{a,b,...}`
    glob per NAMES_PER_RULE names: one rule per name would cost rclone a
    match per rule per file, and a {{regexp}} rule would keep rclone from
    deriving directory rules (it would then walk every remote directory).
    Only safe user names are accepted; their characters (letters, digits,
    `.`, `_`, `-`) mean nothing special in a glob."""
    ordered = sorted(set(names))
    if any(not safe_user_name(n) for n in ordered):
        raise ValueError("only safe user names can be synced")
    lines = [f"+ /{{{','.join(ordered[i:i + NAMES_PER_RULE])}}}/**\n" for i in range(0, len(ordered), NAMES_PER_RULE)]
    return "".join(lines) + "- **\n"


def version_folder(started: datetime) -> str:
    """The name of this sync's versions folder: sortable, no colons."""
    return started.astimezone(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")


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


def sync_args(remote_path: str, filter_file: Path | None, dry_run: bool, *, max_delete: int | None = None,
              versions: str | None = None) -> list[str]:
    args = [
        "sync", f"{rclone.SRC_REMOTE}:", rclone.dest_path(remote_path, "backup"),
        *rclone.global_args("INFO"),
        "--stats", "1s", "--stats-log-level", "NOTICE",
        # Local side: never leave a user's own tree (mount points), never
        # follow symlinks (rclone's default, restated), mirror empty dirs.
        "--one-file-system", "--create-empty-src-dirs",
        # Files keep their modification times; directories do not: the
        # combine remote reports its top-level (user) directories as
        # modified "now", so keeping directory times would cost one more
        # SFTP request per user on every sync, even when nothing changed
        # (30% of such a sync with 2,000 users on loopback; one round trip
        # each on a real network).
        "--no-update-dir-modtime",
        # Retry a flaky moment, but give up soon when the server is gone:
        # the schedule retries later (minutes, not a stuck job).
        "--retries", "2", "--low-level-retries", "3",
    ]
    if filter_file is not None:
        args += ["--filter-from", str(filter_file)]
    if max_delete is not None:
        args += ["--max-delete", str(max_delete)]
    if versions is not None:
        # What the sync deletes or overwrites moves to versions/<folder>/,
        # beside backup/ (never inside it), on the same server.
        args += ["--backup-dir", rclone.dest_path(remote_path, "versions", versions)]
    if dry_run:
        args.append("--dry-run")
    return args


def source_env(users: list[LocalUser]) -> dict[str, str]:
    return rclone.option_env(rclone.SRC_REMOTE, {"type": "combine", "upstreams": combine_upstreams(users)})


# -- reading rclone's JSON log -------------------------------------------------

def _user_of(record: dict[str, Any]) -> str | None:
    obj = record.get("object")
    if isinstance(obj, str) and "/" in obj and record.get("objectType") != "string":
        return obj.split("/", 1)[0]
    return None


class StatsCollector:
    """Turns rclone's JSON log records into job statistics and progress."""

    def __init__(self, users: Iterable[str], dry_run: bool) -> None:
        self.dry_run = dry_run
        self.users: dict[str, dict[str, Any]] = {
            u: {"files_transferred": 0, "bytes_transferred": 0, "files_deleted": 0, "errors": 0,
                "status": "succeeded", "warning": None} for u in users}
        self.final: dict[str, Any] = {}
        self.errors: list[str] = []
        self.current_user: str | None = None
        self.refused_deletes = 0
        self.new_files = 0  # "Copied (new)"
        self.deleted_into_versions = 0  # "Moved into backup dir": a deletion kept in versions/

    def feed(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Account for one record; returns a progress dict for stats records."""
        if isinstance(record.get("stats"), dict):
            self.final = record["stats"]
            return self.progress()
        user = _user_of(record)
        per_user = self.users.get(user) if user else None
        msg = str(record.get("msg", ""))
        if per_user is not None:
            self.current_user = user
            if msg.startswith("Copied (new)"):
                self.new_files += 1
            elif msg == "Moved into backup dir":
                self.deleted_into_versions += 1
            if msg.startswith("Copied (") or (self.dry_run and record.get("skipped") == "copy"):
                per_user["files_transferred"] += 1
                per_user["bytes_transferred"] += int(record.get("size") or 0)
            elif msg in ("Deleted", "Moved into backup dir") or (
                    self.dry_run and record.get("skipped") in ("delete", "move into backup dir")):
                per_user["files_deleted"] += 1
        if "max-delete threshold reached" in msg:
            self.refused_deletes += 1
        if record.get("level") in ("error", "critical", "fatal"):
            self.errors.append(msg)
            if per_user is not None:
                per_user["errors"] += 1
                per_user["status"] = "failed"
        return None

    def compared(self) -> int:
        """Files compared on both sides. rclone's `checks` also counts every
        deletion and every server-side move (an old version moved into
        versions/), so a sync of 44 files with 3 of those said 47."""
        s = self.final
        return max(0, int(s.get("checks") or 0) - int(s.get("deletes") or 0) - int(s.get("serverSideMoves") or 0))

    def remote_files(self) -> int:
        """What the remote holds of the synced users afterwards (the delete
        guard's base): the files both sides held, plus the copies that were
        new to it. With versions, an overwritten file is first moved into
        versions/ (a server-side move with no "Moved into backup dir" line)
        and then copied as new: it was already counted once."""
        overwritten = int(self.final.get("serverSideMoves") or 0) - self.deleted_into_versions
        return max(0, self.compared() + self.new_files - max(0, overwritten))

    def progress(self) -> dict[str, Any]:
        s = self.final
        current = None
        for t in s.get("transferring") or []:
            name = t.get("name") if isinstance(t, dict) else None
            if isinstance(name, str) and "/" in name:
                current = name.split("/", 1)[0]
                break
        return {
            "bytes": s.get("bytes", 0), "total_bytes": s.get("totalBytes", 0),
            "files": s.get("transfers", 0), "total_files": s.get("totalTransfers", 0),
            "checks": s.get("checks", 0), "speed": round(s.get("speed") or 0), "eta_s": s.get("eta"),
            "current_user": current or self.current_user,
        }

    def stats(self, duration_s: float) -> dict[str, Any]:
        """The job's stats (CONTRACT: job show). In a dry run, the counts
        are what a real run would transfer and delete."""
        users = self.users
        transferred = sum(u["files_transferred"] for u in users.values())
        deleted = sum(u["files_deleted"] for u in users.values())
        return {
            "files_transferred": transferred if self.dry_run else self.final.get("transfers", transferred),
            "bytes_transferred": sum(u["bytes_transferred"] for u in users.values()) if self.dry_run
            else self.final.get("bytes", 0),
            "files_deleted": deleted,
            "checks": self.compared(),
            "remote_files": self.remote_files(),
            "errors": self.final.get("errors", len(self.errors)),
            "duration_s": round(duration_s, 3),
            "users": {name: {k: v for k, v in u.items() if k != "errors"} for name, u in users.items()},
        }


# -- the job log -----------------------------------------------------------------

class JobLog:
    """The full rclone log of one job, as JSON lines, capped in size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("w", encoding="utf-8")
        os.chmod(path, 0o640)
        self.written = 0
        self.truncated = False

    def write(self, record: dict[str, Any]) -> None:
        if self.truncated:
            return
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if self.written + len(line) > JOB_LOG_MAX_BYTES:
            self.file.write(json.dumps({"level": "notice", "msg": "log truncated: the rest of rclone's log was dropped"}) + "\n")
            self.truncated = True
            return
        self.file.write(line)
        self.written += len(line)

    def note(self, msg: str, **fields: Any) -> None:
        self.write({"level": "notice", "msg": msg, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields})

    def close(self) -> None:
        self.file.close()


# -- the one coroutine that does it ---------------------------------------------------

@dataclass
class SyncResult:
    ok: bool
    error: str | None
    stats: dict[str, Any]
    refused_deletes: int = 0


@dataclass(frozen=True)
class SyncSettings:
    """What one sync job does, decided before it starts."""

    remote_path: str
    dry_run: bool = False
    max_delete: int | None = None  # None: no limit (the operator allowed the deletions)
    versions_folder: str | None = None  # None: deleted and overwritten files are not kept
    allow_empty: frozenset[str] = frozenset()
    #: user directories known to be on the server (from the last success)
    known_remote_users: frozenset[str] = frozenset()


def remembered_remote_users(last_success_stats: dict[str, Any] | None, remote_path: str) -> list[str] | None:
    """The remote user directories known from the last successful sync, if
    it synced to this same remote_path; None when nothing is known."""
    if not last_success_stats or last_success_stats.get("remote_path") != remote_path:
        return None
    users = last_success_stats.get("remote_users")
    return list(users) if isinstance(users, list) else None


async def run_sync(
    *, binary: str, dest_env: dict[str, str], users_dir: Path, work_dir: Path, job_id: int, settings: SyncSettings,
    log: JobLog, report: Callable[[dict[str, Any]], None],
) -> SyncResult:
    started = time.monotonic()
    remote_path, dry_run = settings.remote_path, settings.dry_run
    users, warnings = scan_users(users_dir)
    known = settings.known_remote_users
    plan = make_plan(users, warnings, known, settings.allow_empty)
    # What is known to be remote after this sync (a dry run changes nothing).
    after = known if dry_run else (known - plan.synced) | {u.name for u in plan.included}
    collector = StatsCollector([u.name for u in plan.included], dry_run)
    for name, why in plan.skipped.items():
        collector.users[name] = {"files_transferred": 0, "bytes_transferred": 0, "files_deleted": 0, "errors": 0,
                                 "status": "skipped", "warning": why}
        log.note("user skipped", user=name, reason=why)
    for warning in plan.warnings:
        log.note(warning)
    if not plan.included:
        stats = collector.stats(time.monotonic() - started)
        stats.update(remote_path=remote_path, remote_users=sorted(known),
                     warnings=plan.warnings + ["no user has anything to back up"])
        return SyncResult(True, None, stats)

    filter_file = work_dir / f"job-{job_id}.filter"
    filter_file.write_text(include_rules(plan.synced))
    env = {**dest_env, **source_env(plan.included)}

    def on_record(record: dict[str, Any]) -> None:
        log.write(record)
        progress = collector.feed(record)
        if progress is not None:
            report(progress)

    try:
        args = sync_args(remote_path, filter_file, dry_run, max_delete=settings.max_delete,
                         versions=settings.versions_folder)
        result = await rclone.run(binary, args, env,
                                  on_record=on_record, keep_records=False)
    finally:
        filter_file.unlink(missing_ok=True)
    stats = collector.stats(time.monotonic() - started)
    stats.update(remote_path=remote_path, remote_users=sorted(after))
    if plan.warnings:
        stats["warnings"] = plan.warnings
    if settings.versions_folder and not dry_run:
        stats["versions_folder"] = settings.versions_folder
    if result.ok:
        return SyncResult(True, None, stats)
    if collector.refused_deletes:
        return SyncResult(False, None, stats, collector.refused_deletes)
    cls = rclone.classify(collector.errors)
    if cls is None and any("SSH_FX_FAILURE" in m for m in collector.errors):
        # SFTP v3 reports a full disk only as a generic failure: ask the
        # server how much room is left to tell the operator what happened
        # (rclone has removed its partial upload by now).
        free = (await usage.about(binary, dest_env, remote_path, log.write)).get("free")
        if isinstance(free, (int, float)) and free < int(collector.final.get("totalBytes") or 0):
            cls = rclone.DISK_FULL
    return SyncResult(False, rclone.failure_message(cls, collector.errors, f"rclone exited with status {result.returncode}"),
                      stats)
