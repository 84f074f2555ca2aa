"""One function per RPC method; dispatch() routes a request to it.

Handlers validate their params through Params, which names the offending
field in every error and rejects unknown parameters. Handlers never log or
echo parameter values: a password could be among them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

import asyncio
import json
import os
import logging

from . import access, conntest, keys, link_options, pins, protocol, reach, restore, usage
from .access import key_path
from .destinations import (DEFAULT_KEY_FILE, Destination, check_fingerprint, check_host, check_name,
                           check_password, check_remote_path, check_user)
from .overdue import parse_max_age
from .scheduler import check_horizon, parse_schedule
from .users import safe_user_name
from .logs import event
from .protocol import ErrorCode, Request, RpcError, invalid_params
from .timeutil import iso, utc_now

if TYPE_CHECKING:
    from .service import Daemon

Handler = Callable[["Daemon", "Params"], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}
_KEY_LOCK = asyncio.Lock()


def method(name: str) -> Callable[[Handler], Handler]:
    assert name in protocol.METHODS, name

    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


class Params:
    """Typed access to a request's named params."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.seen: set[str] = set()

    def _get(self, name: str, required: bool) -> Any:
        self.seen.add(name)
        if name not in self.raw or self.raw[name] is None:
            if required:
                raise invalid_params(name, "is required")
            return None
        return self.raw[name]

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def str(self, name: str, required: bool = True, max_len: int = 4096) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid_params(name, "must be a string")
        if len(value) > max_len:
            raise invalid_params(name, f"must be at most {max_len} characters")
        return value

    def int(self, name: str, required: bool = True, lo: int = 0, hi: int = 2**31) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_params(name, "must be a whole number")
        if not lo <= value <= hi:
            raise invalid_params(name, f"must be from {lo} to {hi}")
        return value

    def optional_bool(self, name: str) -> bool | None:
        value = self._get(name, False)
        if value is not None and not isinstance(value, bool):
            raise invalid_params(name, "must be true or false")
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.optional_bool(name)
        return default if value is None else value

    def str_list(self, name: str, max_items: int = 1000) -> list[str]:
        value = self._get(name, False) or []
        if not isinstance(value, list) or len(value) > max_items or not all(isinstance(v, str) for v in value):
            raise invalid_params(name, "must be a list of strings")
        return value

    def obj(self, name: str, required: bool = True) -> dict[str, Any] | None:
        value = self._get(name, required)
        if value is not None and not isinstance(value, dict):
            raise invalid_params(name, "must be an object")
        return value

    def check_unknown(self) -> None:
        for name in self.raw:
            if name not in self.seen:
                raise invalid_params(name, "unknown parameter")


async def dispatch(daemon: "Daemon", request: Request) -> Any:
    handler = HANDLERS.get(request.method)
    if handler is None:
        raise RpcError(ErrorCode.METHOD_NOT_FOUND, f"method not found: {request.method[:100]!r}")
    return await handler(daemon, Params(request.params))


@method("status")
async def status(daemon: "Daemon", p: Params) -> dict[str, Any]:
    p.check_unknown()
    return daemon.status()


# -- SSH key ------------------------------------------------------------------------

@method("key.generate")
async def key_generate(daemon: "Daemon", p: Params) -> dict[str, Any]:
    force = p.bool("force")
    p.check_unknown()
    certs = daemon.config.certs_dir
    try:
        async with _KEY_LOCK:  # two --force at once would shuffle the .old pair
            key = await asyncio.to_thread(keys.generate_key, certs, force)
    except FileExistsError:
        raise RpcError(ErrorCode.CONFLICT, f"a key already exists at {certs / keys.KEY_NAME}; use --force to replace it "
                       "(the old pair is kept as rclone_key.old)") from None
    event(logging.INFO, "ssh key generated", fingerprint=key.fingerprint, replaced=force or None)
    return {"public_key": key.line, "fingerprint": key.fingerprint, "path": str(certs / keys.KEY_NAME)}


@method("key.show")
async def key_show(daemon: "Daemon", p: Params) -> dict[str, Any]:
    p.check_unknown()
    certs = daemon.config.certs_dir
    try:
        key = await asyncio.to_thread(keys.show_key, certs)
    except FileNotFoundError:
        raise RpcError(ErrorCode.NOT_FOUND, "there is no SSH key yet; create one with: anemonectl key generate",
                       {"field": "key"}) from None
    return {"public_key": key.line, "public_key_rfc4716": keys.rfc4716(key.line), "fingerprint": key.fingerprint,
            "path": str(certs / keys.KEY_NAME)}


# -- destinations -------------------------------------------------------------------

def load_destination(daemon: "Daemon", name: str, field: str = "name") -> Destination:
    row = daemon.store.destination_row(name)
    if row is None:
        raise RpcError(ErrorCode.NOT_FOUND, f"no destination named {name!r}", {"field": field})
    return Destination.from_row(row)


def _name(p: Params) -> str:
    name = p.str("name", max_len=64)
    assert name is not None
    check_name(name)
    return name


def destination_view(daemon: "Daemon", dest: Destination) -> dict[str, Any]:
    """A destination as dest show/list print it (CONTRACT JSON shape)."""
    view = dest.public()
    view["next_run"] = daemon.next_run_of(dest)
    view["next_verify"] = daemon.next_run_of(dest, "verify")
    last = daemon.store.last_finished_job_row(dest.name, "sync")
    measured = daemon.store.last_finished_job_row(dest.name, "usage")
    view["usage"] = measured["stats"] if measured and measured["state"] == "succeeded" else None
    warning = usage.free_space_warning(view["usage"], dest.warn_free_percent)
    monitoring = daemon.monitor.view(dest)
    view["warnings"] = [w for w in (warning, monitoring.pop("overdue_warning")) if w] + daemon.schedules.warnings(dest.name)
    if measured and measured["state"] == "failed":  # no figures are shown rather than stale or empty ones
        view["warnings"].append(f"the last usage measurement (job {measured['id']}) failed: {measured['error']}")
    view.update(monitoring)
    view["last_sync"] = None if last is None else {
        "job": last["id"], "at": last["finished_at"], "status": last["state"], "error": last["error"],
        "files_transferred": (last["stats"] or {}).get("files_transferred", 0),
        "bytes_transferred": (last["stats"] or {}).get("bytes_transferred", 0),
    }
    return view


SAFETY_FIELDS = ("max_delete", "max_delete_percent", "keep_versions_days", "warn_free_percent", "stall_timeout",
                 "full_sync_every", "max_age_s")


def _read_fields(p: Params, adding: bool) -> dict[str, Any]:
    """The destination fields in the params, validated; absent ones omitted."""
    fields: dict[str, Any] = {}
    if p.has("host") or adding:
        fields["host"] = check_host(p.str("host", max_len=253) or "")
    port = p.int("port", required=False, lo=1, hi=65535)
    if port is not None or adding:
        fields["port"] = port if port is not None else 22
    if p.has("user") or adding:
        user = p.str("user", max_len=64) or ""
        check_user(user)
        fields["user"] = user
    if p.has("remote_path") or adding:
        fields["remote_path"] = check_remote_path(p.str("remote_path", max_len=1024) or "")
    if p.has("key_file"):
        key_file = p.str("key_file", max_len=1024) or ""
        if not key_file or any(ord(c) < 32 for c in key_file):
            raise invalid_params("key_file", "must be a file path")
        fields["key_file"] = key_file
    if p.has("password"):
        password = p.str("password", max_len=1024) or ""
        check_password(password)
        fields["password"] = password
    if "key_file" in fields and "password" in fields:
        raise invalid_params("password", "give either key_file or password, not both")
    if p.has("enabled"):
        fields["enabled"] = p.bool("enabled")
    if p.has("verify_download"):
        fields["verify_download"] = p.bool("verify_download")
    for name, lo, hi in (("max_delete", 0, 10**9), ("max_delete_percent", 0, 100), ("keep_versions_days", 0, 36500),
                         ("warn_free_percent", 0, 100), ("stall_timeout", 10, 86400), ("full_sync_every", 0, 3650)):
        value = p.int(name, required=False, lo=lo, hi=hi)
        if value is not None:
            fields[name] = value
    if p.has("max_age"):
        fields["max_age_s"] = parse_max_age(p.str("max_age", max_len=20))
    link_options.read_fields(p, fields)  # transfers, checkers, connections, bwlimit
    fingerprint = p.str("host_key_fingerprint", required=False, max_len=100)
    if fingerprint is not None:
        check_fingerprint(fingerprint)
        fields["host_key_fingerprint"] = fingerprint
    fields["trust_host_key"] = p.bool("trust_host_key")
    if fingerprint is not None and fields["trust_host_key"]:
        raise invalid_params("trust_host_key", "give either host_key_fingerprint or trust_host_key, not both")
    return fields


async def _auth_changes(daemon: "Daemon", fields: dict[str, Any]) -> dict[str, Any]:
    """Columns for the authentication the fields ask for (key file checked,
    password encrypted); empty when they do not touch authentication. The
    file work runs in a thread: a key_file on a stuck mount must not stall
    every other client."""
    certs = daemon.config.certs_dir
    if "password" in fields:
        encrypted = await asyncio.to_thread(keys.Secrets(certs).encrypt, fields["password"])
        return {"auth": "password", "key_file": None, "password_enc": encrypted}
    if "key_file" in fields:
        problem = await asyncio.to_thread(keys.check_private_key, key_path(daemon.config, fields["key_file"]), certs)
        if problem:
            raise invalid_params("key_file", problem)
        return {"auth": "key", "key_file": fields["key_file"], "password_enc": None}
    return {}


@method("dest.add")
async def dest_add(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = _name(p)
    fields = _read_fields(p, adding=True)
    p.check_unknown()
    if daemon.store.destination_row(name) is not None:
        raise RpcError(ErrorCode.CONFLICT, f"a destination named {name!r} already exists; use dest edit to change it")
    if "password" not in fields:
        fields.setdefault("key_file", DEFAULT_KEY_FILE)
    auth = await _auth_changes(daemon, fields)
    scanned = await pins.fetch_host_key(fields["host"], fields["port"], fields.get("host_key_fingerprint"),
                                    fields["trust_host_key"])
    key = scanned.key
    if daemon.store.destination_row(name) is not None:  # added meanwhile, while we scanned
        raise RpcError(ErrorCode.CONFLICT, f"a destination named {name!r} already exists")
    pins.refuse_blind_repin(daemon.store, name, fields["host"], fields["port"], key, fields["trust_host_key"])
    dest = Destination(name=name, host=fields["host"], port=fields["port"], user=fields["user"], auth=auth["auth"],
                       key_file=auth["key_file"], password_enc=auth["password_enc"], remote_path=fields["remote_path"],
                       enabled=fields.get("enabled", True), verify_download=fields.get("verify_download", False),
                       host_key=key, created_at=iso(utc_now()) or "", link=link_options.merged({}, fields),
                       **{k: fields[k] for k in SAFETY_FIELDS if k in fields})
    daemon.store.insert_destination(dest.to_row())
    await pins.pin(daemon.store, daemon.config, name, dest.host, dest.port, scanned)
    event(logging.INFO, "destination added", dest=name, host=dest.host, port=dest.port, auth=dest.auth,
          host_key=key.fingerprint)
    daemon.destinations_changed()
    return destination_view(daemon, dest)


@method("dest.edit")
async def dest_edit(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = _name(p)
    fields = _read_fields(p, adding=False)
    p.check_unknown()
    dest = load_destination(daemon, name)
    changes: dict[str, Any] = {k: fields[k] for k in ("host", "port", "user", "remote_path", "enabled", "verify_download",
                                                      *SAFETY_FIELDS)
                               if k in fields}
    if any(k in fields for k in link_options.FIELDS):
        changes["link"] = link_options.merged(dest.link, fields)
    moved = any(k in changes and changes[k] != getattr(dest, k) for k in ("host", "port", "user"))
    if moved and dest.auth == "password" and "password" not in fields and "key_file" not in fields:
        # The stored password is only ever sent to the server it was given for.
        raise invalid_params("password", "a password destination moved to another server or account needs its "
                             "password again (--password-stdin), or a key (--key-file): the stored one is only "
                             "sent to the server it was given for")
    changes.update(await _auth_changes(daemon, fields))
    host, port = changes.get("host", dest.host), changes.get("port", dest.port)
    new_server = (host, port) != (dest.host, dest.port)
    wants_pin = "host_key_fingerprint" in fields or fields["trust_host_key"]
    scanned = None
    if new_server or wants_pin:
        scanned = await pins.fetch_host_key(host, port, fields.get("host_key_fingerprint"), fields["trust_host_key"])
        pins.refuse_blind_repin(daemon.store, name, host, port, scanned.key, fields["trust_host_key"])
    daemon.store.update_destination(name, changes)
    if scanned is not None:
        await pins.pin(daemon.store, daemon.config, name, host, port, scanned)
    elif new_server:
        await pins.write_known_hosts(daemon.store, daemon.config)
    event(logging.INFO, "destination changed", dest=name, fields=",".join(sorted(k for k in changes if k != "password_enc")))
    daemon.destinations_changed()
    return destination_view(daemon, load_destination(daemon, name))


@method("dest.list")
async def dest_list(daemon: "Daemon", p: Params) -> list[dict[str, Any]]:
    p.check_unknown()
    return [destination_view(daemon, Destination.from_row(r)) for r in daemon.store.destination_rows()]


@method("dest.show")
async def dest_show(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("name", max_len=256)
    p.check_unknown()
    return destination_view(daemon, load_destination(daemon, name or ""))


@method("dest.remove")
async def dest_remove(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("name", max_len=256) or ""
    p.check_unknown()
    load_destination(daemon, name)
    await daemon.before_destination_removed(name)
    daemon.store.delete_destination(name)
    await pins.write_known_hosts(daemon.store, daemon.config)
    event(logging.INFO, "destination removed", dest=name)
    daemon.destinations_changed()
    return {"name": name, "removed": True}


async def _set_enabled(daemon: "Daemon", p: Params, enabled: bool) -> dict[str, Any]:
    name = p.str("name", max_len=256) or ""
    p.check_unknown()
    load_destination(daemon, name)
    daemon.store.update_destination(name, {"enabled": enabled})
    event(logging.INFO, "destination enabled" if enabled else "destination disabled", dest=name)
    daemon.destinations_changed()
    return destination_view(daemon, load_destination(daemon, name))


@method("dest.enable")
async def dest_enable(daemon: "Daemon", p: Params) -> dict[str, Any]:
    return await _set_enabled(daemon, p, True)


@method("dest.disable")
async def dest_disable(daemon: "Daemon", p: Params) -> dict[str, Any]:
    return await _set_enabled(daemon, p, False)


@method("dest.trust")
async def dest_trust(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("name", max_len=256) or ""
    fingerprint = p.str("host_key_fingerprint", required=False, max_len=100)
    if fingerprint is not None:
        check_fingerprint(fingerprint)
    p.check_unknown()
    dest = load_destination(daemon, name)
    # `dest trust` without a fingerprint is itself the explicit trust.
    scanned = await pins.fetch_host_key(dest.host, dest.port, fingerprint, trust=True)
    key = scanned.key
    previous = dest.host_key.fingerprint if dest.host_key else None
    await pins.pin(daemon.store, daemon.config, name, dest.host, dest.port, scanned)
    event(logging.WARNING if previous and previous != key.fingerprint else logging.INFO, "host key pinned",
          dest=name, host=dest.host, port=dest.port, host_key=key.fingerprint, previous=previous)
    return destination_view(daemon, load_destination(daemon, name))


@method("dest.test")
async def dest_test(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("name", max_len=256) or ""
    create_path = p.bool("create_path")
    p.check_unknown()
    dest = load_destination(daemon, name)
    result = await conntest.run_test(daemon.config, daemon.rclone_binary, dest, create_path, iso(utc_now()) or "")
    daemon.store.update_destination(name, {"last_test": {k: result[k] for k in ("ok", "class", "message", "at")}})
    event(logging.INFO if result["ok"] else logging.WARNING, "connection test", dest=name,
          result="ok" if result["ok"] else result["class"], detail=None if result["ok"] else result["message"])
    return result


# -- jobs ----------------------------------------------------------------------------

@method("sync")
async def sync(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("destination", max_len=256) or ""
    dry_run = p.bool("dry_run")
    allow_deletes = p.bool("allow_deletes")
    allow_empty = p.str_list("allow_empty")
    if not all(safe_user_name(u) for u in allow_empty):
        raise invalid_params("allow_empty", "must be a list of user names")
    full = p.bool("full")
    p.check_unknown()
    dest = load_destination(daemon, name, "destination")
    if not dest.enabled:
        raise RpcError(ErrorCode.CONFLICT, f"destination {name!r} is disabled; enable it first (anemonectl dest enable {name!r})")
    options = {"allow_deletes": allow_deletes, "allow_empty": sorted(set(allow_empty)), "full": full}
    row, _created = daemon.jobs.submit(name, "sync", dry_run, trigger="manual", options=options)
    return daemon.jobs.view(row)


@method("job.list")
async def job_list(daemon: "Daemon", p: Params) -> list[dict[str, Any]]:
    destination = p.str("destination", required=False, max_len=256)
    limit = p.int("limit", required=False, lo=1, hi=1000) or 20
    p.check_unknown()
    if destination is not None:
        load_destination(daemon, destination, "destination")
    return [daemon.jobs.view(r) for r in daemon.store.job_rows(destination=destination, limit=limit)]


def _job_id(p: Params) -> int:
    job_id = p.int("id", lo=1, hi=2**62)
    assert job_id is not None
    return job_id


@method("job.show")
async def job_show(daemon: "Daemon", p: Params) -> dict[str, Any]:
    job_id = _job_id(p)
    p.check_unknown()
    return daemon.jobs.view(daemon.jobs.get(job_id))


@method("job.wait")
async def job_wait(daemon: "Daemon", p: Params) -> dict[str, Any]:
    job_id = _job_id(p)
    timeout_s = p.int("timeout_s", required=False, lo=0, hi=60)
    p.check_unknown()
    daemon.jobs.get(job_id)
    return daemon.jobs.view(await daemon.jobs.wait(job_id, 30 if timeout_s is None else timeout_s))


@method("job.cancel")
async def job_cancel(daemon: "Daemon", p: Params) -> dict[str, Any]:
    job_id = _job_id(p)
    p.check_unknown()
    row = daemon.jobs.get(job_id)
    if row["state"] not in ("queued", "running"):
        raise RpcError(ErrorCode.CONFLICT, f"job {job_id} has already ended ({row['state']})")
    return daemon.jobs.view(await daemon.jobs.cancel(job_id))


@method("dest.schedule")
async def dest_schedule(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("name", max_len=256) or ""
    raw = p.obj("schedule") or {}
    catch_up = p.optional_bool("catch_up")
    kind = p.str("kind", required=False, max_len=10) or "sync"
    if kind not in ("sync", "verify"):
        raise invalid_params("kind", "must be sync or verify")
    p.check_unknown()
    schedule = parse_schedule(raw, catch_up)
    check_horizon(schedule, utc_now(), daemon.schedules.zone())
    load_destination(daemon, name)
    # A new schedule starts counting now: no catch-up for moments before it.
    prefix = "" if kind == "sync" else "verify_"
    daemon.store.update_destination(name, {f"{prefix}schedule": schedule,
                                           f"{prefix}schedule_state": {"anchor": iso(utc_now())}})
    event(logging.INFO, "schedule set", dest=name, kind=kind, schedule=json.dumps(schedule, sort_keys=True))
    daemon.destinations_changed()
    return destination_view(daemon, load_destination(daemon, name))


# -- restore, verify, usage ----------------------------------------------------------

async def _dest_env(daemon: "Daemon", dest: Destination) -> dict[str, str]:
    """The rclone environment for a direct (non-job) call, once the server
    has answered at all: a dead one fails the call in seconds (reach.py)."""
    try:
        await reach.preflight(dest.host, dest.port)
    except reach.Unanswered as err:
        raise RpcError(ErrorCode.OPERATION_FAILED, err.error, {"class": err.cls}) from None
    return await access.dest_env(daemon.config, daemon.rclone_binary, dest)


@method("restore")
async def restore_(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("destination", max_len=256) or ""
    user = restore.check_user(p.str("user", max_len=64) or "")
    overwrite = p.bool("overwrite")
    to = p.str("to", max_len=4096) or ""
    owner = await asyncio.to_thread(restore.restorer_identity, daemon.config.users_dir, user, os.getuid())
    target = (await asyncio.to_thread(restore.check_target, to, overwrite, owner, daemon.config.users_dir / user,
                                      daemon.config.restore_dir)).path
    path = p.str("path", required=False, max_len=4096) or ""
    restore.check_subpath(path)
    version = p.str("version", required=False, max_len=64)
    if version is not None:
        restore.check_version(version)
    p.check_unknown()
    load_destination(daemon, name, "destination")
    options = {"user": user, "to": str(target), "path": path, "version": version, "overwrite": overwrite}
    row, _ = daemon.jobs.submit(name, "restore", False, trigger="manual", options=options)
    return daemon.jobs.view(row)


@method("restore.list")
async def restore_list(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("destination", max_len=256) or ""
    user = restore.check_user(p.str("user", max_len=64) or "")
    parts = restore.check_subpath(p.str("path", required=False, max_len=4096) or "")
    version = p.str("version", required=False, max_len=64)
    if version is not None:
        restore.check_version(version)
    p.check_unknown()
    dest = load_destination(daemon, name, "destination")
    return await restore.list_restorable(daemon.rclone_binary, await _dest_env(daemon, dest), dest.remote_path,
                                         user, parts, version)


@method("dest.versions")
async def dest_versions(daemon: "Daemon", p: Params) -> list[str]:
    name = p.str("name", max_len=256) or ""
    p.check_unknown()
    dest = load_destination(daemon, name)
    return await restore.list_versions(daemon.rclone_binary, await _dest_env(daemon, dest), dest.remote_path)


@method("verify")
async def verify_(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("destination", max_len=256) or ""
    user = p.str("user", required=False, max_len=64)
    if user is not None:
        restore.check_user(user)
    download = p.bool("download")
    p.check_unknown()
    load_destination(daemon, name, "destination")
    row, _ = daemon.jobs.submit(name, "verify", False, trigger="manual", options={"user": user, "download": download})
    return daemon.jobs.view(row)


@method("dest.usage")
async def dest_usage(daemon: "Daemon", p: Params) -> dict[str, Any]:
    name = p.str("name", max_len=256) or ""
    p.check_unknown()
    load_destination(daemon, name)
    row, _ = daemon.jobs.submit(name, "usage", False, trigger="manual")
    return daemon.jobs.view(row)
