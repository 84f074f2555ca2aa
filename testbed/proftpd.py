"""ProFTPD with mod_sftp (Debian's proftpd-core and proftpd-mod-crypto) on
a free loopback port, as an SFTP destination. Needs root (ProFTPD switches
to the login user per session).

It runs in the foreground (`proftpd -n`) with its own configuration file,
scoreboard and logs, and reads authorized keys in RFC 4716 form (what
`ssh-keygen -e` prints, and `anemonectl key show --format rfc4716`), one
file per user, as ProFTPD's SFTPAuthorizedUserKeys wants them. Paths are
the host's: no DefaultRoot.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .servers import (ensure_system_user, free_port, host_key_fingerprint, new_ed25519_key, owned_dir, root_owned_base,
                      signal_tree, stop_process, wait_for_banner)

PROFTPD = shutil.which("proftpd") or "/usr/sbin/proftpd"
MODULES = Path("/usr/lib/proftpd")
PROFTPD_USER = "anemone-proftpd"


def unavailable() -> str | None:
    """Why this server cannot run here, or None."""
    if os.getuid() != 0:
        return "ProFTPD needs root to switch to the login user"
    if not Path(PROFTPD).exists() or not (MODULES / "mod_sftp.so").exists():
        return "ProFTPD with mod_sftp is not installed (apt-get install proftpd-core proftpd-mod-crypto)"
    return None


class ProftpdServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        # Somewhere the login user can reach (pytest's tmp_path is 0700 root).
        self.reachable = Path(tempfile.mkdtemp(prefix="anemone-proftpd-"))
        self.reachable.chmod(0o755)
        # ProFTPD refuses a login whose home directory does not exist: one
        # that outlives this server, since servers running side by side (in
        # test workers) share the account.
        self.account = ensure_system_user(PROFTPD_USER, home=root_owned_base() / "home-anemone-proftpd")
        self.user = PROFTPD_USER
        self.remote_root = owned_dir(self.reachable, "remote", self.account)
        self.keys_dir = self.dir / "authorized"
        self.keys_dir.mkdir(exist_ok=True)
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.config = self.dir / "proftpd.conf"
        self.log = self.dir / "proftpd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        new_ed25519_key(self.host_key)

    def authorize(self, rfc4716_key: str) -> None:
        """Add a key in RFC 4716 form (ProFTPD does not read OpenSSH lines)."""
        with (self.keys_dir / self.user).open("a") as f:
            f.write(rfc4716_key.strip() + "\n")

    def host_key_fingerprint(self) -> str:
        return host_key_fingerprint(self.host_key.with_suffix(".pub"))

    def remote_dir(self, name: str, writable: bool = True) -> Path:
        return owned_dir(self.remote_root, name, self.account, writable)

    def client_path(self, path: Path) -> str:
        return str(path)

    def write_config(self) -> None:
        d = self.dir
        self.config.write_text(f"""ServerType standalone
ServerName "anemone testbed"
DefaultServer on
DefaultAddress 127.0.0.1
SocketBindTight on
Port {self.port}
UseIPv6 off
User nobody
Group nogroup
PidFile {d}/proftpd.pid
ScoreboardFile {d}/proftpd.scoreboard
DelayTable none
WtmpLog off
TransferLog none
SystemLog {self.log}
UseReverseDNS off
RequireValidShell off
AuthOrder mod_auth_unix.c
MaxInstances 100
AllowOverwrite on
Umask 022

<IfModule mod_dso.c>
  ModulePath {MODULES}
  LoadModule mod_sftp.c
</IfModule>

SFTPEngine on
SFTPLog {d}/sftp.log
SFTPHostKey {self.host_key}
SFTPAuthMethods publickey
SFTPAuthorizedUserKeys file:{self.keys_dir}/%u
SFTPCompression off
""")

    def start(self) -> None:
        self.write_config()
        self.proc = subprocess.Popen([PROFTPD, "--nodaemon", "--config", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("ab"), start_new_session=True)
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
