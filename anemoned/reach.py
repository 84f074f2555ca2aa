"""Does the server answer at all? A check every job makes before rclone.

rclone bounds a TCP connect with --contimeout but the SSH handshake only
with --timeout (an idle timeout), and retries both: against a server that
accepts connections and then says nothing (stopped, overloaded, a
half-dead middlebox) a sync took 3 minutes to fail, and a usage job
34 s against a refused port. This check opens one TCP connection, waits
for the server's SSH identification line and closes: a refused port
fails at once as `unreachable`, silence fails after PREFLIGHT_TIMEOUT_S as
`timeout`, and the job never starts rclone against a dead server.

It sends our own identification first, so the server logs an orderly
"connection closed" rather than a protocol error.
"""
from __future__ import annotations

import asyncio
import os
import socket

from . import rclone, sshkex

#: ANEMONED_PREFLIGHT_TIMEOUT_S lowers it for tests only (the suite's
#: silent servers then cost seconds, not tens of seconds).
PREFLIGHT_TIMEOUT_S = float(os.environ.get("ANEMONED_PREFLIGHT_TIMEOUT_S", "10"))
_IDENT = b"SSH-2.0-anemoned-preflight\r\n"
#: How long the timed round trip may take (a satellite link's is 0.6 s).
ROUND_TRIP_WAIT_S = 3.0


class Unanswered(Exception):
    """The server did not answer; .cls says how."""

    def __init__(self, cls: rclone.FailureClass, message: str) -> None:
        super().__init__(message)
        self.cls = cls

    @property
    def error(self) -> str:
        """The job error: "class: message"."""
        return f"{self.cls}: {self}"


async def preflight(host: str, port: int, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> str:
    """The server's SSH identification line; raises Unanswered with the
    class that fits when there is none."""
    ident, _ = await _answer(host, port, timeout_s, round_trip=False)
    return ident


async def preflight_round_trip(host: str, port: int, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> float | None:
    """preflight, then one SSH round trip timed (None when the server
    offers no key exchange this can do): how far away the server is.

    How long the identification line takes says little: sshd starts a
    process per connection first (8-36 ms on loopback here, by load), and
    a TCP connect through a proxy (or testbed/linksim.py) is answered by
    the proxy. So, with the server's key exchange offer read, this sends
    a curve25519 key exchange and times the server's reply, then closes
    before any authentication (the server logs the same closed connection
    as for the plain preflight)."""
    _, rtt = await _answer(host, port, timeout_s, round_trip=True)
    return rtt


async def _answer(host: str, port: int, timeout_s: float, round_trip: bool) -> tuple[str, float | None]:
    where = f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except asyncio.TimeoutError:
        raise Unanswered(rclone.TIMEOUT, f"{where} did not accept a connection within {timeout_s:.0f} s") from None
    except socket.gaierror as err:
        raise Unanswered(rclone.UNREACHABLE, f"{host} cannot be resolved: {err.strerror}") from None
    except ConnectionRefusedError:
        raise Unanswered(rclone.UNREACHABLE, f"cannot connect to {where}: connection refused") from None
    except OSError as err:
        raise Unanswered(rclone.UNREACHABLE, f"cannot connect to {where}: {err.strerror or err}") from None
    try:
        writer.write(_IDENT)
        # RFC 4253: the server may send other lines before its identification.
        deadline = asyncio.get_running_loop().time() + timeout_s
        ident = None
        for _ in range(20):
            remaining = deadline - asyncio.get_running_loop().time()
            line = await asyncio.wait_for(reader.readline(), max(remaining, 0.001))
            if not line:
                raise Unanswered(rclone.UNREACHABLE, f"{where} closed the connection before identifying itself "
                                 "(too many connections, or an address-based refusal on the server)")
            if line.startswith(b"SSH-"):
                ident = line.decode("ascii", errors="replace").strip()
                break
        if ident is None:
            raise Unanswered(rclone.UNKNOWN, f"{where} does not speak SSH")
        if not round_trip:
            return ident, None
        remaining = deadline - asyncio.get_running_loop().time()
        try:  # a server that never replies costs at most ROUND_TRIP_WAIT_S
            return ident, await asyncio.wait_for(sshkex.round_trip(reader, writer),
                                                 max(min(remaining, ROUND_TRIP_WAIT_S), 0.001))
        except (sshkex.NoRoundTrip, asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            return ident, None  # the server answered; only its distance is unknown
    except asyncio.TimeoutError:
        raise Unanswered(rclone.TIMEOUT, f"{where} accepted the connection but sent nothing within "
                         f"{timeout_s:.0f} s (the SSH server is stopped or overloaded)") from None
    except (OSError, ValueError) as err:
        raise Unanswered(rclone.UNREACHABLE, f"connection to {where} failed: {err}") from None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
