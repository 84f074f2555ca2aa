"""`dest.*`: add, edit, list, show, remove, enable, disable, trust, test,
schedule."""
from __future__ import annotations

import json
import logging
from typing import Any

from .. import conntest, pins
from ..destinations import Destination, check_fingerprint
from ..logs import event
from ..protocol.methods import DestAdd, DestEdit, DestName, DestSchedule, DestTest, DestTrust, NoParams, Removed
from ..scheduler import check_horizon, parse_schedule
from ..timeutil import iso, utc_now
from . import actions
from .context import Context
from .dispatch import handles
from .views import current, destination_view, load_destination


@handles("dest.add")
async def dest_add(ctx: Context, p: DestAdd) -> dict[str, Any]:
    dest = await actions.add_destination(ctx, p.name, actions.checked_fields(p))
    ctx.destinations_changed()
    return destination_view(ctx, dest)


@handles("dest.edit")
async def dest_edit(ctx: Context, p: DestEdit) -> dict[str, Any]:
    fields = actions.checked_fields(p)
    await actions.edit_destination(ctx, load_destination(ctx, p.name), fields)
    ctx.destinations_changed()
    return current(ctx, p.name)


@handles("dest.list")
async def dest_list(ctx: Context, p: NoParams) -> list[dict[str, Any]]:
    return [destination_view(ctx, Destination.from_row(r)) for r in ctx.store.destination_rows()]


@handles("dest.show")
async def dest_show(ctx: Context, p: DestName) -> dict[str, Any]:
    return current(ctx, p.name)


@handles("dest.remove")
async def dest_remove(ctx: Context, p: DestName) -> Removed:
    load_destination(ctx, p.name)
    ctx.jobs.remove_destination(p.name)
    ctx.store.delete_destination(p.name)
    await pins.write_known_hosts(ctx.store, ctx.config)
    event(logging.INFO, "destination removed", dest=p.name)
    ctx.destinations_changed()
    return Removed(name=p.name, removed=True)


def _set_enabled(ctx: Context, name: str, enabled: bool) -> dict[str, Any]:
    load_destination(ctx, name)
    ctx.store.update_destination(name, {"enabled": enabled})
    event(logging.INFO, "destination enabled" if enabled else "destination disabled", dest=name)
    ctx.destinations_changed()
    return current(ctx, name)


@handles("dest.enable")
async def dest_enable(ctx: Context, p: DestName) -> dict[str, Any]:
    return _set_enabled(ctx, p.name, True)


@handles("dest.disable")
async def dest_disable(ctx: Context, p: DestName) -> dict[str, Any]:
    return _set_enabled(ctx, p.name, False)


@handles("dest.trust")
async def dest_trust(ctx: Context, p: DestTrust) -> dict[str, Any]:
    if p.host_key_fingerprint is not None:
        check_fingerprint(p.host_key_fingerprint)
    dest = load_destination(ctx, p.name)
    # `dest trust` without a fingerprint is itself the explicit trust.
    scanned = await pins.fetch_host_key(dest.host, dest.port, p.host_key_fingerprint, trust=True)
    key = scanned.key
    previous = dest.host_key.fingerprint if dest.host_key else None
    await pins.pin(ctx.store, ctx.config, p.name, dest.host, dest.port, scanned)
    event(logging.WARNING if previous and previous != key.fingerprint else logging.INFO, "host key pinned",
          dest=p.name, host=dest.host, port=dest.port, host_key=key.fingerprint, previous=previous)
    return current(ctx, p.name)


@handles("dest.test")
async def dest_test(ctx: Context, p: DestTest) -> dict[str, Any]:
    dest = load_destination(ctx, p.name)
    result = await conntest.run_test(ctx.config, ctx.rclone_binary, dest, p.create_path, iso(utc_now()) or "")
    ctx.store.update_destination(p.name, {"last_test": {k: result[k] for k in ("ok", "class", "message", "at")}})
    event(logging.INFO if result["ok"] else logging.WARNING, "connection test", dest=p.name,
          result="ok" if result["ok"] else result["class"], detail=None if result["ok"] else result["message"])
    return result


@handles("dest.schedule")
async def dest_schedule(ctx: Context, p: DestSchedule) -> dict[str, Any]:
    schedule = parse_schedule(p.schedule, p.catch_up)
    check_horizon(schedule, utc_now(), ctx.schedules.zone())
    load_destination(ctx, p.name)
    # A new schedule starts counting now: no catch-up for moments before it.
    prefix = "" if p.kind == "sync" else "verify_"
    ctx.store.update_destination(p.name, {f"{prefix}schedule": schedule,
                                          f"{prefix}schedule_state": {"anchor": iso(utc_now())}})
    event(logging.INFO, "schedule set", dest=p.name, kind=p.kind, schedule=json.dumps(schedule, sort_keys=True))
    ctx.destinations_changed()
    return current(ctx, p.name)

