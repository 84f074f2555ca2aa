"""A blocking JSON-RPC client over the daemon's Unix socket."""
from __future__ import annotations

import itertools
import socket
from typing import Any

from anemoned import protocol


class DaemonUnreachable(Exception):
    """No daemon answers on the socket, or it refuses this user."""


class Client:
    def __init__(self, path: str, timeout_s: float = 30.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                raise DaemonUnreachable(f"anemoned is not running (nothing listens on {self.path})") from None
            except PermissionError:
                sock.close()
                raise DaemonUnreachable(
                    f"permission denied on {self.path}: run as root or as a member of the daemon's socket_group"
                ) from None
            except OSError as exc:
                sock.close()
                raise DaemonUnreachable(f"cannot connect to {self.path}: {exc.strerror}") from None
            self._sock = sock
        return self._sock

    def call(self, method: str, params: dict[str, Any] | None = None, timeout_s: float | None = None) -> Any:
        """Send one request and return its result; raises protocol.RpcError
        for an error reply and DaemonUnreachable when there is no daemon."""
        sock = self._connect()
        sock.settimeout(timeout_s or self.timeout_s)
        try:
            try:
                sock.sendall(protocol.encode_request(next(self._ids), method, params))
            except (BrokenPipeError, ConnectionResetError):
                # The daemon may answer before reading (a refusal, "too many
                # connections") and close: its answer is still there to read.
                pass
            line = self._read_line(sock)
        except socket.timeout:
            self.close()
            raise DaemonUnreachable(f"anemoned did not answer {method} in time") from None
        except (BrokenPipeError, ConnectionResetError):
            self.close()
            raise DaemonUnreachable("anemoned closed the connection") from None
        try:
            return protocol.parse_response(line)
        except protocol.RpcError as err:
            if err.code == protocol.ErrorCode.PERMISSION_DENIED:
                raise DaemonUnreachable(err.message) from None
            raise

    def _read_line(self, sock: socket.socket) -> bytes:
        while b"\n" not in self._buffer:
            chunk = sock.recv(65536)
            if not chunk:
                if self._buffer.strip():  # an answer that ended without its newline
                    break
                raise ConnectionResetError
            self._buffer += chunk
            if len(self._buffer) > protocol.MAX_RESPONSE_BYTES:
                raise DaemonUnreachable("the daemon's answer is larger than the client accepts")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buffer = b""
