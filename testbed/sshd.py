"""A real OpenSSH sshd on a free loopback port, as an SFTP destination.

Used by the test fixtures, the demo and the benchmark. It has its own host
key, its own authorized_keys, internal-sftp and StrictModes off so that it
runs from a temporary directory. It listens on 127.0.0.1 only.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from . import accounts
from .servers import free_port, signal_tree, stop_process

__all__ = ["SFTP_USER", "SshServer", "free_port"]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


#: The unprivileged account backups log in as when we run as root, like the
#: seed document's dedicated `anemone-backup` user: permissions on the remote
#: side then mean what they would on a real server.
SFTP_USER = "anemone-sftp"
_password: str | None = None


#: Where the account's password is kept between test processes (root only),
#: so that test runs side by side do not change it under each other.
_PASSWORD_FILE = Path("/run/anemone-test-sftp-password")


def _ensure_sftp_user() -> str:
    """Create SFTP_USER if needed, with a password (an account without one is
    locked, and sshd refuses even key logins to it), kept in _PASSWORD_FILE."""
    global _password
    if _password is not None:
        return _password
    # Under the accounts lock: two test workers must not both make the
    # account or both set (different) passwords.
    with accounts.locked():
        try:
            pwd.getpwnam(SFTP_USER)
            _password = _PASSWORD_FILE.read_text().strip() or None
        except (KeyError, OSError):
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/bin/sh", SFTP_USER], capture_output=True)
        if _password is None:
            _password = "pw-" + secrets.token_urlsafe(12)
            subprocess.run(["chpasswd"], input=f"{SFTP_USER}:{_password}\n", text=True, check=True)
            fd = os.open(_PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(_password)
    return _password


class SshServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        if os.getuid() == 0:
            self.password: str | None = _ensure_sftp_user()
            self.user = SFTP_USER
            # Somewhere the unprivileged user can reach (tmp_path is 0700
            # root): its authorized_keys and the remote tree.
            self.reachable = Path(tempfile.mkdtemp(prefix="anemone-sftp-"))
            self.reachable.chmod(0o755)
            self.remote_root = self.reachable / "remote"
            self.remote_root.mkdir()
            account = pwd.getpwnam(SFTP_USER)
            os.chown(self.remote_root, account.pw_uid, account.pw_gid)
        else:
            self.password = None
            self.user = pwd.getpwuid(os.getuid()).pw_name
            self.reachable = self.dir
            self.remote_root = self.dir / "remote"
            self.remote_root.mkdir(exist_ok=True)
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.authorized_keys = self.reachable / "authorized_keys"
        self.config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.authorized_keys.touch()
        self.new_host_key()

    def new_host_key(self) -> None:
        """Replace the server's host key (a restart makes it take effect)."""
        for p in (self.host_key, self.host_key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testbed-host", "-f", str(self.host_key)], check=True)

    def authorize(self, public_key_line: str) -> None:
        with self.authorized_keys.open("a") as f:
            f.write(public_key_line.strip() + "\n")

    def client_key(self, path: Path) -> Path:
        """A new passphrase-less ed25519 key at path, authorized here."""
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        self.authorize(path.with_suffix(".pub").read_text())
        return path

    def known_hosts(self, path: Path, port: int | None = None) -> Path:
        """A known_hosts file at path that names this server's host key at
        [host]:port (port: a proxy's in front of it; default its own)."""
        host_key = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        path.write_text(f"[{self.host}]:{port or self.port} {host_key}\n")
        return path

    def write_config(self, password_auth: bool = True) -> None:
        self.config.write_text(
            f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.dir}/sshd.pid
AuthorizedKeysFile {self.authorized_keys}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication {'yes' if password_auth else 'no'}
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin yes
Subsystem sftp internal-sftp
LogLevel VERBOSE
MaxStartups 200:30:400
MaxSessions 200
MaxAuthTries 20
"""
        )

    def start(self, timeout_s: float = 15.0) -> None:
        if os.getuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self.write_config()
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=self.log.open("ab"), start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited at start: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening in time")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the listener and every session it forked (sessions call
        setsid(), so a process-group kill would miss them)."""
        stop_process(self.proc, sig)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.remote_root, ignore_errors=True)
        if self.reachable != self.dir:
            shutil.rmtree(self.reachable, ignore_errors=True)

    def remote_dir(self, name: str, writable: bool = True) -> Path:
        """A directory on the "server", owned by the login user."""
        path = self.remote_root / name
        path.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            account = pwd.getpwnam(self.user)
            for part in [path, *path.relative_to(self.remote_root).parents]:
                os.chown(self.remote_root / part, account.pw_uid, account.pw_gid)
        path.chmod(0o755 if writable else 0o555)
        return path

    @property
    def account(self) -> pwd.struct_passwd:
        return pwd.getpwnam(self.user)

    def client_path(self, path: Path) -> str:
        """No chroot: the client sees the host's paths."""
        return str(path)

    def freeze(self) -> None:
        """The server stops answering (SIGSTOP); the kernel still accepts
        connections."""
        assert self.proc is not None
        signal_tree(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        signal_tree(self.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def host_key_fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(self.host_key.with_suffix(".pub"))],
                             capture_output=True, text=True, check=True).stdout
        return out.split()[1]
