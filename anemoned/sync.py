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

A user whose remote index can be trusted (remote_index.py) is synced
incrementally instead: one `copy` of exactly the new and changed files,
named in a files-from list and looked up on the server one by one (no
remote directory is listed), with the same isolation of failures; then,
for the users whose copies all succeeded, one server-side run that moves
their deleted files into the versions folder, within the delete guard.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from . import rclone, reach
from .attach import AttachServer, Grant
from .joblog import JobLog
from .rclone_stats import StatsCollector, new_user_stats
from .remote_index import Changes
from .sync_argv import delete_args, files_from, include_rules, source_env, sync_args
from .sync_outcome import SyncResult, SyncSettings
from .users import LocalUser, SyncPlan

#: Failure classes that are the destination's, not one user's.
DESTINATION_CLASSES = (rclone.UNREACHABLE, rclone.TIMEOUT, rclone.HOST_KEY_UNKNOWN, rclone.HOST_KEY_MISMATCH,
                       rclone.AUTH_FAILED, rclone.SESSION_REFUSED, rclone.DISK_FULL, rclone.PATH_NOT_WRITABLE,
                       rclone.PATH_MISSING)
_UPSTREAM = re.compile(r'upstream "u(\d+):')
#: What rclone prints at DEBUG level before its JSON logging starts.
_PLAIN_DEBUG = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d DEBUG : ")


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
    #: deletions the delete guard still allows in this job (None: no limit)
    budget: int | None = field(default=None, init=False)

    async def run(self, plan: SyncPlan, changes: dict[str, Changes] | None = None) -> SyncResult:
        """Full syncs for the included users, except those in `changes`:
        their incremental copies first, then, for those whose copies all
        succeeded, their deletions (as rclone sync: none after an error)."""
        changes = changes or {}
        users = {u.name: new_user_stats() for u in plan.included}
        extra = plan.synced - set(users)  # allowed to become empty: mirrored by the first run
        users.update({name: new_user_stats() for name in extra})
        result = SyncResult(True, None, users)
        self.budget = self.settings.max_delete
        full = [u for u in plan.included if u.name not in changes]
        if full or extra:
            await self._runs(full, extra, result, None)
        incremental = [u for u in plan.included if u.name in changes]
        copying = [u for u in incremental if changes[u.name].copy]
        if copying and result.failure_class is None:
            await self._runs(copying, set(), result, {u.name: changes[u.name].copy for u in copying})
        for u in incremental:
            if not changes[u.name].copy and users[u.name]["status"] == "pending" and result.failure_class is None:
                users[u.name]["status"] = "succeeded"
                result.confirmed[u.name] = {}
        deleting = [u.name for u in incremental if changes[u.name].delete and users[u.name]["status"] == "succeeded"]
        if deleting:
            await self._delete(deleting, changes, result)
        self._fail(users, sorted(users), result.error or "not synced: the job stopped before its turn")
        result.ok = all(u["status"] == "succeeded" for u in users.values()) and not result.refused_deletes
        return result

    async def _runs(self, batch: list[LocalUser], extra: set[str], result: SyncResult,
                    files: dict[str, list[str]] | None) -> None:
        """rclone over these users until each has succeeded, failed or
        stalled: sync (files None) or incremental copies of `files`."""
        users = result.users
        queue: list[list[LocalUser]] = [batch] if batch else []
        if not queue and extra:
            queue = [[]]
        while queue:
            batch = queue.pop(0)
            run = await self._run_batch(batch, extra, self.budget, files)
            names = [u.name for u in batch] + sorted(extra)
            if files is None:
                result.checks += run.collector.compared()
            for name, counts in run.collector.users.items():
                for key in ("files_transferred", "bytes_transferred", "files_deleted"):
                    users[name][key] += counts[key]
            if self.budget is not None and files is None:
                self.budget = max(0, self.budget - sum(c["files_deleted"] for c in run.collector.users.values()))
            if run.returncode == 0 and not run.stalled:
                for name in names:
                    users[name]["status"] = "succeeded"
                    result.confirmed[name] = run.collector.confirmed.get(name, {})
                    # an incremental copy compares each file it names with
                    # the server's (rclone's own counter there depends on
                    # what was found and moved into versions/)
                    result.checks += len(files[name]) if files is not None else 0
                extra = set()  # mirrored
                continue
            if run.silent_server is not None:
                cls = rclone.FailureClass(run.silent_server.split(":", 1)[0])
                self._fail(users, names + [u.name for b in queue for u in b], run.silent_server)
                result.error, result.failure_class = run.silent_server, cls
                break
            if run.collector.refused_deletes:
                result.refused_deletes += run.collector.refused_deletes
                over = run.collector.refused_users
                rest = [u for u in batch if u.name not in over]
                if over and rest and self.budget:  # one user's mass deletion; the others still get the rest of the budget
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

    async def _delete(self, names: list[str], changes: dict[str, Changes], result: SyncResult) -> None:
        """One server-side run for the incremental users' deletions, within
        what is left of the delete guard's budget (deletions beyond it are
        refused, that user fails, and its next sync is a full one)."""
        users = result.users
        lists: dict[str, list[str]] = {}
        for name in names:
            paths = changes[name].delete
            allowed = paths if self.budget is None else paths[:self.budget]
            if self.budget is not None:
                self.budget -= len(allowed)
            if len(allowed) < len(paths):
                result.refused_deletes += len(paths) - len(allowed)
                users[name].update(status="failed", error="the delete guard refused some of its deletions")
            lists[name] = allowed
        todo = {n: p for n, p in lists.items() if p}
        if not todo:
            return
        self.runs += 1
        listed = self.work_dir / f"job-{self.job_id}.{self.runs}.delete"
        collector = StatsCollector(sorted(todo), self.settings.dry_run, moves_delete=True)
        try:
            listed.write_bytes(files_from(todo))
            task = asyncio.ensure_future(rclone.run(
                self.binary, delete_args(self.settings.remote_path, listed, self.settings.dry_run,
                                         self.settings.versions_folder) + list(self.settings.link_args), self.dest_env,
                on_record=self._recorder(collector), keep_records=False))
            stalled, silent = await self._watch(task, collector)
        finally:
            listed.unlink(missing_ok=True)
        for name, counts in collector.users.items():
            users[name]["files_deleted"] += counts["files_deleted"]
        returncode = -1 if stalled or silent else task.result().returncode
        if returncode == 0:
            result.deleted.update(todo)
            return
        failed = {n for n in collector.user_errors if n in todo}
        cls = rclone.classify(collector.general_errors) if silent is None else rclone.FailureClass(silent.split(":", 1)[0])
        if silent is not None or stalled or cls in DESTINATION_CLASSES or not failed:
            message = silent or (f"no progress for {self.settings.stall_timeout_s:g} s while moving deleted files"
                                 if stalled else rclone.failure_message(cls, collector.errors,
                                                                        f"rclone exited with status {returncode}"))
            failed = set(todo)
            if cls in DESTINATION_CLASSES:
                result.error, result.failure_class = message, cls
        else:
            message = ""
        for name in failed:
            users[name].update(status="failed", error=collector.user_errors.get(name) or message)
        result.deleted.update({n: p for n, p in todo.items() if n not in failed})

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

    async def _run_batch(self, batch: list[LocalUser], emptied: set[str], budget: int | None,
                         files: dict[str, list[str]] | None = None) -> _Run:
        """One rclone over the batch's users (and the trees mirrored as
        empty, which need no reader): a sync, or with `files` an
        incremental copy of the batch users' files named there."""
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
            if files is None:
                filter_file.write_text(include_rules(synced, {u.name: u.scan.mounts for u in batch if u.scan}))
            else:
                filter_file.write_bytes(files_from({u.name: files[u.name] for u in batch}))
            empty_dir.mkdir(mode=0o700, exist_ok=True)
            env = {**self.dest_env,
                   **source_env(batch, [self.attach.ssh_command(g) for g in grants], reads_chunk=self.reads_chunk,
                                emptied=emptied, empty_dir=empty_dir)}
            args = sync_args(self.settings.remote_path, filter_file if files is None else None, self.settings.dry_run,
                             max_delete=budget, versions=self.settings.versions_folder,
                             files_from=filter_file if files is not None else None) + list(self.settings.link_args)
            if self.runs > 1:
                self.log.note("sync run again for the users not yet done", users=",".join(sorted(synced)))
            task = asyncio.ensure_future(rclone.run(self.binary, args, env, on_record=self._recorder(collector),
                                                    keep_records=False))
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

    def _recorder(self, collector: StatsCollector) -> Callable[[dict[str, Any]], None]:
        """What happens to each rclone record: into the job log (debug
        records, asked for only for rclone's per-file confirmations, stay
        out of it), the run's counts and the job's progress."""
        def on_record(record: dict[str, Any]) -> None:
            if record.get("level") == "error" and _PLAIN_DEBUG.match(str(record.get("msg", ""))):
                record["level"] = "debug"  # printed before rclone switches to JSON logs: not an error
            if record.get("level") != "debug":
                self.log.write(record)
            progress = collector.feed(record)
            if progress is not None:
                self.report(progress)
        return on_record

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
