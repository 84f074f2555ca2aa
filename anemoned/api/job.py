"""`sync` and `job.*`."""
from __future__ import annotations

from typing import Any

from ..errors import Conflict, InvalidField
from ..jobtypes import JobKind, Trigger
from ..protocol.methods import JobId, JobList, JobWait, Sync
from ..users import safe_user_name
from .context import Context
from .dispatch import handles
from .views import load_destination


@handles("sync")
async def sync(ctx: Context, p: Sync) -> dict[str, Any]:
    if not all(safe_user_name(u) for u in p.allow_empty):
        raise InvalidField("allow_empty", "must be a list of user names")
    dest = load_destination(ctx, p.destination, "destination")
    if not dest.enabled:
        raise Conflict(f"destination {p.destination!r} is disabled; enable it first "
                       f"(anemonectl dest enable {p.destination!r})")
    options = {"allow_deletes": p.allow_deletes, "allow_empty": sorted(set(p.allow_empty)), "full": p.full}
    job, _created = ctx.jobs.submit(p.destination, JobKind.SYNC, p.dry_run, trigger=Trigger.MANUAL, options=options)
    return ctx.jobs.view(job)


@handles("job.list")
async def job_list(ctx: Context, p: JobList) -> list[dict[str, Any]]:
    if p.destination is not None:
        load_destination(ctx, p.destination, "destination")
    return [ctx.jobs.view(j) for j in ctx.jobs.recent(destination=p.destination, limit=p.limit)]


@handles("job.show")
async def job_show(ctx: Context, p: JobId) -> dict[str, Any]:
    return ctx.jobs.view(ctx.jobs.get(p.id))


@handles("job.wait")
async def job_wait(ctx: Context, p: JobWait) -> dict[str, Any]:
    ctx.jobs.get(p.id)
    return ctx.jobs.view(await ctx.jobs.wait(p.id, p.timeout_s))


@handles("job.cancel")
async def job_cancel(ctx: Context, p: JobId) -> dict[str, Any]:
    job = ctx.jobs.get(p.id)
    if not job.active:
        raise Conflict(f"job {p.id} has already ended ({job.state.value})")
    return ctx.jobs.view(await ctx.jobs.cancel(p.id))
