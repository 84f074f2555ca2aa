"""The SSH round trip that tells a LAN from a link (reach.preflight_round_trip,
sshkex.py): timed against the real sshd directly and through the link
simulator, and bounded against servers that answer oddly or not at all."""
from __future__ import annotations

import asyncio
import struct
import time

import pytest

from anemoned import reach, sshkex
from testbed.linksim import LinkSim
from testbed.sshd import SshServer


def test_the_round_trip_is_the_links_and_the_server_logs_no_error(sshd: SshServer):
    near = asyncio.run(reach.preflight_round_trip(sshd.host, sshd.port))
    with LinkSim(sshd.host, sshd.port, delay_s=0.025) as link:
        far = asyncio.run(reach.preflight_round_trip(sshd.host, link.port))
    assert near is not None and far is not None
    assert near < 0.05 <= far < 0.5  # 50 ms through the simulator, plus the server's key exchange
    log = sshd.log.read_text(errors="replace")
    assert "Connection closed by" in log and "[preauth]" in log
    assert "no matching" not in log and "Bad packet" not in log and "invalid format" not in log


def kexinit(kex: bytes) -> bytes:
    lists = [kex, b"ssh-ed25519"] + [b"aes128-ctr"] * 2 + [b"hmac-sha2-256"] * 2 + [b"none"] * 2 + [b""] * 2
    payload = bytes([20]) + bytes(16) + b"".join(struct.pack(">I", len(x)) + x for x in lists) + bytes(5)
    return sshkex._packet(payload)


@pytest.mark.parametrize("after_ident, sends_anything", [
    (struct.pack(">IB", 2**31, 4), False),  # a packet of 2 GiB announced
    (kexinit(b"diffie-hellman-group14-sha256"), False),  # no curve25519: nothing sent, nothing logged
    (kexinit(b"curve25519-sha256"), True),  # then silence
    (b"\x00\x00\x00\x0c\x0a" + b"x" * 7, False),  # a packet whose padding is longer than itself
])
def test_odd_servers_give_no_round_trip_within_a_bound(monkeypatch, after_ident, sends_anything):
    monkeypatch.setattr(reach, "ROUND_TRIP_WAIT_S", 0.5)
    received = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-odd\r\n" + after_ident)
        try:
            while chunk := await reader.read(65536):
                received.extend(chunk)
        finally:
            writer.close()

    async def main() -> float | None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await reach.preflight_round_trip("127.0.0.1", port)

    started = time.monotonic()
    assert asyncio.run(main()) is None
    assert time.monotonic() - started < 2
    assert received.startswith(b"SSH-2.0-anemoned-preflight\r\n")
    assert (len(received) > len(b"SSH-2.0-anemoned-preflight\r\n")) == sends_anything
