"""The usage job: what the server holds, per user, and its free space."""
from __future__ import annotations

import logging

from . import usage
from .jobrunner import JobContext, JobRun, run_job
from .jobs import JobOutcome, JobState
from .logs import event


async def run(ctx: JobContext) -> JobOutcome:
    return await run_job(ctx, _usage)


async def _usage(run: JobRun) -> JobOutcome:
    try:
        measured = await usage.measure(run.ctx.binary, run.env, run.dest.remote_path, run.log.write)
    except usage.UsageError as err:
        return JobOutcome(JobState.FAILED, str(err))
    warning = usage.free_space_warning(measured, run.dest.warn_free_percent)
    if warning:
        measured["warning"] = warning
        event(logging.WARNING, "remote free space low", dest=run.dest.name, detail=warning)
    return JobOutcome(JobState.SUCCEEDED, None, measured)
