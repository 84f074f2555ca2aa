"""Start the real anemoned process on a throwaway data dir and drive it with
the real anemonectl. Used by the integration tests, the demo and the bench.

Readiness is what systemd would see: the helper binds a datagram socket,
passes it as NOTIFY_SOCKET and waits for READY=1.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import accounts

if TYPE_CHECKING:
    from .sshd import SshServer

#: For the tests: a silent server is told after 4 s (not 10) and probed
#: after 3 s without progress (not 20): the same behaviour, a shorter suite
#: (a probe that finds the server answering lets the sync go on).
QUICK_FAILURES = {"ANEMONED_PREFLIGHT_TIMEOUT_S": "4", "ANEMONED_PROBE_AFTER_S": "3"}
BIN = Path(sys.executable).parent
ANEMONED = str(BIN / "anemoned")
ANEMONECTL = str(BIN / "anemonectl")


class DaemonProcess:
    """The daemon as the unit runs it: when we are root, as its own account
    (accounts.DAEMON_ACCOUNT) with the unit's capabilities, via setpriv.

    Users own their trees on a real server; tests write them as root, so
    every tree still owned by root is handed to its own account
    (accounts.for_tree) before a command that reads trees (own_trees)."""

    def __init__(self, workdir: Path, **config: Any) -> None:
        self.as_root = os.getuid() == 0
        if self.as_root and (workdir.is_symlink() or (workdir.is_dir() and any(workdir.iterdir()))):
            self.dir = workdir.resolve()  # a second daemon on the same directory
        elif self.as_root:
            # Somewhere the daemon's account and the users can reach
            # (pytest's temporary directories are 0700 root); workdir
            # points there.
            self.dir = Path(tempfile.mkdtemp(prefix=f"anemone-{workdir.name}-"))
            workdir.parent.mkdir(parents=True, exist_ok=True)
            if workdir.is_dir():
                workdir.rmdir()  # made empty by the caller (tmp_path_factory)
            workdir.symlink_to(self.dir)
        else:
            self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.users_dir = self.dir / "users"
        self.users_dir.mkdir(exist_ok=True)
        if self.as_root:
            account = accounts.ensure(accounts.DAEMON_ACCOUNT)
            self.uid, self.gid = account.pw_uid, account.pw_gid
            self.dir.chmod(0o755)
            os.chown(self.dir, self.uid, self.gid)
            self.users_dir.chmod(0o755)
            self.data_dir.mkdir(exist_ok=True)
            os.chown(self.data_dir, self.uid, self.gid)
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
        self.socket = Path(config.pop("socket", self.dir / "anemoned.sock"))
        self.config_path = self.dir / "anemoned.yaml"
        self.log = self.dir / "anemoned.log"
        self.config: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "users_dir": str(self.users_dir),
            "socket": str(self.socket),
            "log_level": "debug",
            **config,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify: socket.socket | None = None
        self.notifications: list[str] = []

    def write_config(self, **changes: Any) -> None:
        self.config.update(changes)
        self.config_path.write_text(yaml.safe_dump(self.config))

    def start(self, timeout_s: float = 30.0, env: dict[str, str] | None = None, log_to_terminal: bool = False) -> None:
        self.write_config()
        notify_path = self.dir / "notify.sock"
        notify_path.unlink(missing_ok=True)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(notify_path))
        self.notifications = []
        # Read notifications as systemd would, all the time, so that the
        # daemon's queue never fills up.
        self._reader = threading.Thread(target=self._read_notifications, args=(self.notify,), daemon=True)
        self._reader.start()
        self.config_path.chmod(0o644)
        if self.as_root:
            notify_path.chmod(0o666)
            # Like systemd's RuntimeDirectory=: the socket's directory is the daemon's.
            if self.socket.parent.stat().st_uid == 0 and self.socket.parent != self.dir:
                os.chown(self.socket.parent, self.uid, self.gid)
        prefix = accounts.setpriv_prefix(accounts.DAEMON_ACCOUNT) if self.as_root else []
        self.proc = subprocess.Popen(
            [*prefix, ANEMONED, "--config", str(self.config_path)],
            stdout=subprocess.DEVNULL, stderr=None if log_to_terminal else self.log.open("ab"),
            env={**os.environ, "NOTIFY_SOCKET": str(notify_path), **(env or {})},
        )
        self.wait_notification("READY=1", timeout_s)

    def _read_notifications(self, sock: socket.socket) -> None:
        while True:
            try:
                self.notifications.append(sock.recv(4096).decode())
            except OSError:
                return  # closed by stop()

    def wait_notification(self, wanted: str, timeout_s: float = 30.0) -> str:
        """Block until a notification containing `wanted` arrives."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for n in list(self.notifications):
                if wanted in n:
                    return n
            if self.proc.poll() is not None:
                raise RuntimeError(f"anemoned exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
            time.sleep(0.02)
        raise TimeoutError(f"no {wanted} from anemoned; got {self.notifications}; log:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            if not any("STOPPING=1" in n for n in self.notifications):  # not already stopping
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        self._close_notify()
        return code

    def _close_notify(self) -> None:
        if self.notify is not None:
            self.notify.shutdown(socket.SHUT_RDWR)
            self.notify.close()
            self.notify = None

    def cleanup(self) -> None:
        """Remove the work directory made outside pytest's (as root)."""
        if self.as_root:
            shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self._close_notify()

    # -- the real client ----------------------------------------------------

    def own_trees(self) -> None:
        """Hand every tree in users_dir still owned by root to its account."""
        if not self.as_root:
            return
        for entry in os.scandir(self.users_dir):
            if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == 0:
                account = accounts.for_tree(entry.name)
                accounts.chown_tree(Path(entry.path), account.pw_uid, account.pw_gid)

    def ctl(self, *args: str, stdin: str | None = None, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        if args and args[0] in ("sync", "verify"):
            self.own_trees()
        return subprocess.run(
            [ANEMONECTL, "--socket", str(self.socket), *args],
            input=stdin, capture_output=True, text=True, timeout=timeout_s,
        )

    def add_destination(self, name: str, sshd: "SshServer", remote: Path | str, *extra: str, pin: bool = True,
                        stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`dest add` for a directory on the test sshd, its host key pinned
        by the fingerprint the server really has (unless pin is off); with
        check, a refusal fails loudly."""
        args = ["dest", "add", name, "--host", sshd.host, "--port", str(sshd.port), "--user", sshd.user,
                "--remote-path", str(remote), *extra]
        if pin:
            args += ["--host-key-fingerprint", sshd.host_key_fingerprint()]
        res = self.ctl(*args, stdin=stdin)
        if check and res.returncode != 0:
            raise AssertionError(f"dest add {name} exited {res.returncode}: {res.stderr}")
        return res

    def ctl_json(self, *args: str, stdin: str | None = None, expect: int = 0, timeout_s: float = 120.0) -> Any:
        res = self.ctl(*args, "--json", stdin=stdin, timeout_s=timeout_s)
        assert res.returncode == expect, f"anemonectl {' '.join(args)} exited {res.returncode}: {res.stderr}{res.stdout}"
        return json.loads(res.stdout)

    def wait_for_progress(self, job_id: int, timeout_s: float = 60) -> dict[str, Any]:
        """The job's progress once rclone has sent some bytes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.ctl_json("job", "show", str(job_id))
            progress = job.get("progress") or {}
            if progress.get("bytes", 0) > 0:
                return progress
            assert job["state"] in ("queued", "running"), job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} made no progress in {timeout_s} s")

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One raw JSON-RPC exchange; returns the whole response object."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(self.socket))
            s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode() + b"\n")
            return read_reply(s)


def read_reply(sock: socket.socket) -> dict[str, Any]:
    """One newline-terminated JSON-RPC reply from a raw socket."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, "the daemon closed the connection without a reply"
        buf += chunk
    return json.loads(buf)
