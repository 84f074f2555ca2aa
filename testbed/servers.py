"""What every testbed SFTP server shares, and the system pieces they need.

Each server (testbed.sshd.SshServer, testbed.chroot_sshd.ChrootSshServer,
testbed.proftpd.ProftpdServer, testbed.rclone_sftp.RcloneSftpServer) has
the same surface, so one scenario runs against all of them:

    host, port, user                       where and as whom to log in
    authorize(public_key_line)             let the daemon's key in
    host_key_fingerprint()                 what `dest add` pins
    remote_dir(name) -> Path               a login-user-owned directory, as the host sees it
    client_path(path) -> str               that directory as the SFTP client sees it
    start(), stop(), freeze(), thaw(), cleanup()

All of them listen on 127.0.0.1 only.
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

#: A root-owned 0755 directory for trees whose every parent must be
#: root-owned and not writable by others (an sshd ChrootDirectory): not
#: /tmp (world-writable) nor pytest's temporary directories.
ROOT_OWNED_BASE = Path("/srv/anemone-testbed")


#: Where free_port() looks: a block of ports per pytest-xdist worker (a
#: process outside xdist takes gw0's), all below the kernel's ephemeral range (ip_local_port_range, 32768-60999 by
#: default), so that neither another worker nor an outgoing connection (whose
#: local port comes from that range) can take the port between free_port()
#: and the server's bind.
PORT_BLOCKS_START, PORT_BLOCK = 12000, 2000
_next_port: int | None = None


def _port_block() -> range | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = PORT_BLOCKS_START + index * PORT_BLOCK
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(start, start + PORT_BLOCK) if start + PORT_BLOCK <= ephemeral_low else None


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback port nobody listens on, never the same twice in a process
    (a test may keep one as "closed" while servers start after it). From the
    worker's block (starting at a random place, so that test runs side by
    side seldom meet), or any port the kernel hands out where the machine's
    ephemeral range leaves no room for blocks."""
    global _next_port
    block = _port_block()
    if block is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    if _next_port is None:
        _next_port = block.start + secrets.randbelow(len(block))
    for _ in range(len(block)):
        port = _next_port
        _next_port = block.start + (port + 1 - block.start) % len(block)
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in {block}")


def ensure_system_user(name: str, shell: str = "/usr/sbin/nologin", home: Path | None = None) -> pwd.struct_passwd:
    """A system account that can log in by key: it gets a random password,
    since sshd (UsePAM no) refuses even key logins to a locked account.
    ProFTPD refuses a login whose home directory does not exist: `home`
    (one that stays: servers running side by side share the account)."""
    with accounts.locked():
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", shell,
                            name], check=True)
            account = pwd.getpwnam(name)
        if home is not None:
            home.mkdir(mode=0o755, exist_ok=True)
            os.chown(home, account.pw_uid, account.pw_gid)
            if account.pw_dir != str(home):
                subprocess.run(["usermod", "--home", str(home), name], check=True)
        subprocess.run(["chpasswd"], input=f"{name}:pw-{secrets.token_urlsafe(12)}\n", text=True, check=True)
    return pwd.getpwnam(name)


def root_owned_base() -> Path:
    """ROOT_OWNED_BASE, made if missing, root-owned and 0755."""
    ROOT_OWNED_BASE.mkdir(mode=0o755, exist_ok=True)
    os.chown(ROOT_OWNED_BASE, 0, 0)
    ROOT_OWNED_BASE.chmod(0o755)
    return ROOT_OWNED_BASE


def root_owned_dir(prefix: str) -> Path:
    """A fresh root-owned 0755 directory under ROOT_OWNED_BASE."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root_owned_base()))
    path.chmod(0o755)
    return path


def owned_dir(root: Path, name: str, owner: pwd.struct_passwd, writable: bool = True) -> Path:
    """root/name created and owned (every level below root) by `owner`."""
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    for part in [path, *path.relative_to(root).parents]:
        if part != Path("."):
            os.chown(root / part, owner.pw_uid, owner.pw_gid)
    path.chmod(0o755 if writable else 0o555)
    return path


def wait_for_banner(host: str, port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 15.0) -> None:
    """Return once the server on host:port sends an SSH identification."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited at start: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no SSH server on {host}:{port} in time: {log.read_text(errors='replace')[-2000:]}")


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_tree(pid: int, sig: int) -> None:
    """Signal a server and every session it forked (sessions may call
    setsid(), so a process-group signal would miss them)."""
    for p in [*descendants(pid), pid]:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    signal_tree(proc.pid, signal.SIGCONT)  # a frozen server cannot act on SIGTERM
    signal_tree(proc.pid, sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        signal_tree(proc.pid, signal.SIGKILL)
        proc.wait()


def host_key_fingerprint(public_key_file: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key_file)],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def new_ed25519_key(path: Path, comment: str = "testbed-host") -> None:
    for p in (path, path.with_suffix(".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)


class LoopFilesystem:
    """A small ext4 file system on a loop device, mounted at `mountpoint`
    and owned by `owner`: a disk the login user can fill, with ext4's
    usual 5% reserved for root. `available()` says why not, where it
    cannot be made (not root, no loop devices)."""

    def __init__(self, image_dir: Path, mountpoint: Path, owner: pwd.struct_passwd, size_mib: int = 32) -> None:
        self.image = image_dir / "disk.img"
        self.mountpoint = mountpoint
        self.owner = owner
        self.size_mib = size_mib
        self.mounted = False

    @staticmethod
    def unavailable() -> str | None:
        if os.getuid() != 0:
            return "needs root to attach a loop device"
        if not shutil.which("losetup") or not shutil.which("mkfs.ext4"):
            return "losetup or mkfs.ext4 is not installed"
        probe = subprocess.run(["losetup", "-f"], capture_output=True, text=True)
        if probe.returncode != 0:
            return f"no free loop device here: {probe.stderr.strip()}"
        return None

    def mount(self) -> None:
        with self.image.open("wb") as f:
            f.truncate(self.size_mib * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "5", str(self.image)], check=True, capture_output=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mountpoint)], check=True, capture_output=True)
        self.mounted = True
        os.chown(self.mountpoint, self.owner.pw_uid, self.owner.pw_gid)
        self.mountpoint.chmod(0o755)
        (self.mountpoint / "lost+found").rmdir()

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
            self.mounted = False
        self.image.unlink(missing_ok=True)
