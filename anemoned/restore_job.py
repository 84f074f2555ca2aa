"""The `restore` job: copy a user's remote files into the target, written
with the rights of whoever owns the place (restore.check_target).

A place of the user's is written by an sftp-server running as that user
(attach.py), so a symbolic link planted in it leads nowhere the user could
not write anyway. A place nobody owns gets a fresh 0700 directory of the
daemon's, written through rclone's local backend. The target is checked
again when the job starts: it may have changed since the request.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from . import rclone
from .attach import Grant
from .jobrunner import JobContext, JobRun, run_job
from .jobs import JobOutcome, JobState
from .errors import AnemoneError
from .rclone_stats import StatsCollector
from .restore import check_subpath, check_target, remote_source, restorer_identity

OUT_REMOTE = "out"


def copy_args(source: str, target: str) -> list[str]:
    return ["copy", source, target, *rclone.global_args("INFO"),
            "--stats", "1s", "--stats-log-level", "NOTICE", "--retries", "2", "--low-level-retries", "3",
            "--create-empty-src-dirs"]


async def run(ctx: JobContext) -> JobOutcome:
    return await run_job(ctx, _restore)


async def _restore(run: JobRun) -> JobOutcome:
    ctx, options = run.ctx, run.options
    daemon_uid = os.getuid()
    owner = await asyncio.to_thread(restorer_identity, ctx.config.users_dir, options["user"], daemon_uid)
    try:
        target = await asyncio.to_thread(check_target, options["to"], bool(options.get("overwrite")), owner,
                                         ctx.config.users_dir / options["user"], ctx.config.restore_dir)
    except AnemoneError as err:
        return JobOutcome(JobState.FAILED, err.message)
    source = remote_source(run.dest.remote_path, options["user"], check_subpath(options.get("path") or ""),
                           options.get("version"))
    grant: Grant | None = None
    if target.identity is not None:
        grant = ctx.attach.grant(target.identity, target.path.parent if not target.exists else target.path,
                                 writable=True)
        out_env = rclone.option_env(OUT_REMOTE, {
            "type": "sftp", "ssh": ctx.attach.ssh_command(grant), "shell_type": "none", "disable_hashcheck": "true",
            "md5sum_command": "none", "sha1sum_command": "none", "known_hosts_file": "none", "encoding": "Slash"})
    else:
        if not target.exists:
            await asyncio.to_thread(os.mkdir, target.path, 0o700)
        out_env = rclone.option_env(OUT_REMOTE, {"type": "local"})
    collector = StatsCollector([], dry_run=False)
    started = time.monotonic()

    def on_record(record: dict[str, Any]) -> None:
        run.log.write(record)
        progress = collector.feed(record)
        if progress is not None:
            ctx.report(progress)

    try:
        result = await rclone.run(ctx.binary, copy_args(source, f"{OUT_REMOTE}:{target.path}"), {**run.env, **out_env},
                                  on_record=on_record, keep_records=False)
    finally:
        if grant is not None:
            ctx.attach.revoke(grant)
    stats = {"files_transferred": int(collector.final.get("transfers") or 0),
             "bytes_transferred": int(collector.final.get("bytes") or 0), "files_deleted": 0,
             "checks": int(collector.final.get("checks") or 0), "errors": len(collector.errors),
             "duration_s": round(time.monotonic() - started, 3),
             "target": str(target.path), "source": source.split(":", 1)[1],
             "written_as": target.identity.account if target.identity else "the daemon"}
    if result.ok:
        return JobOutcome(JobState.SUCCEEDED, None, stats)
    error = rclone.failure_message(rclone.classify(collector.errors), collector.errors,
                                   f"rclone exited with status {result.returncode}")
    return JobOutcome(JobState.FAILED, error, stats)
