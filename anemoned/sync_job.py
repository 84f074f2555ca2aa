"""The `sync` job: policy around the sync engine.

Gathers the local facts (each tree scanned as its user), decides which
users need rclone (changed since their last success, or due a full sync),
the delete limit and the versions folder, runs the engine, records per
user what the sync left (so an unchanged tree costs nothing next time),
and turns it all into the job's outcome. Afterwards it removes version
folders past keep_versions_days (at most once a day; the first time a day
after the destination's first successful sync, since nothing a first sync
makes can be old yet, and listing versions/ costs a connection).

A job where some users failed (or stalled) and the others were backed up
is `failed`, with an error naming the users; every user's own status is
in the stats (succeeded, unchanged, failed, stalled, skipped).
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from . import rclone, reach, usage
from .destinations import Destination
from .jobrunner import JobContext, JobRun, run_job
from .joblog import JobLog
from .jobs import JobOutcome, JobState
from .link_options import LAN_PROCESSES, MAX_PROCESSES, LinkOptions, is_link, stagger
from .logs import event
from .errors import AnemoneError, InvalidField
from .rclone_stats import new_user_stats
from .restore import list_versions
from .sync import Engine
from .sync_shares import REQUESTS_PER_FILE, share_count, user_weight
from .sync_outcome import SyncResult, SyncSettings
from .timeutil import iso, utc_now
from .remote_index import Changes, Entries, IndexDb, confirmed_entries, diff
from .users import SyncPlan, UserState, discover, full_due, make_plan, scan_all
from .usertree import Listing, listing
from .versions import delete_limit, next_folder, parse_version_folder

PRUNE_EVERY = timedelta(days=1)
#: Users named in a job's error; the rest are counted.
NAMED_IN_ERROR = 5


def guard_message(dest: Destination, settings: SyncSettings, refused: int, deleted: int) -> str:
    kept = f" (moved to versions/{settings.versions_folder}/)" if settings.versions_folder else ""
    return (f"delete guard: {refused} deletion(s) refused, {deleted} made{kept}; the limit for this sync was "
            f"{settings.max_delete} (max_delete {dest.max_delete}, max_delete_percent {dest.max_delete_percent}% "
            f"of the remote files). If the deletions are intended, run: anemonectl sync {dest.name!r} --allow-deletes "
            f"(or raise the limits with anemonectl dest edit)")


def users_error(users: dict[str, dict[str, Any]]) -> str | None:
    """`2 of 5 users not backed up: alice (...); bob (...)`, or None."""
    bad = [(n, u) for n, u in sorted(users.items()) if u["status"] in ("failed", "stalled")]
    if not bad:
        return None
    tried = sum(1 for u in users.values() if u["status"] in ("succeeded", "failed", "stalled"))
    named = "; ".join(f"{n} {u['status']}: {u.get('error') or ''}".rstrip(": ")[:300] for n, u in bad[:NAMED_IN_ERROR])
    more = f"; and {len(bad) - NAMED_IN_ERROR} more" if len(bad) > NAMED_IN_ERROR else ""
    return f"{len(bad)} of {tried} users not backed up: {named}{more}"


async def run(ctx: JobContext) -> JobOutcome:
    return await run_job(ctx, _sync, uploads=True)


async def _sync(run: JobRun) -> JobOutcome:
    ctx, dest, log = run.ctx, run.dest, run.log
    config, store, job = ctx.config, ctx.store, ctx.job
    now = utc_now()
    place = location(dest)
    states = {name: UserState(r["remote_path"], r["fingerprint"], r["files"], r["full_at"])
              for name, r in store.user_states(dest.name).items()}
    here = {n: s for n, s in states.items() if s.remote_path == place}
    remote_files = sum(s.files for s in here.values()) if here else None
    options = run.options
    try:
        link = LinkOptions.of(dest.link)
    except InvalidField as err:  # a stored value that no longer validates (a hand-edited database)
        return JobOutcome(JobState.FAILED, err.message)
    settings = SyncSettings(
        remote_path=dest.remote_path, dry_run=job.dry_run,
        max_delete=None if options.get("allow_deletes") else delete_limit(dest.max_delete, dest.max_delete_percent,
                                                                           remote_files),
        versions_folder=next_folder(now, (store.last_finished_job_row(dest.name, "sync") or {}).get("stats"))
        if dest.keep_versions_days > 0 else None,
        allow_empty=frozenset(options.get("allow_empty") or ()), stall_timeout_s=float(dest.stall_timeout),
        link_args=tuple(link.sync_args()))
    started = asyncio.get_running_loop().time()
    users, warnings = await asyncio.to_thread(discover, config.users_dir, os.getuid())
    try:
        users_dev = (await asyncio.to_thread(os.stat, config.users_dir)).st_dev
    except OSError:
        users_dev = -1
    users = await scan_all(users, users_dev, float(dest.stall_timeout))
    index_db = IndexDb(store.path)
    forced_full = bool(options.get("full")) or dest.full_sync_every == 0
    full_every = timedelta(days=dest.full_sync_every)
    plan = make_plan(users, warnings, here.keys(), settings.allow_empty, states, remote_path=place,
                     full=forced_full, full_every=full_every, now=now,
                     must_sync=await asyncio.to_thread(index_db.dirty_users, dest.name))
    plan.unchanged = [replace(u, scan=replace(u.scan, raw=b"")) if u.scan else u for u in plan.unchanged]
    for name, why in plan.skipped.items():
        log.note("user skipped", user=name, reason=why)
        event(logging.WARNING, "user skipped", job=job.id, dest=dest.name, user=name, reason=why)
    for warning in plan.warnings:
        log.note(warning)
    listings = {u.name: listing(u.scan) for u in plan.included if u.scan is not None}
    modes, indexes = await choose_modes(index_db, dest.name, place, plan, listings, states, forced_full, full_every,
                                        now)
    changes = {n: m for n, m in modes.items() if isinstance(m, Changes)}
    for name, mode in sorted(modes.items()):
        if isinstance(mode, Changes):
            log.note("incremental sync", user=name, copy=len(mode.copy), delete=len(mode.delete))
        else:
            log.note("full sync", user=name, reason=mode)
    log.note("plan", changed=len(plan.included), unchanged=len(plan.unchanged), skipped=len(plan.skipped),
             incremental=len(changes))
    if not settings.dry_run and plan.synced:
        await asyncio.to_thread(index_db.mark_dirty, dest.name, sorted(plan.synced), place)
    # `connections` is the destination remote's option: only the server's
    # connections are limited, not the users' local readers.
    processes, round_trip = await choose_processes(link, dest, plan, changes, log)
    engine = Engine(ctx.binary, {**run.env, **link.dest_env()}, ctx.attach, config.tmp_dir, job.id, settings, log,
                    ctx.report,
                    reads_chunk=rclone.OPENSSH_UPLOAD_CHUNK, probe=lambda: reach.preflight(dest.host, dest.port),
                    processes=processes, stagger_s=stagger(run.preflight_s, round_trip),
                    run_connections=min(link.connections, link.transfers + link.checkers), transfers=link.transfers,
                    seconds_per_file=round_trip * REQUESTS_PER_FILE / link.transfers if is_link(round_trip) else 0.0)
    result = await engine.run(plan, changes) if plan.synced else SyncResult(True, None, {})
    if plan.stalled:  # scanned too slowly to be backed up: a failure for those users
        result.ok = False
        result.users.update({n: {**new_user_stats("stalled"), "error": why} for n, why in plan.stalled.items()})
    stats = job_stats(plan, result, asyncio.get_running_loop().time() - started, settings)
    stats["sync_modes"] = {n: "incremental" if isinstance(m, Changes) else f"full: {m}" for n, m in modes.items()}
    if not settings.dry_run:
        await record(store, index_db, dest.name, place, plan, result, listings, indexes, now, modes, states)
        if result.ok and dest.keep_versions_days > 0:
            await prune_versions(ctx.binary, run.env, store, dest, log)
    if result.refused_deletes:
        error = guard_message(dest, settings, result.refused_deletes, stats["files_deleted"])
        event(logging.ERROR, "delete guard stopped a sync", job=job.id, dest=dest.name,
              refused=result.refused_deletes, limit=settings.max_delete)
        return JobOutcome(JobState.FAILED, error, stats)
    if result.ok:
        return JobOutcome(JobState.SUCCEEDED, None, stats)
    error = result.error or users_error(result.users) or "the sync failed"
    if "SSH_FX_FAILURE" in error and await _disk_full(ctx.binary, run.env, dest.remote_path, log, plan):
        error = f"{rclone.DISK_FULL}: the server has less free space than this sync needs ({error})"
    for name, u in result.users.items():
        if u["status"] != "succeeded":
            event(logging.WARNING, f"user {u['status']}", job=job.id, dest=dest.name, user=name,
                  reason=(u.get("error") or "")[:300])
    return JobOutcome(JobState.FAILED, error, stats)


async def _disk_full(binary: str, env: dict[str, str], remote_path: str, log: Any, plan: SyncPlan) -> bool:
    """SFTP v3 reports a full disk only as a generic failure: ask the server
    how much room is left to tell the operator what happened."""
    free = (await usage.about(binary, env, remote_path, log.write)).get("free")
    needed = sum(u.scan.bytes for u in plan.included if u.scan is not None)
    return isinstance(free, (int, float)) and free < needed


def job_stats(plan: SyncPlan, result: SyncResult, duration_s: float, settings: SyncSettings) -> dict[str, Any]:
    """The job's stats (CONTRACT: job show): totals and one entry per user."""
    users: dict[str, dict[str, Any]] = {}
    for name, u in result.users.items():
        users[name] = {k: v for k, v in u.items() if k != "errors"}
    for user in plan.unchanged:
        users[user.name] = new_user_stats("unchanged")
    for name, why in plan.skipped.items():
        users[name] = new_user_stats("skipped", why)
        users[name].pop("errors")
    for name, why in plan.stalled.items():
        users[name] = {**new_user_stats("stalled"), "error": why}
    for u in users.values():
        u.pop("errors", None)
    stats: dict[str, Any] = {
        "files_transferred": sum(u["files_transferred"] for u in users.values()),
        "bytes_transferred": sum(u["bytes_transferred"] for u in users.values()),
        "files_deleted": sum(u["files_deleted"] for u in users.values()),
        "checks": result.checks,
        "errors": sum(1 for u in users.values() if u["status"] in ("failed", "stalled")),
        "duration_s": round(duration_s, 3),
        "users": users,
        "remote_path": settings.remote_path,
        "users_changed": len(plan.included), "users_unchanged": len(plan.unchanged),
    }
    if plan.warnings:
        stats["warnings"] = plan.warnings
    if not plan.synced:
        stats.setdefault("warnings", []).append(
            "no user has anything to back up" if not plan.unchanged else "nothing changed since the last sync")
    if settings.versions_folder and not settings.dry_run:
        stats["versions_folder"] = settings.versions_folder
    return stats


def location(dest: Destination) -> str:
    """Where a destination's copies are: a change of server, account or
    remote path is a new place (its users' first sync there is a full one,
    and no index of the old place is trusted there)."""
    return f"{dest.user}@{dest.host}:{dest.port}:{dest.remote_path}"


async def choose_processes(link: LinkOptions, dest: Destination, plan: SyncPlan, changes: dict[str, Changes],
                           log: JobLog) -> tuple[int, float | None]:
    """The most rclone runs this sync starts at once: the destination's
    `processes`, or with 0, by how far away the server is, timed only when
    the sync has files enough for more runs than a LAN gets (one SSH round
    trip, twice: a busy machine can slow one key exchange on a LAN); and
    that round trip, if timed."""
    if link.processes:
        return link.processes, None
    files = sum(user_weight(u, changes[u.name].copy if u.name in changes else None) for u in plan.included)
    if min(len(plan.included), share_count(files, MAX_PROCESSES, link.transfers)) <= LAN_PROCESSES:
        return LAN_PROCESSES, None  # as many runs either way
    samples: list[float | None] = []
    while len(samples) < 2 and (not samples or is_link(samples[-1])):
        try:
            samples.append(await reach.preflight_round_trip(dest.host, dest.port))
        except reach.Unanswered:  # gone since the preflight: the runs will say so
            break
    round_trip = None if not samples or None in samples else min(s for s in samples if s is not None)
    processes = link.processes_for(round_trip)
    log.note("rclone processes chosen for the server's distance", processes=processes, link=is_link(round_trip),
             round_trip_s=None if round_trip is None else round(round_trip, 4))
    return processes, round_trip


async def choose_modes(index_db: IndexDb, dest_name: str, place: str, plan: SyncPlan, listings: dict[str, Listing],
                       states: dict[str, UserState], forced_full: bool, full_every: timedelta,
                       now: datetime) -> tuple[dict[str, Changes | str], dict[str, Entries]]:
    """Per included user: the incremental sync's changes, or why it is a
    full one (forced, issue 8's rules, no usable index, names that cannot
    be listed, a file that became a directory or the other way round)."""
    modes: dict[str, Changes | str] = {}
    candidates = []
    for user in plan.included:
        why = "sync --full or full_sync_every 0" if forced_full else full_due(states.get(user.name), place, full_every,
                                                                               now)
        lst = listings.get(user.name)
        why = why or ("no scan" if lst is None else lst.unlistable)
        if why:
            modes[user.name] = why
        else:
            candidates.append(user.name)
    loaded = await asyncio.to_thread(index_db.load, dest_name, candidates, place) if candidates else {}
    for name in candidates:
        index = loaded[name]
        modes[name] = index if isinstance(index, str) else diff(listings[name].files, listings[name].dirs, index)
    return modes, {n: i for n, i in loaded.items() if isinstance(modes[n], Changes) and not isinstance(i, str)}


async def record(store: Any, index_db: IndexDb, dest_name: str, place: str, plan: SyncPlan, result: SyncResult,
                 listings: dict[str, Listing], indexes: dict[str, Entries], now: datetime,
                 modes: dict[str, Changes | str], states: dict[str, UserState]) -> None:
    """What a sync leaves for the next one: the users' states first, their
    index last, since saving it clears the dirty mark: a crash in between
    means a full sync next. The other way round, a clean index beside the
    old fingerprint made a tree put back as it was count as unchanged,
    with this sync's files left on the server."""
    save_states(store, dest_name, place, plan, result, now, modes, states)
    await asyncio.to_thread(save_index, index_db, dest_name, place, plan, result, listings, indexes)


def save_index(index_db: IndexDb, dest_name: str, place: str, plan: SyncPlan, result: SyncResult,
               listings: dict[str, Listing], indexes: dict[str, Entries]) -> None:
    """Each succeeded user's index, from rclone's confirmations (blocking:
    run in a thread). A user that did not succeed keeps the dirty mark
    set before the sync, so its next sync is a full one; a tree mirrored
    as empty, or one whose names cannot be listed, keeps no index."""
    drop = []
    for user in plan.included:
        u = result.users.get(user.name)
        lst = listings.get(user.name)
        if u is None or u["status"] != "succeeded" or user.name not in result.confirmed:
            continue
        if lst is None or lst.unlistable:
            drop.append(user.name)
            continue
        confirmed = confirmed_entries(lst.files, result.confirmed[user.name])
        if user.name in indexes:
            deleted = result.deleted.get(user.name, [])
            gone = set(deleted)
            new = {p: e for p, e in indexes[user.name].items() if p not in gone}
            new.update(confirmed)
            index_db.save(dest_name, user.name, place, new, changed=confirmed, removed=deleted)
        else:
            index_db.save(dest_name, user.name, place, confirmed)
    if result.ok:
        drop += sorted(plan.synced - {u.name for u in plan.included})
    if drop:
        index_db.drop(dest_name, drop)


def save_states(store: Any, dest_name: str, place: str, plan: SyncPlan, result: SyncResult, now: datetime,
                modes: dict[str, Changes | str], states: dict[str, UserState]) -> None:
    """What this sync left, per user: a success records the fingerprint the
    tree had when it was scanned (a change made during the sync shows at the
    next one); anything else forgets it, so the next sync lists the remote
    for that user again. Trees mirrored as empty are forgotten entirely.
    The time of the last full sync moves only with a full sync: an
    incremental one trusts the index and repairs nothing on the server, so
    a tree that changes every day must still get its full_sync_every."""
    rows = []
    for user in plan.included:
        u = result.users.get(user.name)
        if u is None or user.scan is None:
            continue
        ok = u["status"] == "succeeded"
        incremental = isinstance(modes.get(user.name), Changes) and user.name in states
        full_at = (states[user.name].full_at if incremental else iso(now)) if ok else None
        rows.append({"user": user.name, "remote_path": place, "fingerprint": user.scan.fingerprint if ok else None,
                     "files": user.scan.files, "synced_at": iso(now) if ok else None, "full_at": full_at})
    emptied = [] if not result.ok else sorted(plan.synced - {u.name for u in plan.included})
    store.save_user_states(dest_name, rows, emptied)


async def prune_versions(binary: str, env: dict[str, str], store: Any, dest: Destination, log: Any) -> None:
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
    except AnemoneError:
        event(logging.WARNING, "could not list old versions", dest=dest.name)
        return
    cutoff = now - timedelta(days=dest.keep_versions_days)
    for folder in folders:  # only folders we named
        stamp = parse_version_folder(folder)
        if stamp is None or stamp >= cutoff:
            continue
        # The sync is done and counted: a server that stops answering is
        # given up on (job_retry_args: 20 s of silence per request, three
        # tries), and the first folder that fails ends the pruning until the
        # next sync; a trickle ends at the hour. Never the job's failure.
        try:
            purged = await rclone.run(binary, ["purge", rclone.dest_path(dest.remote_path, "versions", folder),
                                               *rclone.global_args("NOTICE"), *rclone.job_retry_args()], env,
                                      on_record=log.write, timeout_s=3600)
            ok = purged.ok
        except (asyncio.TimeoutError, OSError):
            ok = False
        event(logging.INFO if ok else logging.WARNING, "old versions removed" if ok else
              "could not remove old versions", dest=dest.name, folder=folder)
        if not ok:
            return  # tried again after the next successful sync
    store.update_destination(dest.name, {"versions_pruned_at": iso(now)})
