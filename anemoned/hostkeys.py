"""Pinned host keys: fetch a server's key, pick one, keep certs/known_hosts.

Exactly one key is pinned per server (host, port): the strongest type the
server offers (Ed25519, then ECDSA, then RSA). rclone is told to negotiate
only that key type (host_key_algorithms), so the fingerprint an operator
checked is the only key that is ever accepted.

certs/known_hosts is generated from the destinations' pinned keys: the
database is the source of truth, the file what rclone reads.
"""
from __future__ import annotations

import asyncio
import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .keys import fingerprint_of_blob, write_atomically

#: Preferred first.
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
#: What rclone should negotiate for a pinned key of each type.
ALGORITHMS = {
    "ssh-ed25519": "ssh-ed25519",
    "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384": "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521": "ecdsa-sha2-nistp521",
    "ssh-rsa": "rsa-sha2-512 rsa-sha2-256",
}
SCAN_TIMEOUT_S = 10


class ScanError(Exception):
    """The server's host key could not be fetched; .reason is a failure class."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class HostKey:
    key_type: str
    blob_b64: str

    @property
    def fingerprint(self) -> str:
        return fingerprint_of_blob(base64.b64decode(self.blob_b64))

    @property
    def algorithms(self) -> str:
        return ALGORITHMS[self.key_type]

    def to_text(self) -> str:
        return f"{self.key_type} {self.blob_b64}"

    @classmethod
    def from_text(cls, text: str) -> "HostKey":
        key_type, blob = text.split()[:2]
        return cls(key_type, blob)


def known_hosts_name(host: str, port: int) -> str:
    """How Go's knownhosts.Normalize (which rclone uses) names a server."""
    if port != 22:
        return f"[{host}]:{port}"
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class Scanned:
    key: HostKey
    server_version: str | None


#: ssh-keyscan reports the server's identification as "# host:port SSH-2.0-...".
_BANNER = re.compile(r"^# \S+ (SSH-2\.0-[\x21-\x7e][\x20-\x7e]{0,200})\Z")


def parse_banner(output: str) -> str | None:
    """The server's SSH identification line from ssh-keyscan's comments
    (printable ASCII only, as RFC 4253 requires), or None."""
    for line in output.splitlines():
        m = _BANNER.match(line.rstrip("\r"))
        if m:
            return m.group(1)
    return None


def parse_keyscan(output: str) -> list[HostKey]:
    """The keys in ssh-keyscan output, preferred type first; unknown types
    and comment lines are ignored."""
    keys = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#") and parts[1] in KEY_TYPES:
            try:
                base64.b64decode(parts[2], validate=True)
            except ValueError:
                continue
            keys.append(HostKey(parts[1], parts[2]))
    return sorted(keys, key=lambda k: KEY_TYPES.index(k.key_type))


async def scan(host: str, port: int) -> Scanned:
    """The server's preferred host key and identification, fetched with
    ssh-keyscan.

    host and port were validated (a DNS name or an IP literal, 1-65535) and
    are passed as separate argv entries after `--`, never through a shell.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            "ssh-keyscan", "-T", str(SCAN_TIMEOUT_S), "-p", str(port), "-t", "ed25519,ecdsa,rsa", "--", host,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={"PATH": "/usr/bin:/bin"},
        )
    except FileNotFoundError:
        raise ScanError("unreachable", "ssh-keyscan is not installed (package openssh-client)") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), SCAN_TIMEOUT_S + 5)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise ScanError("timeout", f"{host}:{port} did not answer within {SCAN_TIMEOUT_S} s") from None
    keys = parse_keyscan(out.decode(errors="replace"))
    if not keys:
        text = err.decode(errors="replace").lower()
        if "timeout" in text or "timed out" in text:
            raise ScanError("timeout", f"{host}:{port} did not answer within {SCAN_TIMEOUT_S} s")
        if "name or service not known" in text or "could not resolve" in text or "no address" in text:
            raise ScanError("unreachable", f"{host} cannot be resolved")
        raise ScanError("unreachable", f"no SSH server answered on {host}:{port}")
    return Scanned(keys[0], parse_banner(err.decode(errors="replace")) or parse_banner(out.decode(errors="replace")))


def other_pins(rows: Iterable[dict[str, Any]], name: str, host: str, port: int, key: HostKey) -> dict[str, HostKey]:
    """{destination: pinned key} for the other destinations on host:port
    whose pinned key is not `key`. Pure.

    One server has one pin, shared by its destinations; this says whose pin
    a new key would replace. The rule (README "Pinned host keys"): a pin
    changes only by `dest trust` on one of its destinations or by an
    explicit fingerprint that matches the server's key, never by a blind
    --trust-host-key on another destination."""
    out = {}
    for row in rows:
        if row["name"] != name and row["host"] == host and row["port"] == port and row.get("host_key"):
            pinned = HostKey.from_text(row["host_key"])
            if pinned != key:
                out[row["name"]] = pinned
    return out


def render_known_hosts(pins: Iterable[tuple[str, int, HostKey]]) -> str:
    lines = sorted({f"{known_hosts_name(h, p)} {k.to_text()}" for h, p, k in pins})
    return "".join(line + "\n" for line in lines)


def write_known_hosts(path: Path, pins: Iterable[tuple[str, int, HostKey]]) -> None:
    write_atomically(path, render_known_hosts(pins).encode(), 0o644)
