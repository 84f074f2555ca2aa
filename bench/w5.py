"""W5: a NAS's scale on loopback. 100 users x 1,000 files (100,000 files
in 2,000 directories), nothing changed: the daemon's sync against rclone
alone (one `rclone sync` of a combine remote of the same trees, read
directly, with the daemon's flags, to a copy of the daemon's remote), and
the peak resident memory of each: the daemon's (VmHWM, reset just before)
and rclone's (its rusage)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from anemoned import rclone
from anemoned.sync_argv import sync_args
from testbed.daemon import DaemonProcess
from testbed.sshd import SshServer

from .common import RCLONE, Bench, make_users, median_of, ours, own_trees

FILES_PER_USER = 1000


def daemon_peak_rss_mib(daemon: DaemonProcess) -> float:
    assert daemon.proc is not None
    status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def reset_peak_rss(daemon: DaemonProcess) -> None:
    """From now on VmHWM is the peak since now (clear_refs 5, Linux >= 4.0)."""
    assert daemon.proc is not None
    Path(f"/proc/{daemon.proc.pid}/clear_refs").write_text("5")


def rclone_alone(bench: Bench, users_dir: Path, remote: Path) -> tuple[float, float]:
    """(seconds, rclone's peak RSS in MiB) of baseline B's command."""
    upstreams = rclone.space_list([f"{p.name}={p / 'backup'}" for p in sorted(users_dir.iterdir())])
    env = {**bench.access(), **rclone.option_env(rclone.SRC_REMOTE, {"type": "combine", "upstreams": upstreams})}
    args = sync_args(str(remote), None, dry_run=False)
    args[args.index("--log-level") + 1] = "NOTICE"
    started = time.perf_counter()
    proc = subprocess.Popen([RCLONE, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()  # rclone at NOTICE says little; read it all before waiting
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"rclone sync failed: {err[-1000:].decode(errors='replace')}")
    return took, usage.ru_maxrss / 1024


def run(root: Path, sshd: SshServer, n_users: int, lines: list[str]) -> None:
    daemon = DaemonProcess(root / "w5", log_level="info")
    daemon.start()
    try:
        sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
        n_files = n_users * FILES_PER_USER
        started = time.perf_counter()
        make_users(daemon.users_dir, n_users, FILES_PER_USER, seed=5, subdirs=20, max_size=2000)
        own_trees(daemon.users_dir, min(n_users, 200))
        print(f"W5: {n_users} users x {FILES_PER_USER} files = {n_files} files "
              f"(made in {time.perf_counter() - started:.0f} s)", flush=True)
        remote_ours, remote_b = sshd.remote_dir("w5-ours"), sshd.remote_dir("w5-b")
        daemon.add_destination("w5", sshd, remote_ours)
        ours(daemon, "w5")  # initial
        # rclone alone starts from the same remote state (times kept), so
        # that it too has nothing to do, without a second initial upload.
        shutil.rmtree(remote_b)
        subprocess.run(["cp", "-a", str(remote_ours), str(remote_b)], check=True)
        certs = daemon.data_dir / "certs"
        chunk = rclone.upload_chunk_size(daemon.ctl_json("dest", "show", "w5")["server_version"])
        bench = Bench(sshd, certs / "rclone_key", certs / "known_hosts", chunk)
        rclone_alone(bench, daemon.users_dir, remote_b)  # warm both sides' caches alike
        reset_peak_rss(daemon)
        o = median_of(3, lambda: ours(daemon, "w5"))
        o_rss = daemon_peak_rss_mib(daemon)
        runs = [rclone_alone(bench, daemon.users_dir, remote_b) for _ in range(3)]
        b = sorted(t for t, _ in runs)[1]
        b_rss = max(r for _, r in runs)
        scale = "" if n_files == 100_000 else f" (reduced: {n_files} files)"
        lines.append(f"W5 {n_files} files, nothing changed (median of 3){scale}: ours {o:.2f} s, rclone alone "
                     f"{b:.2f} s -> ours/rclone = {o / b:.2f}x (target <= 0.3x); peak RSS: daemon "
                     f"{o_rss:.0f} MiB, rclone {b_rss:.0f} MiB")
        print(lines[-1], flush=True)
    finally:
        daemon.stop()
