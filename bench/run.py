"""Benchmark: the daemon's sync against the baselines, side by side in one run.

    .venv/bin/python -m bench.run [--a-users 20] [--skip-w1] ... [--skip-w5] [--w4-users N] [--w5-users N]

Everything runs against a real OpenSSH sshd on 127.0.0.1 (testbed.sshd)
with the real rclone; "ours" is `anemonectl sync DEST --wait` against the
real daemon. Each line prints the ratio measured in this run; absolute
times depend on the machine.

W1  200 users x 50 files (100 B - 20 KB, 5 sub-directories each), each
    user's tree owned by its own local account (the daemon reads every
    tree as its owner, through that user's sftp-server)
    A: one `rclone sync` per user, default flags (what the original product
       does), measured on --a-users users and scaled to 200 (said so)
    B: rclone alone: one process over a combine remote of the same local
       trees (read directly, as root), with the daemon's flags
    also: nothing changed, and one file changed in one user
W2  one 1 GiB file of random data, vs `ssh host 'cat > file' < file`;
    rclone alone (baseline B's command) is printed too, so that the
    daemon's own overhead and rclone's are told apart
W3  2,000 users x 5 files, nothing changed: cost per file vs W1's
W4  a real link: 200 users x 50 files through testbed/linksim.py (50 ms
    round trip, 50 Mbit/s) vs rsync over ssh and rclone alone with its
    defaults (bench/w4.py); its initial sync also prints where the CPU
    went, ours' and rsync's (bench/cpu.py)
W5  100,000 files on loopback, nothing changed, vs rclone alone, with
    both peak RSS figures (bench/w5.py)
W1-W3 are in bench/workloads.py, shared helpers in bench/common.py.
"""
from __future__ import annotations

import argparse
import shutil
import sys

from testbed import accounts
from testbed.daemon import DaemonProcess
from testbed.sshd import SshServer

from . import w4, w5, workloads
from .common import ROOT

def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--a-users", type=int, default=20, help="users baseline A is measured on (scaled to 200)")
    for w in ("w1", "w2", "w3", "w4", "w5"):
        parser.add_argument(f"--skip-{w}", action="store_true")
    parser.add_argument("--w4-users", type=int, default=200, help="W4 at a reduced scale (a check, not the figure)")
    parser.add_argument("--w5-users", type=int, default=100, help="W5's users, 1,000 files each")
    args = parser.parse_args()

    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir()
    sshd = SshServer(ROOT / "sshd")
    sshd.start()
    lines: list[str] = []
    try:
        w1_per_file = None
        if not args.skip_w1:
            daemon = DaemonProcess(ROOT / "w1", log_level="info")
            daemon.start()
            try:
                sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
                w1_per_file, _ = workloads.run_w1(daemon, sshd, args.a_users, lines)
            finally:
                daemon.stop()
        if not args.skip_w2:
            workloads.run_w2(sshd, lines)
        if not args.skip_w3:
            workloads.run_w3(sshd, w1_per_file, lines)
        if not args.skip_w4:
            w4.run(ROOT, args.w4_users, lines)
        if not args.skip_w5:
            w5.run(ROOT, sshd, args.w5_users, lines)
    finally:
        sshd.cleanup()
        accounts.remove_all()
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
