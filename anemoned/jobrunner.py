"""The one job runner: every job kind loads its destination, opens its
job log and builds the rclone environment the same way, here.

Each kind is one module exposing `run(ctx: JobContext) -> JobOutcome`
(sync_job, restore_job, verify_job, usage_job), which hands run_job its
operation, `operation(run: JobRun) -> JobOutcome`; service.py maps each
JobKind to its module's run."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from . import access, reach
from .attach import AttachServer
from .config import Config
from .destinations import Destination
from .joblog import JobLog
from .jobs import JobOutcome, JobState
from .jobtypes import Job
from .errors import AnemoneError
from .store import Store

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class JobContext:
    """What the daemon gives a job function."""

    config: Config
    store: Store
    binary: str
    attach: AttachServer
    job: Job
    report: Report
    log_path: Path


@dataclass(frozen=True)
class JobRun:
    """A job with its destination loaded, its log open and rclone's
    environment for that destination built."""

    ctx: JobContext
    dest: Destination
    env: dict[str, str]
    log: JobLog
    #: how long the server took to answer the preflight (a round trip or
    #: two: what spaces out a sync's SSH handshakes, link_options.stagger)
    preflight_s: float = 0.0

    @property
    def options(self) -> dict[str, Any]:
        return self.ctx.job.options or {}


async def run_job(ctx: JobContext, operation: Callable[[JobRun], Awaitable[JobOutcome]], *, hashcheck: bool = False,
                  uploads: bool = False) -> JobOutcome:
    row = ctx.store.destination_row(ctx.job.destination)
    if row is None:
        return JobOutcome(JobState.FAILED, "the destination no longer exists")
    dest = Destination.from_row(row)
    log = JobLog(ctx.log_path)
    try:
        asked = time.monotonic()
        try:  # a dead or silent server fails the job in seconds, before any rclone (reach.py)
            await reach.preflight(dest.host, dest.port)
        except reach.Unanswered as err:
            log.note("server did not answer; rclone was not started", error=err.error)
            return JobOutcome(JobState.FAILED, err.error)
        answered = time.monotonic()
        log.note("the server answered", preflight_s=round(answered - asked, 3))
        try:
            env = await access.dest_env(ctx.config, ctx.binary, dest, hashcheck=hashcheck, uploads=uploads)
        except AnemoneError as err:
            return JobOutcome(JobState.FAILED, err.message)
        return await operation(JobRun(ctx, dest, env, log, answered - asked))
    finally:
        log.close()
