"""A real systemd-journald for tests, in a log namespace of its own.

journald runs in a private mount namespace where /run/systemd and
/var/log/journal are bind mounts of directories in the test's work dir, so
its sockets and journal files live there and nothing of the machine's own
logging is touched. A process under test reaches it the way a service with
systemd's `LogNamespace=` does: in a mount namespace of its own, the
namespace's socket directory is mounted on /run/systemd/journal
(`wrap_command`), and its stderr is a stream connected to journald's stdout
socket, named by JOURNAL_STREAM (`stream`).

Needs root (mount namespaces) and systemd-journald; `available()` says.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

JOURNALD = "/lib/systemd/systemd-journald"
NAMESPACE = "anemonetest"


def available() -> str | None:
    """Why a real journald cannot run here, or None when it can."""
    if not os.access(JOURNALD, os.X_OK):
        return f"{JOURNALD} is not installed"
    if not shutil.which("journalctl") or not shutil.which("unshare"):
        return "journalctl or unshare is missing"
    if os.geteuid() != 0:
        return "mount namespaces need root"
    if not Path("/etc/machine-id").exists():
        return "/etc/machine-id is missing"
    return None


class Journald:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        # Socket paths must fit in 108 bytes: the sockets live in a short
        # directory of their own.
        self.run_dir = Path(tempfile.mkdtemp(prefix="anemone-journald-"))
        self.log_dir = workdir / "var-log-journal"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_dir(self) -> Path:
        return self.run_dir / f"journal.{NAMESPACE}"

    def start(self, timeout_s: float = 15.0) -> None:
        for d in (self.run_dir, self.log_dir, self.dir / "run-log"):
            d.mkdir(parents=True, exist_ok=True)
        script = (
            f"mkdir -p /run/systemd /var/log/journal /run/log && "
            f"mount --bind {shlex.quote(str(self.run_dir))} /run/systemd && "
            f"mount --bind {shlex.quote(str(self.log_dir))} /var/log/journal && "
            f"mount --bind {shlex.quote(str(self.dir / 'run-log'))} /run/log && "
            f"exec {JOURNALD} {NAMESPACE}"
        )
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                     stdout=subprocess.DEVNULL, stderr=(self.dir / "journald.err").open("wb"))
        deadline = time.monotonic() + timeout_s
        while not (self.socket_dir / "socket").exists() or not (self.socket_dir / "stdout").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"journald did not start: {(self.dir / 'journald.err').read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def wrap_command(self, argv: list[str]) -> list[str]:
        """argv run with this journald's socket at /run/systemd/journal."""
        script = (f"mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/journal && "
                  f"mount --bind {shlex.quote(str(self.socket_dir))} /run/systemd/journal && exec \"$@\"")
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]

    def stream(self, identifier: str) -> tuple[socket.socket, str]:
        """A stream to journald's stdout socket, as systemd gives a service
        for its stderr, and the JOURNAL_STREAM value that names it."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.socket_dir / "stdout"))
        s.shutdown(socket.SHUT_RD)
        # identifier, unit, priority, level_prefix, forward to syslog/kmsg/console
        s.sendall(f"{identifier}\n\n6\n1\n0\n0\n0\n".encode())
        st = os.fstat(s.fileno())
        return s, f"{st.st_dev}:{st.st_ino}"

    def records(self, *matches: str) -> list[dict[str, Any]]:
        """Every record (journalctl -o json), optionally FIELD=value matches."""
        dirs = list(self.log_dir.glob(f"*.{NAMESPACE}"))
        if not dirs:
            return []
        out = subprocess.run(["journalctl", "-D", str(dirs[0]), "-o", "json", "--no-pager", *matches],
                             capture_output=True, text=True, timeout=30)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def wait_for(self, *matches: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.records(*matches)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)
