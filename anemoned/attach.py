"""Connecting rclone to a user's tree without giving rclone the user's
rights, or the user rclone's secrets.

rclone, running as the daemon's user, holds the destination's key and
password. It must not read users' trees with the daemon's rights (a
symlink swapped in after listing would be followed), and no process of
the user's may hold the SSH session (the user could take it over, and with
it every user's remote copy). So the two meet over pipes:

- For each user of a job the daemon makes a Grant: a random token bound to
  the user's identity, a directory and whether it may be written.
- rclone's source (or restore target) is an sftp remote whose "ssh"
  command is relay.py with the grant's token. rclone starts it for every
  SFTP connection it opens.
- relay.py passes its stdin/stdout to the daemon over a Unix socket in a
  0700 directory of the daemon's (peer uid checked), and the daemon starts
  OpenSSH's sftp-server on those pipes as the user (`-R` read-only unless
  the grant writes, `-d` the directory), without capabilities.

So every file is opened by a process with exactly the user's rights, and
the user's process sees nothing but SFTP requests for their own tree.
Each connection is served by a thread that has the spawner (spawner.py)
start the sftp-server, waits for its exit status and hands it back to the
relay, as ssh would.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import stat
import struct
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import userproc
from .identity import UserIdentity
from .rclone import space_list
from .logs import event

SFTP_SERVER_PATHS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/lib/ssh/sftp-server",
                     "/usr/libexec/sftp-server")
RELAY = str(Path(__file__).with_name("relay.py"))


def relay_python() -> str:
    """An interpreter this process may execute for relay.py (which needs
    only builtin modules): ours, else the system's."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if candidate and os.access(candidate, os.X_OK) and os.access(os.path.realpath(candidate), os.X_OK):
            return candidate
    return sys.executable


def find_sftp_server() -> str | None:
    for path in SFTP_SERVER_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


@dataclass
class Grant:
    token: str
    identity: UserIdentity
    root: Path
    writable: bool
    children: set[userproc.Child] = field(default_factory=set)
    revoked: bool = False


class AttachServer:
    def __init__(self, sock_dir: Path, sftp_server: str) -> None:
        self.sock_dir = sock_dir
        self.sock_path = sock_dir / "attach.sock"
        self.sftp_server = sftp_server
        self.grants: dict[str, Grant] = {}
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.python = relay_python()

    def start(self) -> None:
        self.sock_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.sock_dir, 0o700)
        self.sock_path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.sock_path))
        self.listener.listen(256)
        threading.Thread(target=self._accept_loop, name="attach", daemon=True).start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with self.lock:
            for grant in list(self.grants.values()):
                self._revoke_locked(grant)

    # -- grants ------------------------------------------------------------

    def grant(self, identity: UserIdentity, root: Path, writable: bool = False) -> Grant:
        g = Grant(secrets.token_hex(16), identity, root, writable)
        with self.lock:
            self.grants[g.token] = g
        return g

    def ssh_command(self, grant: Grant) -> str:
        """The sftp backend's `ssh` option for this grant: only values the
        daemon made (its Python, relay.py, its socket, a random token)."""
        return space_list([self.python, "-I", "-S", RELAY, str(self.sock_path), grant.token])

    def revoke(self, grant: Grant) -> None:
        """No new connections for the grant; its running servers killed."""
        with self.lock:
            self._revoke_locked(grant)

    def _revoke_locked(self, grant: Grant) -> None:
        grant.revoked = True
        self.grants.pop(grant.token, None)
        for child in list(grant.children):
            child.kill()

    # -- serving -------------------------------------------------------------

    def _accept_loop(self) -> None:
        while self.listener is not None:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="attach-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        fds: list[int] = []
        status = 1
        try:
            uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
            msg, fds, _, _ = socket.recv_fds(conn, 256, 2)
            token = msg.split(b"\n", 1)[0].decode("ascii", errors="replace")
            with self.lock:
                grant = self.grants.get(token)
            if uid != os.getuid() or grant is None or len(fds) != 2:
                event(logging.WARNING, "attach refused", peer_uid=uid)
            else:
                stdin_fd, stdout_fd = fds
                fds = []  # the server's now
                status = self._run_server(grant, stdin_fd, stdout_fd)
        except OSError as err:
            event(logging.WARNING, "attach failed", error=err.strerror or str(err))
        except userproc.SpawnerGone as err:  # the daemon is going down, or its spawner died: no reader
            event(logging.WARNING, "attach failed", error=str(err))
        finally:
            for fd in fds:
                os.close(fd)
            try:
                conn.sendall(f"exit {status}\n".encode())
            except OSError:
                pass
            conn.close()

    def _run_server(self, grant: Grant, stdin_fd: int, stdout_fd: int) -> int:
        if not grant.writable and _swapped(grant):
            return 1
        # sftp-server expands %-tokens in -d; a literal % is doubled. -u 077:
        # a restore creates files and directories private to their owner
        # (SFTP carries no modes here: 0644 would open a 0600 file).
        argv = [self.sftp_server, "-d", str(grant.root).replace("%", "%%"), "-u", "077"]
        if not grant.writable:
            argv.insert(1, "-R")
        if grant.revoked:
            return 1
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            started = userproc.spawner().start(grant.identity, argv, {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                               stdin_fd, stdout_fd, null)
        finally:
            for fd in (stdin_fd, stdout_fd, null):
                os.close(fd)
        child = started.result()  # the spawner answers at once (it never waits for the child)
        with self.lock:
            grant.children.add(child)
            if grant.revoked:  # revoked while it started
                child.kill()
        code = child.exited.result()
        with self.lock:
            grant.children.discard(child)
        return code if code >= 0 else 128 - code


def _swapped(grant: Grant) -> bool:
    """backup/ is no longer the directory its owner's scan saw (a symlink
    swapped in since). Checked where the daemon may look; the user's own
    0700 directory it may not, and only its owner could swap it there."""
    try:
        st = os.lstat(grant.root)
    except PermissionError:
        return False
    except OSError:
        return True
    return not stat.S_ISDIR(st.st_mode) or st.st_uid != grant.identity.uid
