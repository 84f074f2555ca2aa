"""Host key pins for destinations: fetch a server's key, decide whether a
request may pin it, pin it, and keep certs/known_hosts in step.

One server (host, port) has one pin, shared by its destinations. It
changes only by `dest trust` on one of them, or by an explicit
fingerprint that matches the key the server shows; `--trust-host-key`
may pin a server nobody pinned yet, or confirm the pin it has, and never
replaces another destination's pin (issue 11, finding 8).
"""
from __future__ import annotations

import asyncio
import logging

from . import access, hostkeys
from .config import Config
from .logs import event
from .errors import Conflict, InvalidField, OperationFailed
from .store import Store


async def fetch_host_key(host: str, port: int, fingerprint: str | None, trust: bool) -> hostkeys.Scanned:
    """The server's host key (and identification), accepted only if the key
    matches `fingerprint` or the operator said to trust it as it is."""
    try:
        scanned = await hostkeys.scan(host, port)
    except hostkeys.ScanError as err:
        raise OperationFailed(f"cannot fetch the host key of {host}:{port}: {err}; nothing was saved",
                              details={"class": err.reason}) from None
    key = scanned.key
    if fingerprint is not None:
        if key.fingerprint != fingerprint:
            raise OperationFailed(
                f"host key mismatch: {host}:{port} shows {key.fingerprint}, not {fingerprint}; nothing was saved",
                details={"class": "host key mismatch", "fingerprint": key.fingerprint})
    elif not trust:
        raise InvalidField("host_key_fingerprint",
                           f"{host}:{port} shows the {key.key_type} host key {key.fingerprint}. "
                           "Check it on the server (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then pass "
                           f"--host-key-fingerprint {key.fingerprint}, or --trust-host-key to accept it as it is",
                           {"fingerprint": key.fingerprint})
    return scanned


def refuse_blind_repin(store: Store, name: str, host: str, port: int, key: hostkeys.HostKey, trust: bool) -> None:
    """--trust-host-key accepts a server's key as it is, so it may pin a
    server nobody pinned yet, or confirm the pin it has; it never replaces
    the key another destination pinned (that takes `dest trust` on that
    destination, or the matching --host-key-fingerprint)."""
    if not trust:
        return
    others = hostkeys.other_pins(store.destination_rows(), name, host, port, key)
    if others:
        other, pinned = sorted(others.items())[0]
        raise Conflict(f"trust_host_key: {host}:{port} is pinned by destination {other!r} to {pinned.fingerprint}, "
                       f"but now shows {key.fingerprint}; --trust-host-key does not replace another destination's "
                       f"pin. If the server's key really changed, check it on the server and pass "
                       f"--host-key-fingerprint {key.fingerprint}, or run: anemonectl dest trust {other!r}; "
                       "nothing was saved",
                       field="trust_host_key", details={"fingerprint": key.fingerprint, "pinned_by": other})


async def pin(store: Store, config: Config, name: str, host: str, port: int, scanned: hostkeys.Scanned) -> None:
    """Pin the scanned key for every destination on that server (one server,
    one key) and regenerate certs/known_hosts from the database. The
    callers have checked that `name` may change the pin."""
    replaced = hostkeys.other_pins(store.destination_rows(), name, host, port, scanned.key)
    for row in store.destination_rows():
        if row["host"] == host and row["port"] == port:
            store.update_destination(row["name"], {"host_key": scanned.key.to_text(),
                                                          "server_version": scanned.server_version})
    if replaced:
        event(logging.WARNING, "host key pin replaced", dest=",".join(sorted(replaced)), by=name, host=host, port=port,
              host_key=scanned.key.fingerprint, previous=",".join(sorted({k.fingerprint for k in replaced.values()})))
    await write_known_hosts(store, config)


_KNOWN_HOSTS_LOCK = asyncio.Lock()


async def write_known_hosts(store: Store, config: Config) -> None:
    """Regenerate certs/known_hosts (written and fsynced in a thread). One at
    a time, each from the rows as they are when its turn comes, so that the
    last file written is the newest state."""
    async with _KNOWN_HOSTS_LOCK:
        await asyncio.to_thread(access.write_known_hosts, config, store.destination_rows())
