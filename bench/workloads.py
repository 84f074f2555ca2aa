"""W1, W2 and W3: the loopback workloads (see bench/run.py)."""
from __future__ import annotations

import os
import statistics
import subprocess

from anemoned import rclone
from testbed.daemon import DaemonProcess
from testbed.sshd import SshServer

from .common import ROOT, W2_ROUNDS, Bench, make_users, median_of, ours, own_trees, settle, timed, with_server_cpu


def run_w1(daemon: DaemonProcess, sshd: SshServer, a_users_n: int, lines: list[str]) -> tuple[float, str | None]:
    """W1; returns (seconds per file of a nothing-changed sync, the upload chunk the daemon uses)."""
    certs = daemon.data_dir / "certs"
    n_bytes = make_users(daemon.users_dir, 200, 50, seed=1, subdirs=5)
    own_trees(daemon.users_dir, 200)
    n_files = 200 * 50
    print(f"W1: 200 users x 50 files, {n_files} files, {n_bytes / 1e6:.0f} MB", flush=True)
    remote_ours, remote_b, remote_a = (sshd.remote_dir(n) for n in ("ours", "b", "a"))
    daemon.add_destination("w1", sshd, remote_ours)
    # B gets the daemon's own flags, the upload chunk for this server too.
    chunk = rclone.upload_chunk_size(daemon.ctl_json("dest", "show", "w1")["server_version"])
    bench = Bench(sshd, certs / "rclone_key", certs / "known_hosts", chunk)
    a_users = sorted(p.name for p in daemon.users_dir.iterdir())[:a_users_n]
    scale = 200 / len(a_users)

    b_init = bench.baseline_b(daemon.users_dir, remote_b)
    o_init, o_cpu = with_server_cpu(sshd, lambda: ours(daemon, "w1"))
    a_init, a_cpu = with_server_cpu(sshd, lambda: bench.baseline_a(daemon.users_dir, a_users, remote_a))
    a_init, a_cpu = a_init * scale, a_cpu * scale
    b_noop = median_of(3, lambda: bench.baseline_b(daemon.users_dir, remote_b))
    o_noop = median_of(3, lambda: ours(daemon, "w1"))
    a_noop = bench.baseline_a(daemon.users_dir, a_users, remote_a) * scale
    changed = daemon.users_dir / "user0100/backup/dir1/file001.dat"

    sizes = iter(range(1000, 1100))

    def change_one() -> None:
        # A new size each time: two rewrites within one second with the same
        # size and mtime are the same file to rclone and to the index (README,
        # "The remote index"), and would measure a sync with nothing to send.
        changed.write_bytes(os.urandom(next(sizes)))
    b_one = median_of(3, lambda: (change_one(), bench.baseline_b(daemon.users_dir, remote_b))[1])
    o_one = median_of(3, lambda: (change_one(), ours(daemon, "w1"))[1])
    user, _, *inside = changed.relative_to(daemon.users_dir).parts  # <user>/backup/... -> backup/<user>/...
    sent = remote_ours.joinpath("backup", user, *inside)
    if sent.read_bytes() != changed.read_bytes():
        raise RuntimeError(f"the last change of {changed} did not reach the server")
    note = f"A measured on {len(a_users)} of 200 users and scaled x{scale:g}"
    for label, o, b, a, target in (("initial sync", o_init, b_init, a_init, 1.6),
                                   ("nothing changed", o_noop, b_noop, a_noop, 0.5)):
        lines.append(f"W1 {label}: ours {o:.2f} s, B {b:.2f} s, A {a:.1f} s ({note}) -> "
                     f"ours/B = {o / b:.2f}x (target <= {target}x), A/ours = {a / o:.0f}x faster (target >= 50x)")
        print(lines[-1], flush=True)
    lines.append(f"W1 one file changed in one user (median of 3): ours {o_one:.2f} s, B {b_one:.2f} s -> "
                 f"ours/B = {o_one / b_one:.2f}x (target <= 0.5x)")
    print(lines[-1], flush=True)
    # Why the initial ratio is what it is on this machine: the server's
    # CPU for each uploaded file bounds ours; A pays a new SSH exec
    # channel (md5sum) per file and a handshake per user.
    lines.append(f"W1 initial sync, per file: ours {o_init / n_files * 1e3:.2f} ms "
                 f"(server CPU {o_cpu / n_files * 1e3:.2f} ms), A {a_init / n_files * 1e3:.2f} ms "
                 f"(server CPU {a_cpu / n_files * 1e3:.2f} ms)")
    print(lines[-1], flush=True)
    w1_per_file = o_noop / n_files

    return w1_per_file, chunk


def run_w2(sshd: SshServer, lines: list[str]) -> None:
    """W2: one 1 GiB file, ours vs rclone alone vs ssh cat."""
    w2 = DaemonProcess(ROOT / "w2", log_level="info")
    w2.start()
    try:
        sshd.authorize(w2.ctl_json("key", "generate")["public_key"])
        big = w2.users_dir / "bigfile" / "backup" / "random.bin"
        big.parent.mkdir(parents=True)
        with big.open("wb") as f:
            for _ in range(64):
                f.write(os.urandom(16 * 1024 * 1024))
        own_trees(w2.users_dir, 1)
        certs = w2.data_dir / "certs"
        w2.add_destination("w2-chunk", sshd, sshd.remote_dir("w2-chunk"))
        chunk = rclone.upload_chunk_size(w2.ctl_json("dest", "show", "w2-chunk")["server_version"])
        w2_bench = Bench(sshd, certs / "rclone_key", certs / "known_hosts", chunk)
        times: dict[str, list[float]] = {"ours": [], "rclone": [], "ssh": []}
        for i in range(W2_ROUNDS):
            remote_w2, remote_rc, remote_ssh = (sshd.remote_dir(f"{k}-{i}") for k in ("w2", "rc", "ssh"))
            w2.add_destination(f"w2-{i}", sshd, remote_w2)
            ssh_cmd = ["ssh", "-q", "-i", str(certs / "rclone_key"), "-p", str(sshd.port),
                       "-o", f"UserKnownHostsFile={certs / 'known_hosts'}", "-o", "BatchMode=yes",
                       f"{sshd.user}@{sshd.host}", f"cat > {remote_ssh}/random.bin"]

            def ssh_cat() -> None:
                with big.open("rb") as f:
                    subprocess.run(ssh_cmd, stdin=f, check=True, stderr=subprocess.DEVNULL)
            runs = {"ours": lambda: ours(w2, f"w2-{i}"),
                    "rclone": lambda: w2_bench.baseline_b(w2.users_dir, remote_rc),
                    "ssh": lambda: timed(ssh_cat)}
            order = list(runs)[i % 3:] + list(runs)[:i % 3]  # nobody always goes first
            for name in order:
                settle(sshd.remote_root)
                times[name].append(runs[name]())
        t = {name: statistics.median(v) for name, v in times.items()}
        lines.append(f"W2 1 GiB initial sync (median of {W2_ROUNDS}): ours {t['ours']:.2f} s, "
                     f"rclone alone {t['rclone']:.2f} s, ssh cat {t['ssh']:.2f} s -> "
                     f"ours/ssh = {t['ours'] / t['ssh']:.2f}x (target <= 1.15x); "
                     f"rclone alone/ssh = {t['rclone'] / t['ssh']:.2f}x")
        print(lines[-1], flush=True)
    finally:
        w2.stop()



def run_w3(sshd: SshServer, w1_per_file: float | None, lines: list[str]) -> None:
    """W3: 2,000 users x 5 files, nothing changed, per file against W1."""
    w3 = DaemonProcess(ROOT / "w3", log_level="info")
    w3.start()
    try:
        sshd.authorize(w3.ctl_json("key", "generate")["public_key"])
        make_users(w3.users_dir, 2000, 5, seed=3, subdirs=0)
        own_trees(w3.users_dir, 200)  # 2,000 trees of 200 accounts
        w3.add_destination("w3", sshd, sshd.remote_dir("w3"))
        ours(w3, "w3")
        o3 = median_of(3, lambda: ours(w3, "w3"))
        w3_per_file = o3 / 10_000
        lines.append(f"W3 2000 users x 5 files, nothing changed: ours {o3:.2f} s; per file "
                     + (f"W1 {w1_per_file * 1e6:.0f} us vs W3 {w3_per_file * 1e6:.0f} us "
                        f"-> W3/W1 = {w3_per_file / w1_per_file:.2f}x (10x the users, same file count)"
                        if w1_per_file else f"W3 {w3_per_file * 1e6:.0f} us (W1 skipped)"))
        print(lines[-1], flush=True)
    finally:
        w3.stop()
