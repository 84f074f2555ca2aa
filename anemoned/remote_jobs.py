"""The restore, verify and usage jobs: load the destination, run the
operation with the job's log, record the outcome."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Awaitable, Callable

from . import access, reach, restore, usage, verify
from .config import Config
from .destinations import Destination
from .jobs import JobOutcome, JobState
from .logs import event
from .store import Store
from .sync import JobLog

Report = Callable[[dict[str, Any]], None]
Operation = Callable[[Destination, dict[str, str], JobLog], Awaitable[tuple[bool, str | None, dict[str, Any]]]]


async def _run(config: Config, store: Store, binary: str, job: dict[str, Any], log_path: Path, operation: Operation,
               hashcheck: bool = False) -> JobOutcome:
    row = store.destination_row(job["destination"])
    if row is None:
        return JobOutcome(JobState.FAILED, "the destination no longer exists")
    dest = Destination.from_row(row)
    log = JobLog(log_path)
    try:
        try:
            await reach.preflight(dest.host, dest.port)
        except reach.Unanswered as err:
            log.note("server did not answer; rclone was not started", error=err.error)
            return JobOutcome(JobState.FAILED, err.error)
        env = await access.dest_env(config, binary, dest, hashcheck=hashcheck)
        ok, error, stats = await operation(dest, env, log)
    finally:
        log.close()
    return JobOutcome(JobState.SUCCEEDED if ok else JobState.FAILED, error, stats)


async def restore_job(config: Config, store: Store, binary: str, job: dict[str, Any], report: Report,
                      log_path: Path) -> JobOutcome:
    async def op(dest: Destination, env: dict[str, str], log: JobLog) -> tuple[bool, str | None, dict[str, Any]]:
        return await restore.run_restore(binary, env, dest.remote_path, job["options"], log, report)
    return await _run(config, store, binary, job, log_path, op)


async def verify_job(config: Config, store: Store, binary: str, job: dict[str, Any], report: Report,
                     log_path: Path) -> JobOutcome:
    async def op(dest: Destination, env: dict[str, str], log: JobLog) -> tuple[bool, str | None, dict[str, Any]]:
        return await verify.run_verify(binary, env, config.users_dir, dest.remote_path, job["options"].get("user"),
                                       config.tmp_dir, job["id"], log, report)
    return await _run(config, store, binary, job, log_path, op, hashcheck=True)


async def usage_job(config: Config, store: Store, binary: str, job: dict[str, Any], report: Report,
                    log_path: Path) -> JobOutcome:
    async def op(dest: Destination, env: dict[str, str], log: JobLog) -> tuple[bool, str | None, dict[str, Any]]:
        try:
            measured = await usage.measure(binary, env, dest.remote_path, log.write)
        except usage.UsageError as err:
            return False, str(err), {}
        warning = usage.free_space_warning(measured, dest.warn_free_percent)
        if warning:
            measured["warning"] = warning
            event(logging.WARNING, "remote free space low", dest=dest.name, detail=warning)
        return True, None, measured
    return await _run(config, store, binary, job, log_path, op)
