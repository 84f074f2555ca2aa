"""`rclone serve sftp` (the venv's rclone) on a free loopback port, as an
SFTP destination, serving a local directory with an authorized key.

When the tests run as root it runs as an unprivileged account (setpriv),
so that permissions on the served tree mean what they would on a real
server.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .servers import (ensure_system_user, free_port, host_key_fingerprint, new_ed25519_key, owned_dir, signal_tree,
                      stop_process, wait_for_banner)

RCLONE = str(Path(sys.executable).parent / "rclone")
RCLONE_USER = "anemone-rclone"


class RcloneSftpServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        if os.getuid() == 0:
            self.account = ensure_system_user(RCLONE_USER)
        else:
            self.account = pwd.getpwuid(os.getuid())
        self.user = self.account.pw_name
        # Everything the server reads must be readable by its account.
        self.reachable = Path(tempfile.mkdtemp(prefix="anemone-rclone-sftp-"))
        self.reachable.chmod(0o755)
        self.served = owned_dir(self.reachable, "served", self.account)
        self.remote_root = self.served
        self.host_key = self.reachable / "host_ed25519_key"
        self.authorized_keys = self.reachable / "authorized_keys"
        self.authorized_keys.touch()
        self.log = self.dir / "rclone-serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        new_ed25519_key(self.host_key)
        for p in (self.host_key, self.authorized_keys, self.reachable):
            os.chown(p, self.account.pw_uid, self.account.pw_gid)

    def authorize(self, public_key_line: str) -> None:
        """Add a key; rclone reads the file only at start, so a running
        server is restarted."""
        with self.authorized_keys.open("a") as f:
            f.write(public_key_line.strip() + "\n")
        if self.proc is not None:
            self.stop()
            self.start()

    def host_key_fingerprint(self) -> str:
        return host_key_fingerprint(self.host_key.with_suffix(".pub"))

    def remote_dir(self, name: str, writable: bool = True) -> Path:
        return owned_dir(self.served, name, self.account, writable)

    def client_path(self, path: Path) -> str:
        """The server shows its served directory as `/`."""
        return "/" + "/".join(path.relative_to(self.served).parts)

    def start(self) -> None:
        drop = []
        if os.getuid() == 0:
            drop = ["setpriv", f"--reuid={self.account.pw_uid}", f"--regid={self.account.pw_gid}", "--clear-groups",
                    "--"]
        self.proc = subprocess.Popen(
            [*drop, RCLONE, "serve", "sftp", str(self.served), "--config", "", "--addr", f"{self.host}:{self.port}",
             "--user", self.user, "--authorized-keys", str(self.authorized_keys), "--key", str(self.host_key),
             "--cache-dir", str(self.reachable / "cache"), "-v"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("ab"), start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.reachable)})
        wait_for_banner(self.host, self.port, self.proc, self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)
        self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        signal_tree(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        signal_tree(self.proc.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.reachable, ignore_errors=True)
