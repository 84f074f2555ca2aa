"""`dest.notify.*` and `dest.ping_url.set`: notification targets, their
test, and the dead man's switch URL. URLs are write-only: they are
encrypted before they are stored and only their redacted form is ever
returned or logged."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import keys, notify
from ..errors import Conflict, NotFound
from ..logs import event
from ..protocol.methods import DestName, NotifyAdd, NotifyRemove, NotifyRemoved, NotifyTarget, NotifyTested, PingUrlSet
from .context import Context
from .dispatch import handles
from .views import current, load_destination, target_view

#: Targets per destination; more would be a mistake or an abuse.
MAX_TARGETS = 20


@handles("dest.notify.add")
async def notify_add(ctx: Context, p: NotifyAdd) -> NotifyTarget:
    # Apprise loads ~190 plugins on first use: not on the event loop.
    shown = await asyncio.to_thread(notify.check_target, p.url)
    dest = load_destination(ctx, p.name)
    if len(dest.notifications) >= MAX_TARGETS:
        raise Conflict(f"destination {p.name!r} already has {MAX_TARGETS} notification targets")
    target = {"id": max((t["id"] for t in dest.notifications), default=0) + 1, "policy": p.policy,
              "url_enc": keys.Secrets(ctx.config.certs_dir).encrypt(p.url).decode(), "shown": shown}
    ctx.store.update_destination(p.name, {"notifications": [*dest.notifications, target]})
    event(logging.INFO, "notification target added", dest=p.name, notification=target["id"], target=shown,
          policy=p.policy)
    return target_view(p.name, target)


@handles("dest.notify.list")
async def notify_list(ctx: Context, p: DestName) -> list[NotifyTarget]:
    return [target_view(p.name, t) for t in load_destination(ctx, p.name).notifications]


@handles("dest.notify.remove")
async def notify_remove(ctx: Context, p: NotifyRemove) -> NotifyRemoved:
    dest = load_destination(ctx, p.name)
    kept = [t for t in dest.notifications if t["id"] != p.id]
    if len(kept) == len(dest.notifications):
        raise NotFound(f"destination {p.name!r} has no notification target {p.id}", field="id")
    ctx.store.update_destination(p.name, {"notifications": kept})
    event(logging.INFO, "notification target removed", dest=p.name, notification=p.id)
    return NotifyRemoved(destination=p.name, id=p.id, removed=True)


@handles("dest.notify.test")
async def notify_test(ctx: Context, p: DestName) -> NotifyTested:
    dest = load_destination(ctx, p.name)
    if not dest.notifications:
        raise Conflict(f"destination {p.name!r} has no notification targets; add one with: "
                       f"anemonectl dest notify add {p.name!r} --on failure  (the URL on standard input)")
    results = await ctx.monitor.test(dest)
    return NotifyTested(destination=p.name, ok=all(r["ok"] for r in results), results=results)


@handles("dest.ping_url.set")
async def ping_url_set(ctx: Context, p: PingUrlSet) -> dict[str, Any]:
    shown = notify.check_ping_url(p.url) if p.url is not None else None
    load_destination(ctx, p.name)
    ping = None if p.url is None else {"url_enc": keys.Secrets(ctx.config.certs_dir).encrypt(p.url).decode(),
                                       "shown": shown}
    ctx.store.update_destination(p.name, {"ping": ping})
    event(logging.INFO, "ping URL set" if ping else "ping URL removed", dest=p.name, target=shown)
    return current(ctx, p.name)
