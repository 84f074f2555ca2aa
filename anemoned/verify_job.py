"""The `verify` job: is what is on the server the same as the local source?

Every file is compared by md5: computed locally by an rclone running as
the tree's owner (so it reads nothing its owner could not), and on the
server by md5sum over SSH, or, where the server cannot hash or the
operator asks for it (`verify --download`), by downloading the file. This
is the end-to-end content check that a fast sync (sizes and modification
times only) leaves to a separate job. Per user it reports the files
missing on the server, extra on the server and differing; the job fails if
any is missing, differs, or could not be compared.
"""
from __future__ import annotations

import asyncio
import os
import time

from . import rclone
from .jobrunner import JobContext, JobRun, run_job
from .jobs import JobOutcome, JobState
from .users import discover, scan_all
from .verify import compare, local_sums, no_hash, remote_sums, summarise


async def run(ctx: JobContext) -> JobOutcome:
    return await run_job(ctx, _verify, hashcheck=True)


async def _verify(run: JobRun) -> JobOutcome:
    ctx, log = run.ctx, run.log
    started = time.monotonic()
    only_user = run.options.get("user")
    found, _ = await asyncio.to_thread(discover, ctx.config.users_dir, os.getuid())
    users_dev = (await asyncio.to_thread(os.stat, ctx.config.users_dir)).st_dev
    found = await scan_all([u for u in found if only_user is None or u.name == only_user], users_dev,
                           float(run.dest.stall_timeout))
    users = [u for u in found if u.problem is None]
    if not users:
        return JobOutcome(JobState.FAILED, f"no local backup/ tree to verify{' for ' + only_user if only_user else ''}", {})
    local: dict[str, str] = {}
    local_errors: dict[str, list[str]] = {}
    hashing_stalled: dict[str, str] = {}
    for user in users:
        try:
            sums, errors = await local_sums(ctx.binary, user, float(run.dest.stall_timeout))
        except asyncio.TimeoutError:  # one user's stopped hashing costs that user only, like a stopped scan
            hashing_stalled[user.name] = f"hashing the local files got no answer within {run.dest.stall_timeout} s"
            continue
        local.update(sums)
        if errors:
            local_errors[user.name] = errors
    download = bool(run.options.get("download")) or run.dest.verify_download
    remote, result = await remote_sums(ctx.binary, run.env, run.dest.remote_path, [u.name for u in users],
                                       ctx.config.tmp_dir, ctx.job.id, download, None if not download else log)
    if not download:  # the first try's records: its errors are no failure when the server cannot hash
        for record in result.records:
            log.write(record if not no_hash(result) else {**record, "level": "notice"})
    if not result.ok and not download and no_hash(result):
        log.note("the server cannot hash: comparing by downloading")
        download = True  # the server cannot hash: compare by downloading
        remote, result = await remote_sums(ctx.binary, run.env, run.dest.remote_path, [u.name for u in users],
                                           ctx.config.tmp_dir, ctx.job.id, download, log)
    if not result.ok:
        messages = rclone.messages_of(result)
        return JobOutcome(JobState.FAILED, rclone.failure_message(rclone.classify(messages), messages,
                                                                  "rclone md5sum failed"),
                          {"method": None, "duration_s": round(time.monotonic() - started, 3)})
    remote = {path: digest for path, digest in remote.items() if path.split("/", 1)[0] not in hashing_stalled}
    summary = summarise(compare(local, remote), [u.name for u in users if u.name not in hashing_stalled])
    for name, errors in local_errors.items():
        summary["users"][name]["errors"] += len(errors)
        summary["users"][name]["status"] = "failed"
        summary["totals"]["error"] += len(errors)
    t = summary["totals"]
    stats = {"files_transferred": 0, "bytes_transferred": 0, "files_deleted": 0,
             "checks": t["same"] + t["differ"], "errors": t["error"], "duration_s": round(time.monotonic() - started, 3),
             "method": "download" if download else "md5", "missing": t["missing"], "extra": t["extra"],
             "differ": t["differ"], "users": summary["users"]}
    problems = []
    if t["differ"]:
        names = [f for u in summary["users"].values() for f in u["differing_files"]]
        problems.append(f"{t['differ']} file(s) differ: {', '.join(names[:5])}")
    if t["missing"]:
        names = [f for u in summary["users"].values() for f in u["missing_files"]]
        problems.append(f"{t['missing']} file(s) missing on the server: {', '.join(names[:5])}")
    if t["error"]:
        problems.append(f"{t['error']} file(s) could not be compared")
    for user in found:  # not verified, said so, as a sync says it skipped them
        if user.problem is not None and not user.stalled:
            stats["users"][user.name] = {"status": "skipped", "warning": user.problem}
            log.note("user skipped", user=user.name, reason=user.problem)
    stalled = {**{u.name: u.problem or "" for u in found if u.stalled}, **hashing_stalled}
    for name, why in stalled.items():  # not verified, said so
        stats["users"][name] = {"status": "stalled", "error": why}
        problems.append(f"{name}: {why}")
    if problems:
        return JobOutcome(JobState.FAILED, "; ".join(problems), stats)
    return JobOutcome(JobState.SUCCEEDED, None, stats)
