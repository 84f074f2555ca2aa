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

On a link, round trips bound a sync, and one rclone's connections carry
only so many at once: the users are split into up to `processes` shares
(balanced by files), one rclone each, started in waves `stagger_s` apart
so that at most 10 SSH handshakes are in flight at once (OpenSSH's
default MaxStartups). The delete guard's budget is split between them; a
share whose part of it ran out is run again after the others, with what
they left. The directories they share are made once, first.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from . import rclone
from .attach import AttachServer, Grant
from .joblog import JobLog
from .rclone_stats import StatsCollector, new_user_stats
from .remote_index import Changes
from .sync_argv import delete_args, files_from, include_rules, source_env, sync_args
from .sync_outcome import SyncResult, SyncSettings, fail_pending
from .run_watch import watch
from .sync_blame import DESTINATION_CLASSES, attribute_start_failures, destination_class
from .sync_shares import (SHARE_FILES_PER_TRANSFER, Budget, drop_unused_folder, go_threads, halves, make_shared_dirs,
                          plan_shares, share_count, total_progress, user_weight)
from .users import LocalUser, SyncPlan

#: What rclone prints at DEBUG level before its JSON logging starts.
_PLAIN_DEBUG = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d DEBUG : ")


@dataclass
class _Run:
    collector: StatsCollector
    returncode: int
    stalled: bool
    #: the server stopped answering mid-run ("class: message"), if it did
    silent_server: str | None = None


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
    #: rclone runs at once (each for its share of the users)
    processes: int = 1
    #: between starting them (their SSH handshakes one after another)
    stagger_s: float = 0.0
    #: SSH connections one run may open (its connections, transfers + checkers)
    run_connections: int = 10
    #: files one run uploads at once
    transfers: int = 8
    #: a run's seconds per file on a link (0: unknown; shares then start alike)
    seconds_per_file: float = 0.0
    runs: int = field(default=0, init=False)
    #: deletions the delete guard still allows in this job
    budget: Budget = field(default_factory=lambda: Budget(None), init=False)
    #: run number -> its latest progress (a job's progress is their sum)
    progress: dict[int, dict[str, Any]] = field(default_factory=dict, init=False)
    #: some run moved a file into the versions folder
    moved: bool = field(default=False, init=False)
    #: the directories runs at once share were made (once per job)
    shared_dirs: bool = field(default=False, init=False)
    #: what the runs going on at once add to rclone's environment
    run_env: dict[str, str] = field(default_factory=dict, init=False)

    async def run(self, plan: SyncPlan, changes: dict[str, Changes] | None = None) -> SyncResult:
        """Full syncs for the included users, except those in `changes`:
        their incremental copies first, then, for those whose copies all
        succeeded, their deletions (as rclone sync: none after an error)."""
        changes = changes or {}
        users = {u.name: new_user_stats() for u in plan.included}
        extra = plan.synced - set(users)  # allowed to become empty: mirrored by the first run
        users.update({name: new_user_stats() for name in extra})
        result = SyncResult(True, None, users)
        self.budget = Budget(self.settings.max_delete)
        full = [u for u in plan.included if u.name not in changes]
        if full or extra:
            await self._shared(full, extra, result, None)
        incremental = [u for u in plan.included if u.name in changes]
        copying = [u for u in incremental if changes[u.name].copy]
        if copying and result.failure_class is None:
            await self._shared(copying, set(), result, {u.name: changes[u.name].copy for u in copying})
        for u in incremental:
            if not changes[u.name].copy and users[u.name]["status"] == "pending" and result.failure_class is None:
                users[u.name]["status"] = "succeeded"
                result.confirmed[u.name] = {}
        deleting = [u.name for u in incremental if changes[u.name].delete and users[u.name]["status"] == "succeeded"]
        if deleting:
            await self._delete(deleting, changes, result)
        if self.shared_dirs and not self.moved and result.failure_class is None:  # not to a failing server
            await drop_unused_folder(self.binary, self.dest_env, self.settings.remote_path,
                                     self.settings.versions_folder)
        fail_pending(users, sorted(users), result.error or "not synced: the job stopped before its turn")
        result.ok = all(u["status"] == "succeeded" for u in users.values()) and not result.refused_deletes
        return result

    async def _shared(self, users: list[LocalUser], extra: set[str], result: SyncResult,
                      files: dict[str, list[str]] | None) -> None:
        """_runs over up to `processes` shares of the users at once, each
        with its part of the delete guard's budget; the users of a share
        whose part ran out run again afterwards with what all shares left
        (so the job never deletes more than the budget, and a share's small
        part never refuses what the whole budget allows)."""
        def weight(u: LocalUser) -> int:
            return user_weight(u, files[u.name] if files is not None else None)
        parts = share_count(sum(weight(u) for u in users), self.processes, self.transfers)
        planned = plan_shares(users, parts, weight, self.run_connections, self.stagger_s, self.seconds_per_file,
                              SHARE_FILES_PER_TRANSFER * self.transfers)
        if len(planned) <= 1:
            await self._runs(users, extra, result, files, self.budget)
            return
        if not self.shared_dirs and not self.settings.dry_run:
            failed = await make_shared_dirs(self.binary, self.dest_env, self.settings.remote_path,
                                            self.settings.versions_folder, self.log)
            if failed is not None:  # the server went away since the preflight: no run would get further
                result.failure_class, result.error = failed
                return
            self.shared_dirs = True
        budgets = self.budget.split(len(planned))
        self.log.note("users shared between rclone runs at once", runs=len(planned), starts_s=[s for s, _ in planned],
                      files=[sum(weight(u) for u in share) for _, share in planned], budget=self.budget.left)
        again: tuple[list[LocalUser], set[str]] = ([], set())  # set aside by the delete guard

        async def share(i: int, start: float, batch: list[LocalUser]) -> None:
            await asyncio.sleep(start)
            await self._runs(batch, extra if i == 0 else set(), result, files, budgets[i], again)

        self.run_env = go_threads(len(planned), len(os.sched_getaffinity(0)))
        try:  # one share's error stops the others' runs (their rclone too)
            async with asyncio.TaskGroup() as group:
                for i, (start, batch) in enumerate(planned):
                    group.create_task(share(i, start, batch))
        except ExceptionGroup as errors:  # the job fails as it would with one run
            raise errors.exceptions[0] from None
        finally:
            self.run_env = {}
        self.budget = Budget(None if self.budget.left is None else sum(b.left or 0 for b in budgets))
        if again[0] or again[1]:
            self.log.note("sync run again with the rest of the delete guard's budget",
                          users=",".join(sorted({u.name for u in again[0]} | again[1])), budget=self.budget.left)
            await self._runs(sorted(again[0], key=lambda u: u.name), again[1], result, files, self.budget)

    async def _runs(self, batch: list[LocalUser], extra: set[str], result: SyncResult,
                    files: dict[str, list[str]] | None, budget: Budget,
                    again: tuple[list[LocalUser], set[str]] | None = None) -> None:
        """rclone over these users until each has succeeded, failed or
        stalled: sync (files None) or incremental copies of `files`. With
        `again`, a run the delete guard stopped is set aside there instead
        (its users' share of the budget ran out, not the job's)."""
        users = result.users
        queue: list[list[LocalUser]] = [batch] if batch else []
        if not queue and extra:
            queue = [[]]
        retried = False
        while queue:
            if result.failure_class is not None:  # another share found the destination failing
                break
            batch = queue.pop(0)
            run = await self._run_batch(batch, extra, budget.left, files, retry=retried)
            retried = True
            names = [u.name for u in batch] + sorted(extra)
            if files is None:
                result.checks += run.collector.compared()
            for name, counts in run.collector.users.items():
                for key in ("files_transferred", "bytes_transferred", "files_deleted"):
                    users[name][key] += counts[key]
            if files is None:
                budget.spend(sum(c["files_deleted"] for c in run.collector.users.values()))
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
                fail_pending(users, names + [u.name for b in queue for u in b], run.silent_server)
                result.error, result.failure_class = run.silent_server, cls
                break
            if run.collector.refused_deletes and again is not None:
                again[0].extend(batch)
                again[1].update(extra)
                extra = set()
                continue
            if run.collector.refused_deletes:
                result.refused_deletes += run.collector.refused_deletes
                over = run.collector.refused_users
                rest = [u for u in batch if u.name not in over]
                if over and rest and budget.left:  # one user's mass deletion; the others still get the rest of the budget
                    for name in over:
                        users[name].update(status="failed", error="the delete guard refused some of its deletions")
                    extra -= over
                    queue.insert(0, rest)
                    continue
                fail_pending(users, names + [u.name for b in queue for u in b], "the delete guard stopped the sync")
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
            attribute_start_failures(run.collector, batch)
            failed = {n for n in run.collector.user_errors if n in users}
            cls = destination_class(run.collector, {u.name for u in batch})
            if cls is not None or (not failed and len(batch) <= 1):
                message = rclone.failure_message(cls, run.collector.errors, f"rclone exited with status {run.returncode}")
                fail_pending(users, names + [u.name for b in queue for u in b], message)
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
        fail_pending(users, sorted(extra), "not mirrored: every run that included it failed")

    async def _delete(self, names: list[str], changes: dict[str, Changes], result: SyncResult) -> None:
        """One server-side run for the incremental users' deletions, within
        what is left of the delete guard's budget (deletions beyond it are
        refused, that user fails, and its next sync is a full one)."""
        users = result.users
        lists: dict[str, list[str]] = {}
        for name in names:
            paths = changes[name].delete
            allowed = paths if self.budget.left is None else paths[:self.budget.left]
            self.budget.spend(len(allowed))
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
            stalled, silent = await watch(task, collector, self.settings.stall_timeout_s, self.probe)
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

    async def _run_batch(self, batch: list[LocalUser], emptied: set[str], budget: int | None,
                         files: dict[str, list[str]] | None = None, retry: bool = False) -> _Run:
        """One rclone over the batch's users (and the trees mirrored as
        empty, which need no reader): a sync, or with `files` an
        incremental copy of the batch users' files named there."""
        self.runs += 1
        run_no = self.runs
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
            env = {**self.dest_env, **self.run_env,
                   **source_env(batch, [self.attach.ssh_command(g) for g in grants], reads_chunk=self.reads_chunk,
                                emptied=emptied, empty_dir=empty_dir)}
            args = sync_args(self.settings.remote_path, filter_file if files is None else None, self.settings.dry_run,
                             max_delete=budget, versions=self.settings.versions_folder,
                             files_from=filter_file if files is not None else None) + list(self.settings.link_args)
            if retry:
                self.log.note("sync run again for the users not yet done", users=",".join(sorted(synced)))
            task = asyncio.ensure_future(rclone.run(self.binary, args, env, on_record=self._recorder(collector),
                                                    keep_records=False, settle_early=True))
            stalled, silent = await watch(task, collector, self.settings.stall_timeout_s, self.probe)
            if silent is not None:
                self.log.note("stopped: the server stopped answering", error=silent)
                return _Run(collector, -1, False, silent)
            if stalled:
                self.log.note("stopped: no progress", stall_timeout_s=self.settings.stall_timeout_s,
                              users=",".join(sorted(collector.transferring_users())))
                return _Run(collector, -1, True)
            return _Run(collector, task.result().returncode, False)
        finally:
            self._over(run_no)
            for g in grants:
                self.attach.revoke(g)
            filter_file.unlink(missing_ok=True)
            try:
                empty_dir.rmdir()
            except OSError:
                pass

    def _over(self, run_no: int) -> None:
        """An ended run keeps its counts in the job's progress, not its speed."""
        if run_no in self.progress:
            self.progress[run_no] = {**self.progress[run_no], "speed": 0, "eta_s": None}

    def _recorder(self, collector: StatsCollector) -> Callable[[dict[str, Any]], None]:
        """What happens to each rclone record: into the job log (debug
        records, asked for only for rclone's per-file confirmations, stay
        out of it), the run's counts and the job's progress (the sum of
        every run's so far: runs may go on at once)."""
        run_no = self.runs

        def on_record(record: dict[str, Any]) -> None:
            if record.get("level") == "error" and _PLAIN_DEBUG.match(str(record.get("msg", ""))):
                record["level"] = "debug"  # printed before rclone switches to JSON logs: not an error
            if record.get("level") != "debug":
                self.log.write(record)
            if str(record.get("msg", "")).startswith("Moved"):  # (server-side), into backup dir
                self.moved = True
            progress = collector.feed(record)
            if progress is not None:
                self.progress[run_no] = progress
                self.report(total_progress(self.progress.values(), progress))
        return on_record
