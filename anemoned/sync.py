"""The sync engine: mirror the changed users' trees to
{remote_path}/backup/{user}/, each user's files read with that user's
rights, one user's failure or stall costing only that user.

One rclone runs for all users that need it: its source is a `combine`
remote with one upstream per user, each an sftp remote whose "ssh" command
attaches to an sftp-server running as that user (attach.py). rclone keeps
one connection pool to the destination for everyone, and compares sizes
and modification times (content is proven by a separate verify job).

rclone skips every deletion of a run that had an error, so one bad tree
would stop everybody's deletions. When a run fails, the users whose files
failed are set aside (status `failed`) and the run is repeated for the
others; a run that stalls (no progress for the destination's
stall_timeout) is stopped and the users it was transferring for are set
aside (`stalled`). A failure that names no user is either the
destination's (unreachable, authentication, disk full...: every user not
yet done fails with it) or is narrowed down by running the users one by
one. The delete guard's budget is shared by all runs of a job.

rclone is told to touch only the user directories synced (include rules
naming exactly those users; rclone never deletes what a filter excludes),
so remote copies of users not synced this time are kept as they are.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from . import rclone, reach
from .attach import AttachServer, Grant
from .joblog import JobLog
from .rclone_stats import StatsCollector, new_user_stats
from .users import LocalUser, SyncPlan, safe_user_name

#: Failure classes that are the destination's, not one user's.
DESTINATION_CLASSES = (rclone.UNREACHABLE, rclone.TIMEOUT, rclone.HOST_KEY_UNKNOWN, rclone.HOST_KEY_MISMATCH,
                       rclone.AUTH_FAILED, rclone.SESSION_REFUSED, rclone.DISK_FULL, rclone.PATH_NOT_WRITABLE,
                       rclone.PATH_MISSING)
_UPSTREAM = re.compile(r'upstream "u(\d+):')
#: Names per include rule: rclone reads filter files line by line with a
#: 64 KiB line limit; 500 names of at most 32 characters stay well below it.
NAMES_PER_RULE = 500


_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]{}"})


def include_rules(names: Iterable[str], mounts: dict[str, tuple[str, ...]] | None = None) -> str:
    """rclone filter rules that let the sync see only the given top-level
    directories, then exclude everything else, so that other remote
    directories are neither listed, changed nor deleted. One `{a,b,...}`
    glob per NAMES_PER_RULE names: one rule per name would cost rclone a
    match per rule per file, and a {{regexp}} rule would keep rclone from
    deriving directory rules (it would then walk every remote directory).
    Only safe user names are accepted; their characters (letters, digits,
    `.`, `_`, `-`) mean nothing special in a glob. Mount points inside a
    user's tree (user -> relative paths) are excluded first: a sync does not
    cross into another file system."""
    ordered = sorted(set(names))
    if any(not safe_user_name(n) for n in ordered):
        raise ValueError("only safe user names can be synced")
    excluded = [f"- /{user}/{path.translate(_GLOB_SPECIAL)}/**\n" for user in ordered
                for path in (mounts or {}).get(user, ())]
    lines = excluded + [f"+ /{{{','.join(ordered[i:i + NAMES_PER_RULE])}}}/**\n" for i in range(0, len(ordered), NAMES_PER_RULE)]
    return "".join(lines) + "- **\n"


def user_remote(index: int) -> str:
    return f"u{index}"


EMPTY_REMOTE = "empty"


def source_env(users: list[LocalUser], ssh_commands: list[str], *, reads_chunk: str | None = None,
               emptied: Iterable[str] = (), empty_dir: Path | None = None) -> dict[str, str]:
    """The combine remote `src` over one sftp remote per user (u0, u1...),
    each reaching that user's sftp-server through its ssh command; a tree
    mirrored as empty is an empty directory of the daemon's."""
    env: dict[str, str] = {}
    upstreams = [f"{name}={EMPTY_REMOTE}:{empty_dir}" for name in sorted(emptied)]
    if upstreams:
        env.update(rclone.option_env(EMPTY_REMOTE, {"type": "local"}))
    for i, (user, command) in enumerate(zip(users, ssh_commands)):
        options = {"type": "sftp", "ssh": command, "shell_type": "none", "skip_links": "true",
                   "disable_hashcheck": "true", "md5sum_command": "none", "sha1sum_command": "none",
                   "known_hosts_file": "none", "encoding": "Slash"}
        if reads_chunk:
            options["chunk_size"] = reads_chunk
        env.update(rclone.option_env(user_remote(i), options))
        upstreams.append(f"{user.name}={user_remote(i)}:{user.backup_dir}")
    env.update(rclone.option_env(rclone.SRC_REMOTE, {"type": "combine", "upstreams": rclone.space_list(upstreams)}))
    return env


def sync_args(remote_path: str, filter_file: Path | None, dry_run: bool, *, max_delete: int | None = None,
              versions: str | None = None) -> list[str]:
    args = [
        "sync", f"{rclone.SRC_REMOTE}:", rclone.dest_path(remote_path, "backup"),
        *rclone.global_args("INFO"),
        "--stats", "1s", "--stats-log-level", "NOTICE",
        "--create-empty-src-dirs",
        # Files keep their modification times; directories do not: the
        # combine remote reports its top-level (user) directories as
        # modified "now", so keeping directory times would cost one more
        # SFTP request per user on every sync, even when nothing changed.
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


@dataclass(frozen=True)
class SyncSettings:
    """What one sync job does, decided before it starts."""

    remote_path: str
    dry_run: bool = False
    max_delete: int | None = None  # None: no limit (the operator allowed the deletions)
    versions_folder: str | None = None  # None: deleted and overwritten files are not kept
    allow_empty: frozenset[str] = frozenset()
    stall_timeout_s: float = 300.0
    #: the destination's parallelism and bandwidth flags (link_options.py)
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
    failure_class: str | None = None


@dataclass
class _Run:
    collector: StatsCollector
    returncode: int
    stalled: bool
    #: the server stopped answering mid-run ("class: message"), if it did
    silent_server: str | None = None


#: After this long without progress, ask whether the server still answers
#: (a frozen server or link fails the job as `timeout` within about a
#: minute, long before a user's stall_timeout).
PROBE_AFTER_S = float(os.environ.get("ANEMONED_PROBE_AFTER_S", "20"))  # lowered by tests only


@dataclass
class Engine:
    binary: str
    dest_env: dict[str, str]
    attach: AttachServer
    work_dir: Path
    job_id: int
    settings: SyncSettings
    log: JobLog
    report: Callable[[dict[str, Any]], None]
    reads_chunk: str | None = None
    #: does the server still answer? (reach.preflight, bound to its address)
    probe: Callable[[], Awaitable[str]] | None = None
    runs: int = field(default=0, init=False)

    async def run(self, plan: SyncPlan) -> SyncResult:
        users = {u.name: new_user_stats() for u in plan.included}
        extra = plan.synced - set(users)  # allowed to become empty: mirrored by the first run
        users.update({name: new_user_stats() for name in extra})
        result = SyncResult(True, None, users)
        budget = self.settings.max_delete
        queue: list[list[LocalUser]] = [plan.included] if plan.included else []
        if not queue and extra:
            queue = [[]]
        while queue:
            batch = queue.pop(0)
            run = await self._run_batch(batch, extra, budget)
            names = [u.name for u in batch] + sorted(extra)
            result.checks += run.collector.compared()
            for name, counts in run.collector.users.items():
                for key in ("files_transferred", "bytes_transferred", "files_deleted"):
                    users[name][key] += counts[key]
            if budget is not None:
                budget = max(0, budget - sum(c["files_deleted"] for c in run.collector.users.values()))
            if run.returncode == 0 and not run.stalled:
                for name in names:
                    users[name]["status"] = "succeeded"
                extra = set()  # mirrored
                continue
            if run.silent_server is not None:
                cls = run.silent_server.split(":", 1)[0]
                self._fail(users, names + [u.name for b in queue for u in b], run.silent_server)
                result.error, result.failure_class = run.silent_server, cls
                break
            if run.collector.refused_deletes:
                result.refused_deletes += run.collector.refused_deletes
                over = run.collector.refused_users
                rest = [u for u in batch if u.name not in over]
                if over and rest and budget:  # one user's mass deletion; the others still get the rest of the budget
                    for name in over:
                        users[name].update(status="failed", error="the delete guard refused some of its deletions")
                    extra -= over
                    queue.insert(0, rest)
                    continue
                self._fail(users, names + [u.name for b in queue for u in b], "the delete guard stopped the sync")
                break
            if run.stalled:
                stuck = run.collector.transferring_users() or ({batch[0].name} if len(batch) == 1 else set())
                if not stuck:
                    queue[:0] = halves(batch)  # find out who
                    continue
                for name in stuck:
                    users[name].update(status="stalled", error=f"no progress for {self.settings.stall_timeout_s:g} s "
                                       f"(rclone was stopped); {run.collector.user_errors.get(name, '')}".rstrip("; "))
                rest = [u for u in batch if u.name not in stuck]
                if rest or extra:
                    queue.insert(0, rest)
                continue
            self._attribute_start_failures(run.collector, batch)
            failed = {n for n in run.collector.user_errors if n in users}
            cls = self._destination_class(run.collector, {u.name for u in batch})
            if cls is not None or (not failed and len(batch) <= 1):
                message = rclone.failure_message(cls, run.collector.errors, f"rclone exited with status {run.returncode}")
                self._fail(users, names + [u.name for b in queue for u in b], message)
                result.error, result.failure_class = message, cls
                break
            if not failed:
                queue[:0] = halves(batch)
                continue
            for name in failed:
                users[name].update(status="failed", error=run.collector.user_errors[name])
            extra -= failed
            rest = [u for u in batch if u.name not in failed]
            if rest or extra:
                queue.insert(0, rest)
        self._fail(users, sorted(extra), "not mirrored: every run that included it failed")
        result.ok = all(u["status"] == "succeeded" for u in users.values()) and not result.refused_deletes
        return result

    @staticmethod
    def _fail(users: dict[str, dict[str, Any]], names: list[str], why: str) -> None:
        for name in names:
            if users[name]["status"] == "pending":
                users[name].update(status="failed", error=why)

    @staticmethod
    def _attribute_start_failures(collector: StatsCollector, batch: list[LocalUser]) -> None:
        """rclone could not start a user's reader (the combine remote names
        the upstream, u<index>): that is the user's failure, not everyone's."""
        for message in list(collector.general_errors):
            m = _UPSTREAM.search(message)
            if m and int(m[1]) < len(batch):
                name = batch[int(m[1])].name
                collector.user_errors.setdefault(name, f"its reader did not start: {message}")
                collector.general_errors.remove(message)

    @staticmethod
    def _destination_class(collector: StatsCollector, batch: set[str]) -> str | None:
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

    async def _run_batch(self, batch: list[LocalUser], emptied: set[str], budget: int | None) -> _Run:
        """One rclone over the batch's users (and the trees mirrored as
        empty, which need no reader)."""
        self.runs += 1
        grants: list[Grant] = []
        filter_file = self.work_dir / f"job-{self.job_id}.{self.runs}.filter"
        empty_dir = self.work_dir / f"job-{self.job_id}.empty"
        synced = {u.name for u in batch} | emptied
        collector = StatsCollector(sorted(synced), self.settings.dry_run)
        try:
            for user in batch:
                assert user.identity is not None
                grants.append(self.attach.grant(user.identity, user.backup_dir))
            filter_file.write_text(include_rules(synced, {u.name: u.scan.mounts for u in batch if u.scan}))
            empty_dir.mkdir(mode=0o700, exist_ok=True)
            env = {**self.dest_env,
                   **source_env(batch, [self.attach.ssh_command(g) for g in grants], reads_chunk=self.reads_chunk,
                                emptied=emptied, empty_dir=empty_dir)}
            args = sync_args(self.settings.remote_path, filter_file, self.settings.dry_run, max_delete=budget,
                             versions=self.settings.versions_folder) + list(self.settings.link_args)
            if self.runs > 1:
                self.log.note("sync run again for the users not yet done", users=",".join(sorted(synced)))

            def on_record(record: dict[str, Any]) -> None:
                self.log.write(record)
                progress = collector.feed(record)
                if progress is not None:
                    self.report(progress)

            task = asyncio.ensure_future(rclone.run(self.binary, args, env, on_record=on_record, keep_records=False))
            stalled, silent = await self._watch(task, collector)
            if silent is not None:
                self.log.note("stopped: the server stopped answering", error=silent)
                return _Run(collector, -1, False, silent)
            if stalled:
                self.log.note("stopped: no progress", stall_timeout_s=self.settings.stall_timeout_s,
                              users=",".join(sorted(collector.transferring_users())))
                return _Run(collector, -1, True)
            return _Run(collector, task.result().returncode, False)
        finally:
            for g in grants:
                self.attach.revoke(g)
            filter_file.unlink(missing_ok=True)
            try:
                empty_dir.rmdir()
            except OSError:
                pass

    async def _watch(self, task: "asyncio.Future[rclone.RcloneResult]",
                     collector: StatsCollector) -> tuple[bool, str | None]:
        """Wait for the run; stop it when it stalls (True) or when the
        server no longer answers (its failure, "class: message")."""
        probed_at = 0.0
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=1.0)
                if done:
                    return False, None
                now = time.monotonic()
                quiet = now - collector.last_activity
                if quiet > self.settings.stall_timeout_s:
                    await _stop(task)
                    return True, None
                if self.probe is not None and quiet > PROBE_AFTER_S and now - probed_at > PROBE_AFTER_S:
                    probed_at = now
                    try:
                        await self.probe()
                    except reach.Unanswered as err:
                        await _stop(task)
                        return False, err.error
        except asyncio.CancelledError:
            await _stop(task)
            raise


def halves(batch: list[LocalUser]) -> list[list[LocalUser]]:
    """A run that failed or stalled without saying for whom, split to find
    out: log2(users) more runs, not one per user."""
    middle = len(batch) // 2
    return [batch[:middle], batch[middle:]]


async def _stop(task: "asyncio.Future[Any]") -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
