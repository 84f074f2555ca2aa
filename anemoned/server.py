"""The Unix-socket JSON-RPC server: framing, peer credentials and limits.

Every connection is its own task with its own bounds, so a client that sends
garbage, sends nothing, or never reads cannot hold up anyone else:
- a request line longer than MAX_REQUEST_BYTES is answered with
  REQUEST_TOO_LARGE and the connection closed (the reader's buffer is capped
  at that size, so memory stays bounded);
- a connection idle for IDLE_TIMEOUT_S is closed;
- a reply the client does not read within WRITE_TIMEOUT_S aborts the
  connection (the transport's buffer never grows without bound);
- past MAX_CONNECTIONS, new connections get UNAVAILABLE and are closed.
"""
from __future__ import annotations

import asyncio
import errno
import grp
import logging
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from . import crash, protocol
from .logs import event
from .protocol import ErrorCode, Request, RpcError

MAX_CONNECTIONS = 1024
#: Connections the kernel holds for us before we accept them: a burst of
#: hundreds of clients must queue, not be refused.
LISTEN_BACKLOG = 1024
IDLE_TIMEOUT_S = 60.0
WRITE_TIMEOUT_S = 10.0


class AlreadyRunning(Exception):
    pass


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


Dispatch = Callable[[Request, Peer], Awaitable[Any]]


def peer_of(sock: socket.socket) -> Peer:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return Peer(*struct.unpack("3i", creds))


def _peer_groups(peer: Peer) -> set[int]:
    """The peer process's groups, read from /proc so that supplementary
    groups count; falls back to its primary group if it is already gone."""
    groups = {peer.gid}
    try:
        with open(f"/proc/{peer.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Groups:"):
                    groups.update(int(g) for g in line.split()[1:])
    except OSError:
        pass
    return groups


def is_allowed(peer: Peer, own_uid: int, group_gid: int | None) -> bool:
    """Root, the daemon's own user, and members of socket_group."""
    if peer.uid in (0, own_uid):
        return True
    return group_gid is not None and group_gid in _peer_groups(peer)


def bind_unix_socket(path: Path, group: str | None) -> socket.socket:
    """Bind the control socket at path, mode 0660 and group `group`.

    A socket file left by a dead daemon is replaced; one a live daemon
    answers on is not (raises AlreadyRunning); any other file is left alone.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.lstat()
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise AlreadyRunning(f"{path} exists and is not a socket; remove it or choose another `socket`")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)  # stale: nobody listens
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise
            path.unlink(missing_ok=True)
        else:
            raise AlreadyRunning(f"another anemoned is already listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)  # never world-accessible, not even for a moment
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    if group is not None:
        try:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        except PermissionError:
            sock.close()
            path.unlink(missing_ok=True)
            raise PermissionError(f"cannot give the control socket to socket_group {group!r}: the daemon's user "
                                  f"must be a member of it (usermod -aG {group} <daemon user>)") from None
    os.chmod(path, 0o660)
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class RpcServer:
    def __init__(self, path: Path, group: str | None, dispatch: Dispatch) -> None:
        self.path = path
        self.group_gid = grp.getgrnam(group).gr_gid if group else None
        self.group = group
        self.dispatch = dispatch
        self.own_uid = os.getuid()
        self.connections: set[asyncio.Task[None]] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        sock = bind_unix_socket(self.path, self.group)
        # limit caps the reader's buffer: one byte over the request limit
        # lets us tell "too large" from "exactly at the limit".
        self._server = await asyncio.start_unix_server(self._on_connect, sock=sock, limit=protocol.MAX_REQUEST_BYTES + 1,
                                                       backlog=LISTEN_BACKLOG)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self.connections):
                task.cancel()
            await asyncio.gather(*self.connections, return_exceptions=True)
            try:
                if self.path.exists() and stat.S_ISSOCK(self.path.lstat().st_mode):
                    self.path.unlink()
            except OSError:
                pass

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.TimeoutError, asyncio.CancelledError):
            pass
        except Exception as exc:  # a bug must cost one connection, not the daemon
            error_id, where = crash.describe(exc)
            event(logging.ERROR, "connection handler crashed", error=type(exc).__name__, where=where,
                  error_id=error_id)
        finally:
            self.connections.discard(task)
            await _close(writer)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) > MAX_CONNECTIONS:
            await self._send(writer, protocol.encode_error(None, RpcError(ErrorCode.UNAVAILABLE, "too many connections; try again")))
            return
        peer = peer_of(writer.get_extra_info("socket"))
        if not is_allowed(peer, self.own_uid, self.group_gid):
            event(logging.WARNING, "refused control connection", uid=peer.uid, pid=peer.pid)
            await self._send(writer, protocol.encode_error(None, RpcError(
                ErrorCode.PERMISSION_DENIED,
                f"permission denied: uid {peer.uid} is not root, the daemon's user, or in socket_group",
            )))
            return
        while True:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT_S)
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():  # a last request without newline
                    await self._answer(writer, exc.partial, peer)
                return
            except asyncio.LimitOverrunError:
                await self._send(writer, protocol.encode_error(None, RpcError(
                    ErrorCode.REQUEST_TOO_LARGE, f"request larger than {protocol.MAX_REQUEST_BYTES} bytes")))
                return
            if line.strip():
                await self._answer(writer, line, peer)

    async def _answer(self, writer: asyncio.StreamWriter, line: bytes, peer: Peer) -> None:
        try:
            request = protocol.parse_request(line)
        except RpcError as err:
            await self._send(writer, protocol.encode_error(protocol.request_id_of(line), err))
            return
        try:
            result = await self.dispatch(request, peer)
            reply = protocol.encode_result(request.id, result)
        except RpcError as err:
            reply = protocol.encode_error(request.id, err)
        except Exception as exc:  # a bug: told with where it happened, never with values
            error_id, where = crash.describe(exc)
            event(logging.ERROR, "method failed", method=request.method, error=type(exc).__name__, where=where,
                  error_id=error_id)
            reply = protocol.encode_error(request.id, RpcError(
                ErrorCode.INTERNAL_ERROR, f"internal error in {request.method} (error id {error_id}); see the daemon log",
                {"error_id": error_id}))
        if not request.is_notification:
            await self._send(writer, reply)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close after what was written has left (an answer written just before,
    such as a refusal, must reach the client); a client that does not read
    is cut off after WRITE_TIMEOUT_S."""
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError, asyncio.CancelledError):
        pass
    finally:
        writer.transport.abort()
