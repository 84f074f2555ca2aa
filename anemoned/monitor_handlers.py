"""RPC methods for monitoring: notification targets, their test, and the
dead man's switch URL. URLs are write-only: they are encrypted before they
are stored and only their redacted form is ever returned or logged."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from . import keys, notify
from .handlers import Params, destination_view, load_destination, method
from .logs import event
from .protocol import ErrorCode, RpcError, invalid_params

if TYPE_CHECKING:
    from .service import Daemon

#: Targets per destination; more would be a mistake or an abuse.
MAX_TARGETS = 20


def _target_view(name: str, target: dict[str, Any]) -> dict[str, Any]:
    return {"destination": name, "id": target["id"], "policy": target["policy"], "url": target["shown"]}


@method("dest.notify.add")
async def notify_add(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("name", max_len=256) or ""
    url = p.str("url", max_len=notify.MAX_URL_LEN) or ""
    policy = p.str("policy", required=False, max_len=20) or "failure"
    p.check_unknown()
    if policy not in notify.POLICIES:
        raise invalid_params("policy", f"must be one of {', '.join(notify.POLICIES)}")
    # Apprise loads ~190 plugins on first use: not on the event loop.
    shown = await asyncio.to_thread(notify.check_target, url)
    dest = load_destination(daemon, name)
    if len(dest.notifications) >= MAX_TARGETS:
        raise RpcError(ErrorCode.CONFLICT, f"destination {name!r} already has {MAX_TARGETS} notification targets")
    target = {"id": max((t["id"] for t in dest.notifications), default=0) + 1, "policy": policy,
              "url_enc": keys.Secrets(daemon.config.certs_dir).encrypt(url).decode(), "shown": shown}
    daemon.store.update_destination(name, {"notifications": [*dest.notifications, target]})
    event(logging.INFO, "notification target added", dest=name, notification=target["id"], target=shown,
          policy=policy)
    return _target_view(name, target)


@method("dest.notify.list")
async def notify_list(daemon: "Daemon", p: Params) -> list[dict[str, Any]]:
    name = p.str("name", max_len=256) or ""
    p.check_unknown()
    return [_target_view(name, t) for t in load_destination(daemon, name).notifications]


@method("dest.notify.remove")
async def notify_remove(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("name", max_len=256) or ""
    target_id = p.int("id", lo=1, hi=2**31)
    p.check_unknown()
    dest = load_destination(daemon, name)
    kept = [t for t in dest.notifications if t["id"] != target_id]
    if len(kept) == len(dest.notifications):
        raise RpcError(ErrorCode.NOT_FOUND, f"destination {name!r} has no notification target {target_id}",
                       {"field": "id"})
    daemon.store.update_destination(name, {"notifications": kept})
    event(logging.INFO, "notification target removed", dest=name, notification=target_id)
    return {"destination": name, "id": target_id, "removed": True}


@method("dest.notify.test")
async def notify_test(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("name", max_len=256) or ""
    p.check_unknown()
    dest = load_destination(daemon, name)
    if not dest.notifications:
        raise RpcError(ErrorCode.CONFLICT, f"destination {name!r} has no notification targets; add one with: "
                       f"anemonectl dest notify add {name!r} --on failure  (the URL on standard input)")
    results = await daemon.monitor.test(dest)
    return {"destination": name, "ok": all(r["ok"] for r in results), "results": results}


@method("dest.ping_url.set")
async def ping_url_set(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("name", max_len=256) or ""
    url = p.str("url", required=False, max_len=notify.MAX_URL_LEN)
    p.check_unknown()
    shown = notify.check_ping_url(url) if url is not None else None
    load_destination(daemon, name)
    ping = None if url is None else {"url_enc": keys.Secrets(daemon.config.certs_dir).encrypt(url).decode(),
                                     "shown": shown}
    daemon.store.update_destination(name, {"ping": ping})
    event(logging.INFO, "ping URL set" if ping else "ping URL removed", dest=name, target=shown)
    return destination_view(daemon, load_destination(daemon, name))
