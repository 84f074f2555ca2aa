"""The `sync` job: policy around one run of sync.run_sync.

Decides the job's settings from the destination (delete limit, versions
folder, what is remembered of the remote), runs it, turns the result into
the job's outcome with an operator-facing error, and afterwards removes
version folders past keep_versions_days (at most once a day; the first
time a day after the destination's first successful sync, since nothing a
first sync makes can be old yet, and listing versions/ costs a connection).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from . import access, rclone, reach
from .config import Config
from .destinations import Destination
from .jobs import JobOutcome, JobState
from .logs import event
from .protocol import RpcError
from .restore import list_versions
from .store import Store
from .sync import (JobLog, SyncSettings, delete_limit, parse_version_folder, remembered_remote_users, run_sync,
                   version_folder)
from .timeutil import iso, utc_now

PRUNE_EVERY = timedelta(days=1)


def settings_for(dest: Destination, job: dict[str, Any], last_success_stats: dict[str, Any] | None,
                 now: datetime) -> SyncSettings:
    """The settings of a sync job. Pure."""
    options = job.get("options") or {}
    known = remembered_remote_users(last_success_stats, dest.remote_path)
    remote_files = None
    if known is not None and last_success_stats:
        remote_files = int(last_success_stats.get("remote_files", int(last_success_stats.get("checks", 0))
                                                   + int(last_success_stats.get("files_transferred", 0))))
    limit = None if options.get("allow_deletes") else delete_limit(dest.max_delete, dest.max_delete_percent, remote_files)
    return SyncSettings(
        remote_path=dest.remote_path,
        dry_run=bool(job["dry_run"]),
        max_delete=limit,
        versions_folder=version_folder(now) if dest.keep_versions_days > 0 else None,
        allow_empty=frozenset(options.get("allow_empty") or ()),
        known_remote_users=frozenset(known or ()),
    )


def guard_message(dest: Destination, settings: SyncSettings, refused: int, deleted: int) -> str:
    kept = f" (moved to versions/{settings.versions_folder}/)" if settings.versions_folder else ""
    return (f"delete guard: {refused} deletion(s) refused, {deleted} made{kept}; the limit for this sync was "
            f"{settings.max_delete} (max_delete {dest.max_delete}, max_delete_percent {dest.max_delete_percent}% "
            f"of the remote files). If the deletions are intended, run: anemonectl sync {dest.name!r} --allow-deletes "
            f"(or raise the limits with anemonectl dest edit)")


async def run_sync_job(config: Config, store: Store, binary: str, job: dict[str, Any],
                       report: Callable[[dict[str, Any]], None], log_path: Path) -> JobOutcome:
    row = store.destination_row(job["destination"])
    if row is None:
        return JobOutcome(JobState.FAILED, "the destination no longer exists")
    dest = Destination.from_row(row)
    last = store.last_real_success_row(dest.name, "sync")
    settings = settings_for(dest, job, last["stats"] if last else None, utc_now())
    log = JobLog(log_path)
    try:
        try:  # a dead or silent server fails the job in seconds (reach.py)
            await reach.preflight(dest.host, dest.port)
        except reach.Unanswered as err:
            log.note("server did not answer; rclone was not started", error=err.error)
            return JobOutcome(JobState.FAILED, err.error)
        env = await access.dest_env(config, binary, dest, uploads=True)
        watchdog = reach.Watchdog(dest.host, dest.port)  # a server that dies mid-job: reach.py

        def progress(p: dict[str, Any]) -> None:
            watchdog.observe(p)
            report(p)
        try:
            result = await watchdog.run(run_sync(binary=binary, dest_env=env, users_dir=config.users_dir,
                                                 work_dir=config.tmp_dir, job_id=job["id"], settings=settings,
                                                 log=log, report=progress))
        except reach.Unanswered as err:
            log.note("server stopped answering; rclone was stopped", error=err.error)
            return JobOutcome(JobState.FAILED, err.error)
        if result.ok and not settings.dry_run and dest.keep_versions_days > 0:
            await prune_versions(binary, env, store, dest, log)
    finally:
        log.close()
    for user, u in result.stats.get("users", {}).items():
        if u.get("warning"):
            event(logging.WARNING, "user skipped", job=job["id"], dest=dest.name, user=user, reason=u["warning"])
    if result.refused_deletes:
        error = guard_message(dest, settings, result.refused_deletes, result.stats["files_deleted"])
        event(logging.ERROR, "delete guard stopped a sync", job=job["id"], dest=dest.name,
              refused=result.refused_deletes, limit=settings.max_delete)
        return JobOutcome(JobState.FAILED, error, result.stats)
    return JobOutcome(JobState.SUCCEEDED if result.ok else JobState.FAILED, result.error, result.stats)


async def prune_versions(binary: str, env: dict[str, str], store: Store, dest: Destination, log: JobLog) -> None:
    """Remove version folders older than keep_versions_days, at most once a
    day; a failure here is logged and does not fail the sync."""
    now = utc_now()
    if dest.versions_pruned_at is None:  # first success: start the daily clock
        store.update_destination(dest.name, {"versions_pruned_at": iso(now)})
        return
    if now - datetime.fromisoformat(dest.versions_pruned_at) < PRUNE_EVERY:
        return
    try:
        folders = await list_versions(binary, env, dest.remote_path, on_record=log.write)
    except RpcError:
        event(logging.WARNING, "could not list old versions", dest=dest.name)
        return
    cutoff = now - timedelta(days=dest.keep_versions_days)
    for folder in folders:  # only folders we named
        stamp = parse_version_folder(folder)
        if stamp is None or stamp >= cutoff:
            continue
        purged = await rclone.run(binary, ["purge", rclone.dest_path(dest.remote_path, "versions", folder),
                                           *rclone.global_args("NOTICE")], env, on_record=log.write, timeout_s=3600)
        event(logging.INFO if purged.ok else logging.WARNING, "old versions removed" if purged.ok else
              "could not remove old versions", dest=dest.name, folder=folder)
    store.update_destination(dest.name, {"versions_pruned_at": iso(now)})
