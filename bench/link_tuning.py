"""How transfers, checkers, SSH connections and rclone processes change
syncs over a real link's round trips: the measurements behind
link_options.py's defaults.

    .venv/bin/python -m bench.link_tuning [--users 10] [--files 30] [--rtts 0,20,80] [--mbit 50] [--only 7,10,11]

Through testbed/linksim.py (delay each way, shared bandwidth cap) to an
sshd with OpenSSH's default MaxStartups/MaxSessions. For each round trip
and each setting: the daemon's initial sync and its nothing-changed full
sync (`sync --full`: every remote directory listed; an ordinary
nothing-changed sync starts no rclone at all, so no setting changes it).
Settings the daemon refuses (more than 10 connections) are run with
rclone alone, with the daemon's flags, to show what lies beyond. Each line also gives the most SSH
connections open at once and how many sshd dropped for MaxStartups.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from anemoned import rclone
from anemoned.sync_argv import sync_args
from testbed import accounts
from testbed.daemon import DaemonProcess
from testbed.linksim import LinkSim

from .common import RCLONE, ROOT, DefaultLimitsSshd, make_users, own_trees

#: (who, transfers, checkers, connections, processes); connections 0:
#: rclone's unlimited. rclone alone is always one process.
SETTINGS = [("ours", 2, 2, 5, 1), ("ours", 4, 5, 10, 1), ("ours", 6, 3, 10, 1), ("ours", 3, 6, 10, 1),
            ("rclone", 4, 8, 0, 1), ("rclone", 16, 16, 0, 1), ("rclone", 8, 8, 10, 1),
            ("ours", 8, 8, 10, 1), ("ours", 10, 10, 10, 1), ("ours", 10, 4, 10, 1),
            ("ours", 8, 8, 10, 2), ("ours", 8, 8, 10, 4), ("ours", 8, 8, 10, 8), ("ours", 8, 8, 10, 16)]
#: A run that takes longer has hung (rclone's help warns of deadlocks with few connections).
HUNG_AFTER_S = 300


def rclone_alone(users_dir: Path, remote: str, env: dict[str, str], t: int, c: int, n: int,
                 extra: list[str]) -> tuple[float, bool]:
    """rclone over a combine remote of the trees (read directly), with the
    daemon's sync flags and the given parallelism. (seconds, ok)."""
    upstreams = rclone.space_list([f"{p.name}={p / 'backup'}" for p in sorted(users_dir.iterdir())])
    run_env = {**env, **rclone.option_env(rclone.SRC_REMOTE, {"type": "combine", "upstreams": upstreams})}
    if n:
        run_env.update(rclone.option_env(rclone.DEST_REMOTE, {"connections": str(n)}))
    args = sync_args(remote, None, dry_run=False) + ["--transfers", str(t), "--checkers", str(c), *extra]
    args[args.index("--log-level") + 1] = "NOTICE"
    started = time.perf_counter()
    try:
        res = subprocess.run([RCLONE, *args], env=run_env, capture_output=True, text=True, timeout=HUNG_AFTER_S)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, False
    if res.returncode != 0:
        print(f"rclone alone failed: {res.stderr[-600:]}", file=sys.stderr)
    return time.perf_counter() - started, res.returncode == 0


def ours(daemon: DaemonProcess, dest: str, *extra: str) -> tuple[float, bool]:
    started = time.perf_counter()
    res = daemon.ctl("sync", dest, "--wait", *extra, timeout_s=HUNG_AFTER_S + 120)
    return time.perf_counter() - started, res.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--files", type=int, default=30, help="files per user")
    parser.add_argument("--rtts", default="0,20,80", help="round trips to measure, ms")
    parser.add_argument("--mbit", type=float, default=50, help="the link's cap, Mbit/s each way")
    parser.add_argument("--only", default="", help="comma-separated indexes into SETTINGS")
    args = parser.parse_args()
    settings = [SETTINGS[int(i)] for i in args.only.split(",")] if args.only else SETTINGS

    root = ROOT.with_name("bench-link-tuning")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    sshd = DefaultLimitsSshd(root / "sshd")
    sshd.start()
    daemon = DaemonProcess(root / "daemon", log_level="info")
    daemon.start()
    link = LinkSim(sshd.host, sshd.port, bytes_per_s=args.mbit * 1e6 / 8).start()
    lines: list[str] = []
    try:
        sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
        n_bytes = make_users(daemon.users_dir, args.users, args.files, seed=14, subdirs=3)
        own_trees(daemon.users_dir, args.users)
        print(f"{args.users} users x {args.files} files ({n_bytes / 1e6:.1f} MB), {args.mbit:g} Mbit/s", flush=True)
        certs = daemon.data_dir / "certs"
        access = rclone.SftpAccess(host=sshd.host, port=link.port, user=sshd.user,
                                   known_hosts_file=certs / "known_hosts", host_key_algorithms=None,
                                   key_file=certs / "rclone_key")
        chunk = rclone.OPENSSH_UPLOAD_CHUNK
        env = {**rclone.base_env(root), **rclone.option_env(rclone.DEST_REMOTE, rclone.sftp_options(access, chunk_size=chunk))}
        fingerprint = sshd.host_key_fingerprint()
        for rtt in (int(r) for r in args.rtts.split(",")):
            link.configure(delay_s=rtt / 2000)
            for who, t, c, n, p in settings:
                name = f"r{rtt}-{who}-{t}-{c}-{n}-{p}"
                remote = sshd.remote_dir(name)
                link.reset_peak()
                dropped = sshd.dropped()
                if who == "ours":
                    res = daemon.ctl("dest", "add", name, "--host", sshd.host, "--port", str(link.port), "--user",
                                     sshd.user, "--remote-path", str(remote), "--host-key-fingerprint", fingerprint,
                                     "--transfers", str(t), "--checkers", str(c), "--connections", str(n),
                                     "--processes", str(p), "--stall-timeout", "120")
                    assert res.returncode == 0, res.stderr
                    init, ok1 = ours(daemon, name)
                    peak1 = link.peak_connections
                    link.reset_peak()
                    noop, ok2 = ours(daemon, name, "--full")
                else:
                    dest = str(remote)
                    init, ok1 = rclone_alone(daemon.users_dir, dest, env, t, c, n, [])
                    peak1 = link.peak_connections
                    link.reset_peak()
                    noop, ok2 = rclone_alone(daemon.users_dir, dest, env, t, c, n, [])
                peak2 = link.peak_connections
                lines.append(f"RTT {rtt:3d} ms  {who:6s} transfers {t:2d} checkers {c:2d} connections "
                             f"{n or 'unlimited':>9} processes {p:2d}: initial {init:6.2f} s{'' if ok1 else ' FAILED'}, "
                             f"full nothing changed {noop:6.2f} s{'' if ok2 else ' FAILED'}; most SSH connections "
                             f"at once {peak1}/{peak2}, dropped by MaxStartups {sshd.dropped() - dropped}")
                print(lines[-1], flush=True)
        last = [f"r{rtt}-{w}-{t}-{c}-{n}-{p}" for w, t, c, n, p in settings if w == "ours"][-1:]
        started = time.perf_counter()
        for name in last:  # unchanged users: the daemon starts no rclone
            ours(daemon, name)
        lines.append(f"nothing changed, not full (no rclone runs): {time.perf_counter() - started:.2f} s")
        print(lines[-1], flush=True)
    finally:
        link.stop()
        daemon.stop()
        sshd.cleanup()
        accounts.remove_all()
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
