"""What clients see: a destination (CONTRACT `dest show --json`), the
daemon's status, a notification target. Presentation only: no changes."""
from __future__ import annotations

import time
from typing import Any

from .. import __version__, usage
from ..destinations import Destination
from ..errors import NotFound
from ..jobtypes import JobKind
from ..protocol.methods import NotifyTarget, StatusResult
from .context import Context


def load_destination(ctx: Context, name: str, field: str = "name") -> Destination:
    row = ctx.store.destination_row(name)
    if row is None:
        raise NotFound(f"no destination named {name!r}", field=field)
    return Destination.from_row(row)


def destination_view(ctx: Context, dest: Destination) -> dict[str, Any]:
    """A destination as dest show/list print it (CONTRACT JSON shape)."""
    view = dest.public()
    view["next_run"] = ctx.schedules.next_run(dest.to_row(), JobKind.SYNC)
    view["next_verify"] = ctx.schedules.next_run(dest.to_row(), JobKind.VERIFY)
    last = ctx.store.last_finished_job_row(dest.name, JobKind.SYNC)
    measured = ctx.store.last_finished_job_row(dest.name, JobKind.USAGE)
    view["usage"] = measured["stats"] if measured and measured["state"] == "succeeded" else None
    warning = usage.free_space_warning(view["usage"], dest.warn_free_percent)
    monitoring = ctx.monitor.view(dest)
    view["warnings"] = [w for w in (warning, monitoring.pop("overdue_warning")) if w] + ctx.schedules.warnings(dest.name)
    if measured and measured["state"] == "failed":  # no figures are shown rather than stale or empty ones
        view["warnings"].append(f"the last usage measurement (job {measured['id']}) failed: {measured['error']}")
    view.update(monitoring)
    view["last_sync"] = None if last is None else {
        "job": last["id"], "at": last["finished_at"], "status": last["state"], "error": last["error"],
        "files_transferred": (last["stats"] or {}).get("files_transferred", 0),
        "bytes_transferred": (last["stats"] or {}).get("bytes_transferred", 0),
    }
    return view


def current(ctx: Context, name: str) -> dict[str, Any]:
    """The destination's view as stored now."""
    return destination_view(ctx, load_destination(ctx, name))


def overdue(ctx: Context) -> list[str]:
    """Names of the destinations that are overdue now."""
    return [r["name"] for r in ctx.store.destination_rows()
            if ctx.monitor.overdue_of(Destination.from_row(r)) is not None]


def warnings(ctx: Context) -> list[str]:
    """Every destination's current warnings, named."""
    views = [destination_view(ctx, Destination.from_row(r)) for r in ctx.store.destination_rows()]
    return [f"{v['name']}: {w}" for v in views for w in v["warnings"]]


def status(ctx: Context) -> StatusResult:
    """The `status` RPC result (CONTRACT: status --json)."""
    running, queued = ctx.jobs.counts()
    upcoming = ctx.schedules.upcoming()
    return StatusResult(
        version=__version__, rclone_version=ctx.runtime.rclone_version,
        uptime_s=round(time.monotonic() - ctx.runtime.started, 1), jobs_running=running, jobs_queued=queued,
        destinations=len(ctx.store.destination_rows()), next_run=upcoming[1] if upcoming else None,
        next_run_destination=upcoming[0] if upcoming else None, warnings=warnings(ctx), overdue=overdue(ctx))


def status_line(ctx: Context) -> str:
    """One line for systemd's STATUS=."""
    n = len(ctx.store.destination_rows())
    running, queued = ctx.jobs.counts()
    activity = f"{running} running, {queued} queued" if running or queued else "idle"
    upcoming = ctx.schedules.upcoming()
    nxt = f"; next: {upcoming[0]} at {upcoming[1]}" if upcoming else ""
    late = overdue(ctx)
    late_text = f"; overdue: {', '.join(late)}" if late else ""
    return f"{n} destination{'s' if n != 1 else ''}; {activity}{nxt}{late_text}"


def target_view(name: str, target: dict[str, Any]) -> NotifyTarget:
    return NotifyTarget(destination=name, id=target["id"], policy=target["policy"], url=target["shown"])
