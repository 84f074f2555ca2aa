"""Policy the destination methods share: which fields a request sets once
checked, what an authentication change stores, and when a host key may be
(re)pinned. Handlers call these; nothing here shapes an answer."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import access, keys, link_options, pins, reach
from ..access import key_path
from ..destinations import (DEFAULT_KEY_FILE, Destination, check_fingerprint, check_host, check_name, check_password,
                            check_remote_path, check_user)
from ..errors import Conflict, InvalidField, OperationFailed
from ..logs import event
from ..overdue import parse_max_age
from ..protocol.methods import PLAIN_DEST_FIELDS
from ..timeutil import iso, utc_now
from .context import Context


def checked_fields(p: Any) -> dict[str, Any]:
    """The destination fields a decoded dest.add/dest.edit sets, each
    checked (and normalised); absent ones omitted. `trust_host_key` is
    always there."""
    check_name(p.name)
    fields = {k: getattr(p, k) for k in PLAIN_DEST_FIELDS if getattr(p, k) is not None}
    if "host" in fields:
        fields["host"] = check_host(fields["host"])
    if "user" in fields:
        check_user(fields["user"])
    if "remote_path" in fields:
        fields["remote_path"] = check_remote_path(fields["remote_path"])
    if p.key_file is not None:
        if not p.key_file or any(ord(c) < 32 for c in p.key_file):
            raise InvalidField("key_file", "must be a file path")
        fields["key_file"] = p.key_file
    if p.password is not None:
        check_password(p.password)
        fields["password"] = p.password
    if "key_file" in fields and "password" in fields:
        raise InvalidField("password", "give either key_file or password, not both")
    if p.max_age is not None:
        fields["max_age_s"] = parse_max_age(p.max_age)
    link_options.read_fields(p, fields)  # transfers, checkers, connections, bwlimit
    if p.host_key_fingerprint is not None:
        check_fingerprint(p.host_key_fingerprint)
        fields["host_key_fingerprint"] = p.host_key_fingerprint
    fields["trust_host_key"] = p.trust_host_key
    if p.host_key_fingerprint is not None and p.trust_host_key:
        raise InvalidField("trust_host_key", "give either host_key_fingerprint or trust_host_key, not both")
    return fields


async def auth_changes(ctx: Context, fields: dict[str, Any]) -> dict[str, Any]:
    """Columns for the authentication the fields ask for (key file checked,
    password encrypted); empty when they do not touch authentication. The
    file work runs in a thread: a key_file on a stuck mount must not stall
    every other client."""
    certs = ctx.config.certs_dir
    if "password" in fields:
        encrypted = await asyncio.to_thread(keys.Secrets(certs).encrypt, fields["password"])
        return {"auth": "password", "key_file": None, "password_enc": encrypted}
    if "key_file" in fields:
        problem = await asyncio.to_thread(keys.check_private_key, key_path(ctx.config, fields["key_file"]), certs)
        if problem:
            raise InvalidField("key_file", problem)
        return {"auth": "key", "key_file": fields["key_file"], "password_enc": None}
    return {}


async def add_destination(ctx: Context, name: str, fields: dict[str, Any]) -> Destination:
    if ctx.store.destination_row(name) is not None:
        raise Conflict(f"a destination named {name!r} already exists; use dest edit to change it")
    link = link_options.merged({}, fields)  # checked as a whole before the server is asked anything
    if "password" not in fields:
        fields.setdefault("key_file", DEFAULT_KEY_FILE)
    auth = await auth_changes(ctx, fields)
    scanned = await pins.fetch_host_key(fields["host"], fields["port"], fields.get("host_key_fingerprint"),
                                        fields["trust_host_key"])
    key = scanned.key
    if ctx.store.destination_row(name) is not None:  # added meanwhile, while we scanned
        raise Conflict(f"a destination named {name!r} already exists")
    pins.refuse_blind_repin(ctx.store, name, fields["host"], fields["port"], key, fields["trust_host_key"])
    settings = {k: fields[k] for k in (*PLAIN_DEST_FIELDS, "max_age_s") if k in fields}
    dest = Destination(name=name, auth=auth["auth"], key_file=auth["key_file"], password_enc=auth["password_enc"],
                       host_key=key, created_at=iso(utc_now()) or "", link=link, **settings)
    ctx.store.insert_destination(dest.to_row())
    await pins.pin(ctx.store, ctx.config, name, dest.host, dest.port, scanned)
    event(logging.INFO, "destination added", dest=name, host=dest.host, port=dest.port, auth=dest.auth,
          host_key=key.fingerprint)
    return dest


async def edit_destination(ctx: Context, dest: Destination, fields: dict[str, Any]) -> None:
    name = dest.name
    changes = {k: fields[k] for k in (*PLAIN_DEST_FIELDS, "max_age_s") if k in fields}
    if any(k in fields for k in link_options.FIELDS):  # checked with what is stored: one field can break the whole
        changes["link"] = link_options.merged(dest.link, fields)
    moved = any(k in changes and changes[k] != getattr(dest, k) for k in ("host", "port", "user"))
    if moved and dest.auth == "password" and "password" not in fields and "key_file" not in fields:
        # The stored password is only ever sent to the server it was given for.
        raise InvalidField("password", "a password destination moved to another server or account needs its "
                           "password again (--password-stdin), or a key (--key-file): the stored one is only "
                           "sent to the server it was given for")
    changes.update(await auth_changes(ctx, fields))
    host, port = changes.get("host", dest.host), changes.get("port", dest.port)
    new_server = (host, port) != (dest.host, dest.port)
    wants_pin = "host_key_fingerprint" in fields or fields["trust_host_key"]
    scanned = None
    if new_server or wants_pin:
        scanned = await pins.fetch_host_key(host, port, fields.get("host_key_fingerprint"), fields["trust_host_key"])
        pins.refuse_blind_repin(ctx.store, name, host, port, scanned.key, fields["trust_host_key"])
    ctx.store.update_destination(name, changes)
    if scanned is not None:
        await pins.pin(ctx.store, ctx.config, name, host, port, scanned)
    elif new_server:
        await pins.write_known_hosts(ctx.store, ctx.config)
    event(logging.INFO, "destination changed", dest=name,
          fields=",".join(sorted(k for k in changes if k != "password_enc")))


async def dest_env(ctx: Context, dest: Destination) -> dict[str, str]:
    """The rclone environment for a direct (non-job) call, once the server
    has answered at all: a dead one fails the call in seconds (reach.py)."""
    try:
        await reach.preflight(dest.host, dest.port)
    except reach.Unanswered as err:
        raise OperationFailed(err.error, details={"class": err.cls}) from None
    return await access.dest_env(ctx.config, ctx.rclone_binary, dest)
