"""W4: a real link. 200 users x 50 files through testbed/linksim.py at
50 ms round trip and 50 Mbit/s, to an sshd with OpenSSH's default
connection limits; the daemon against the yardstick, one `rsync -a
--delete` over ssh of all the trees, and rclone alone with its defaults
(one `rclone sync` of all the trees, the original product's backend
options), each into its own remote directory over the same link:
initial, nothing changed, and 10 files changed across 3 users.

rclone alone takes some 165 s per 20 users' initial sync through the link
(half an hour for 200), so its initial sync runs on the first
RCLONE_SAMPLE_USERS users' trees, into a directory of its own, and is
scaled to all of them, as W1's baseline A is (the line says so): one
rclone's time is its files times their round trips over its transfers
(its start-up, a second or two, is then counted ten times: the figure
errs against rclone by about 1%).
Its remote directory for the later steps is then rsync's copy, copied on
the server's disk with sizes, times and owners kept (`cp -a`): what its
own full initial sync would have left, as far as its size-and-time
comparison can tell."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from anemoned import rclone
from testbed.daemon import DaemonProcess
from testbed.linksim import LinkSim

from .common import RCLONE, DefaultLimitsSshd, make_users, ours, own_trees, timed
from .cpu import CpuSplit

RTT_S = 0.050
MBIT = 50
#: files changed per user in the "10 files changed across 3 users" step
CHANGES = (4, 3, 3)
#: users rclone alone's initial sync is measured on (then scaled)
RCLONE_SAMPLE_USERS = 20


class Yardsticks:
    """rsync over ssh and rclone alone, over the link, as root reading the
    trees directly (they are what an operator would run by hand)."""

    def __init__(self, sshd: DefaultLimitsSshd, port: int, key: Path, known_hosts: Path, users_dir: Path) -> None:
        self.sshd, self.port, self.key, self.known_hosts, self.users_dir = sshd, port, key, known_hosts, users_dir
        self.remote_rsync = sshd.remote_dir("w4-rsync")
        self.remote_rclone = sshd.remote_dir("w4-rclone")

    def rsync(self) -> float:
        ssh = f"ssh -F /dev/null -q -p {self.port} -i {self.key} -o UserKnownHostsFile={self.known_hosts} -o BatchMode=yes"
        argv = ["rsync", "-a", "--delete", "-e", ssh, f"{self.users_dir}/", f"{self.sshd.user}@{self.sshd.host}:"
                f"{self.remote_rsync}/"]
        return timed(lambda: _run(argv))

    def rclone(self, sample: list[str] | None = None) -> float:
        """rclone alone over all the trees, or over the `sample` users'
        only (a filter, so the others are not even listed) into a
        directory of its own."""
        opts = {"type": "sftp", "host": self.sshd.host, "port": str(self.port), "user": self.sshd.user,
                "key_file": str(self.key), "known_hosts_file": str(self.known_hosts)}
        env = {**rclone.base_env(self.sshd.dir), **rclone.option_env(rclone.DEST_REMOTE, opts)}
        remote, extra = self.remote_rclone, []
        if sample is not None:
            remote = self.sshd.remote_dir("w4-rclone-sample")
            rules = self.sshd.dir / "w4-rclone-sample.filter"
            rules.write_text("".join(f"+ /{user}/**\n" for user in sample) + "- **\n")
            extra = ["--filter-from", str(rules)]
        argv = [RCLONE, "sync", str(self.users_dir), rclone.dest_path(str(remote)), "--config", "", *extra]
        return timed(lambda: _run(argv, env))

    def seed_rclone_from_rsync(self) -> None:
        """rclone alone's directory as rsync's initial sync left its own."""
        self.remote_rclone.rmdir()  # empty: made by remote_dir(), never synced into
        _run(["cp", "-a", str(self.remote_rsync), str(self.remote_rclone)])


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    """Quietly (the server's account has no home: ssh says so on every login)."""
    res = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {res.returncode}: {res.stderr[-1000:]}")


def change_files(users_dir: Path, n_users: int) -> None:
    """Files of three users spread over the tree, rewritten (new size and time)."""
    for user, n in zip((3 % n_users, n_users // 2, n_users - 1), CHANGES):
        for f in range(n):
            path = users_dir / f"user{user:04d}" / "backup" / f"dir{f % 5}" / f"file{f:03d}.dat"
            path.write_bytes(os.urandom(1000))


def run(root: Path, n_users: int, lines: list[str]) -> None:
    sshd = DefaultLimitsSshd(root / "w4-sshd")
    sshd.start()
    daemon = DaemonProcess(root / "w4", log_level="info")
    daemon.start()
    link = LinkSim(sshd.host, sshd.port, delay_s=RTT_S / 2, bytes_per_s=MBIT * 1e6 / 8).start()
    try:
        sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
        n_bytes = make_users(daemon.users_dir, n_users, 50, seed=4, subdirs=5)
        own_trees(daemon.users_dir, min(n_users, 200))
        scale = "" if n_users == 200 else f" (reduced: {n_users} users)"
        print(f"W4: {n_users} users x 50 files, {n_bytes / 1e6:.0f} MB, {RTT_S * 1e3:.0f} ms RTT, {MBIT} Mbit/s{scale}",
              flush=True)
        res = daemon.ctl("dest", "add", "w4", "--host", sshd.host, "--port", str(link.port), "--user", sshd.user,
                         "--remote-path", str(sshd.remote_dir("w4-ours")),
                         "--host-key-fingerprint", sshd.host_key_fingerprint())
        assert res.returncode == 0, res.stderr
        certs = daemon.data_dir / "certs"
        # The yardsticks run as root and read the trees directly; the key is the daemon's.
        key = root / "w4-key"
        key.write_bytes((certs / "rclone_key").read_bytes())
        key.chmod(0o600)
        known = root / "w4-known_hosts"
        known.write_text((certs / "known_hosts").read_text())
        y = Yardsticks(sshd, link.port, key, known, daemon.users_dir)

        def w4(o: float, r: float, c: float) -> str:
            return f"ours {o:.2f} s, rsync {r:.2f} s, rclone alone {c:.2f} s -> ours/rsync = {o / r:.2f}x"

        link.reset_peak()
        assert daemon.proc is not None and sshd.proc is not None
        with CpuSplit(sshd.proc.pid, daemon.proc.pid) as ours_cpu:
            o = ours(daemon, "w4")
        peak, dropped = link.peak_connections, sshd.dropped()
        with CpuSplit(sshd.proc.pid) as rsync_cpu:
            r = y.rsync()
        sample = sorted(p.name for p in daemon.users_dir.iterdir())[:RCLONE_SAMPLE_USERS]
        c = y.rclone(sample) * n_users / len(sample)
        y.seed_rclone_from_rsync()
        scaled = "" if len(sample) == n_users else \
            f" (rclone alone measured on {len(sample)} users and scaled x{n_users / len(sample):g})"
        lines.append(f"W4 initial{scale}: {w4(o, r, c)} (target <= 3x), ours/rclone = {o / c:.3f}x (target <= 0.1x); "
                     f"ours: {peak} SSH connections at most at once, {dropped} dropped by MaxStartups{scaled}")
        print(lines[-1], flush=True)
        lines.append(f"W4 initial, where the CPU went ({os.cpu_count()} cores; the server and the link simulator run on "
                     f"them too): ours: {ours_cpu.describe('daemon and all it starts')}; "
                     f"rsync: {rsync_cpu.describe('rsync and ssh')}")
        print(lines[-1], flush=True)
        o, r, c = ours(daemon, "w4"), y.rsync(), y.rclone()
        lines.append(f"W4 nothing changed{scale}: {w4(o, r, c)} (target <= 1x), ours/rclone = {o / c:.3f}x")
        print(lines[-1], flush=True)
        change_files(daemon.users_dir, n_users)
        o, r, c = ours(daemon, "w4"), y.rsync(), y.rclone()
        lines.append(f"W4 10 files changed across 3 users{scale}: {w4(o, r, c)} (target <= 1.5x), "
                     f"ours/rclone = {o / c:.3f}x")
        print(lines[-1], flush=True)
    finally:
        link.stop()
        daemon.stop()
        sshd.cleanup()
