"""What the bench's workloads share: building users' trees, timing, the
baselines' rclone runs, the daemon's sync, and an sshd with OpenSSH's
default connection limits."""
from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from anemoned import rclone
from anemoned.sync_argv import sync_args
from testbed import accounts
from testbed.daemon import DaemonProcess
from testbed.sshd import SshServer

ROOT = Path(__file__).resolve().parent.parent / "bench-run"
RCLONE = str(Path(sys.executable).parent / "rclone")
#: W2 runs ours, rclone alone and ssh cat this many times, interleaved.
W2_ROUNDS = 5


def make_users(users_dir: Path, n_users: int, files_per_user: int, seed: int, subdirs: int,
               max_size: int = 20_000) -> int:
    """Users with random files of 100 B - max_size, spread over `subdirs`
    sub-directories of backup/ (0: all in backup/ itself)."""
    rng = random.Random(seed)
    total = 0
    for u in range(n_users):
        for f in range(files_per_user):
            sub = f"dir{f % subdirs}/" if subdirs else ""
            path = users_dir / f"user{u:04d}" / "backup" / f"{sub}file{f:03d}.dat"
            path.parent.mkdir(parents=True, exist_ok=True)
            size = rng.randint(100, max_size)
            path.write_bytes(rng.randbytes(size))
            total += size
    return total


def own_trees(users_dir: Path, pool: int) -> None:
    """Tree i belongs to account i % pool (bench accounts, made once)."""
    owners = [accounts.for_tree(f"bench{i:03d}") for i in range(pool)]
    for i, entry in enumerate(sorted(users_dir.iterdir())):
        owner = owners[i % pool]
        accounts.chown_tree(entry, owner.pw_uid, owner.pw_gid)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def server_cpu_s(sshd: SshServer) -> float:
    """CPU time the server's finished sessions have used (sshd reaps every
    session it forked, so their time adds up in the listener's cutime and
    cstime)."""
    assert sshd.proc is not None
    fields = Path(f"/proc/{sshd.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def with_server_cpu(sshd: SshServer, fn) -> tuple[float, float]:
    """(seconds fn took, server CPU seconds it caused)."""
    before = server_cpu_s(sshd)
    took = fn()
    time.sleep(0.2)  # the last sessions end just after the client exits
    return took, server_cpu_s(sshd) - before


class Bench:
    def __init__(self, sshd: SshServer, key: Path, known_hosts: Path, chunk_size: str | None) -> None:
        self.sshd = sshd
        self.key = key
        self.known_hosts = known_hosts
        self.chunk_size = chunk_size  # the daemon's upload chunk for this server

    def access(self) -> dict[str, str]:
        a = rclone.SftpAccess(host=self.sshd.host, port=self.sshd.port, user=self.sshd.user,
                              known_hosts_file=self.known_hosts, host_key_algorithms=None, key_file=self.key)
        options = rclone.sftp_options(a, chunk_size=self.chunk_size)
        return {**rclone.base_env(ROOT), **rclone.option_env(rclone.DEST_REMOTE, options)}

    def env_default_flags(self) -> dict[str, str]:
        """Baseline A's backend: only what the original product sets (host,
        user, key file) plus known_hosts_file, as in NOTES-performance."""
        opts = {"type": "sftp", "host": self.sshd.host, "port": str(self.sshd.port), "user": self.sshd.user,
                "key_file": str(self.key), "known_hosts_file": str(self.known_hosts)}
        return {**rclone.base_env(ROOT), **rclone.option_env(rclone.DEST_REMOTE, opts)}

    def run(self, args: list[str], env: dict[str, str]) -> None:
        res = subprocess.run([RCLONE, *args], env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"rclone {args[0]} failed: {res.stderr[-1000:]}")

    def baseline_a(self, users_dir: Path, users: list[str], remote: Path) -> float:
        env = self.env_default_flags()

        def go() -> None:
            for user in users:
                self.run(["sync", str(users_dir / user / "backup"), rclone.dest_path(str(remote), "backup", user),
                          "--config", ""], env)
        return timed(go)

    def baseline_b(self, users_dir: Path, remote: Path) -> float:
        upstreams = rclone.space_list([f"{p.name}={p / 'backup'}" for p in sorted(users_dir.iterdir())])
        env = {**self.access(), **rclone.option_env(rclone.SRC_REMOTE, {"type": "combine", "upstreams": upstreams})}
        args = sync_args(str(remote), None, dry_run=False)
        args[args.index("--log-level") + 1] = "NOTICE"
        return timed(lambda: self.run(args, env))


def ours(daemon: DaemonProcess, dest: str) -> float:
    def go() -> None:
        res = daemon.ctl("sync", dest, "--wait", "--json", timeout_s=3600)
        if res.returncode != 0:
            raise RuntimeError(res.stderr + res.stdout)
    return timed(go)


def settle(remote_root: Path) -> None:
    """Before each timed W2 run: the previous copies gone and written out,
    so that every run starts with the same amount of unwritten data."""
    for old in remote_root.rglob("random.bin"):
        old.unlink()
    os.sync()


def median_of(n: int, fn) -> float:
    return statistics.median(fn() for _ in range(n))


class DefaultLimitsSshd(SshServer):
    """The testbed sshd with OpenSSH's default connection limits, as most
    servers keep them (the testbed raises them for the suite's parallel
    daemons): MaxStartups 10:30:100, MaxSessions 10."""

    def write_config(self, password_auth: bool = True) -> None:
        super().write_config(password_auth)
        lines = [line for line in self.config.read_text().splitlines()
                 if not line.startswith(("MaxStartups", "MaxSessions"))]
        self.config.write_text("\n".join(lines + ["MaxStartups 10:30:100", "MaxSessions 10"]) + "\n")

    def dropped(self) -> int:
        """Connections sshd dropped for MaxStartups so far (its log says so)."""
        return self.log.read_text(errors="replace").count("past MaxStartups")
