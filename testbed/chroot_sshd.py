"""OpenSSH hardened as the seed document recommends for the backup account:
`Match User` with `ChrootDirectory`, `ForceCommand internal-sftp` and no
forwarding, for a system user with no shell. Needs root (sshd only
chroots as root).

The chroot is a root-owned 0755 directory under ROOT_OWNED_BASE (every
parent root-owned and not writable by others, as sshd demands); the user
writes only below it, in `backups/`. A path the daemon is given is inside
the chroot (`/backups/NAME`); the host sees it as `{chroot}/backups/NAME`.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from .servers import (ensure_system_user, free_port, host_key_fingerprint, new_ed25519_key, owned_dir, root_owned_dir,
                      signal_tree, stop_process, wait_for_banner)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
CHROOT_USER = "anemone-jail"


class ChrootSshServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        if os.getuid() != 0:
            raise RuntimeError("an sshd ChrootDirectory needs sshd to run as root")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.account = ensure_system_user(CHROOT_USER)
        self.user = CHROOT_USER
        self.chroot = root_owned_dir("chroot-")
        self.remote_root = owned_dir(self.chroot, "backups", self.account)
        self.host_key = self.dir / "ssh_host_ed25519_key"
        # sshd reads it as the user, before it chroots: not in pytest's 0700 tmp.
        self.keys_dir = root_owned_dir("keys-")
        self.authorized_keys = self.keys_dir / "authorized_keys"
        self.authorized_keys.touch()
        self.config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        new_ed25519_key(self.host_key)

    def authorize(self, public_key_line: str) -> None:
        with self.authorized_keys.open("a") as f:
            f.write(public_key_line.strip() + "\n")

    def host_key_fingerprint(self) -> str:
        return host_key_fingerprint(self.host_key.with_suffix(".pub"))

    def remote_dir(self, name: str, writable: bool = True) -> Path:
        return owned_dir(self.remote_root, name, self.account, writable)

    def client_path(self, path: Path) -> str:
        """`path` (on the host, inside the chroot) as the SFTP client sees it."""
        return "/" + "/".join(path.relative_to(self.chroot).parts)

    def write_config(self) -> None:
        self.config.write_text(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.dir}/sshd.pid
AuthorizedKeysFile {self.authorized_keys}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
Subsystem sftp internal-sftp
LogLevel VERBOSE
MaxStartups 200:30:400
MaxSessions 200
AllowUsers {self.user}

Match User {self.user}
    ChrootDirectory {self.chroot}
    ForceCommand internal-sftp
    AllowTcpForwarding no
    AllowStreamLocalForwarding no
    AllowAgentForwarding no
    PermitTunnel no
    X11Forwarding no
    PermitTTY no
""")

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self.write_config()
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=self.log.open("ab"), start_new_session=True)
        wait_for_banner(self.host, self.port, self.proc, self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)
        self.proc = None

    def freeze(self) -> None:
        """The server stops answering: connections are still accepted by
        the kernel, and nothing more happens."""
        assert self.proc is not None
        signal_tree(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        signal_tree(self.proc.pid, signal.SIGCONT)

    def break_chroot(self) -> None:
        """The classic mistake: the chroot directory handed to the user."""
        os.chown(self.chroot, self.account.pw_uid, self.account.pw_gid)

    def fix_chroot(self) -> None:
        os.chown(self.chroot, 0, 0)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.chroot, ignore_errors=True)
        shutil.rmtree(self.keys_dir, ignore_errors=True)
