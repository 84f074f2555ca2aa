"""One SSH round trip before authentication, timed (reach.preflight_round_trip).

The start of an SSH key exchange (RFC 4253 section 7, RFC 8731): with the
server's KEXINIT read, send ours, offering only curve25519-sha256, and an
ephemeral curve25519 key (KEX_ECDH_INIT); the server answers with
KEX_ECDH_REPLY after one round trip and a signature (well under a
millisecond). Nothing is authenticated and nothing the server sends is
used beyond its message numbers and its list of key exchanges. A server
that does not offer curve25519 is not sent anything (NoRoundTrip), so it
logs no failed negotiation.
"""
from __future__ import annotations

import asyncio
import os
import struct
import time

_KEXINIT, _KEX_ECDH_INIT, _KEX_ECDH_REPLY = 20, 30, 31
_KEX = (b"curve25519-sha256", b"curve25519-sha256@libssh.org")
#: RFC 4253 6.1: implementations handle packets of at least 35000 bytes;
#: anything longer is not a server worth timing.
_MAX_PACKET = 35000
#: Messages read while waiting for the reply (IGNORE, DEBUG, EXT_INFO...)
_MAX_MESSAGES = 8


class NoRoundTrip(Exception):
    """The server's answers did not allow one."""


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _packet(payload: bytes) -> bytes:
    """RFC 4253 6: unencrypted binary packet, padded to 8 bytes."""
    pad = 8 - (5 + len(payload)) % 8
    pad += 8 if pad < 4 else 0
    return struct.pack(">IB", 1 + len(payload) + pad, pad) + payload + os.urandom(pad)


async def _read_payload(reader: asyncio.StreamReader) -> bytes:
    length, pad = struct.unpack(">IB", await reader.readexactly(5))
    if not 1 + pad <= length <= _MAX_PACKET:
        raise NoRoundTrip(f"a packet of {length} bytes")
    body = await reader.readexactly(length - 1)
    return body[:len(body) - pad]


def _name_list(payload: bytes, index: int) -> list[bytes]:
    """The index-th name-list of a KEXINIT payload (after type and cookie)."""
    at = 17
    for _ in range(index + 1):
        if at + 4 > len(payload):
            raise NoRoundTrip("a short KEXINIT")
        (size,) = struct.unpack(">I", payload[at:at + 4])
        value, at = payload[at + 4:at + 4 + size], at + 4 + size
    return value.split(b",")


def _kexinit(server: bytes) -> bytes:
    """Our KEXINIT: only curve25519, an ed25519 host key when the server
    has one (the fastest signature: what is timed is the link), and the
    server's own first choices for the rest (never used: the exchange
    stops at its first reply)."""
    host_keys = _name_list(server, 1)
    lists = [b",".join(_KEX), b"ssh-ed25519" if b"ssh-ed25519" in host_keys else host_keys[0]]
    lists += [_name_list(server, i)[0] for i in range(2, 10)]
    return bytes([_KEXINIT]) + os.urandom(16) + b"".join(map(_string, lists)) + b"\0" + bytes(4)


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    """Seconds from sending our key exchange to the server's reply."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    server = await _read_payload(reader)
    if not server or server[0] != _KEXINIT:
        raise NoRoundTrip("no KEXINIT")
    if not set(_KEX) & set(_name_list(server, 0)):
        raise NoRoundTrip("no curve25519 key exchange")
    public = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    writer.write(_packet(_kexinit(server)) + _packet(bytes([_KEX_ECDH_INIT]) + _string(public)))
    await writer.drain()
    sent = time.monotonic()
    for _ in range(_MAX_MESSAGES):
        payload = await _read_payload(reader)
        if payload and payload[0] == _KEX_ECDH_REPLY:
            return time.monotonic() - sent
    raise NoRoundTrip("no KEX_ECDH_REPLY")
