"""The login user's disk full, on every server kind (issue 12, finding 2):
a small ext4 file system on a loop device, with ext4's usual 5% reserved
for root. The free space the daemon reports, warns on and diagnoses with
is what the login user can still write (f_bavail), not what root could
(f_bfree, which rclone's `about` reports)."""
from __future__ import annotations

import math
import os

import pytest

from _servers import add, job
from testbed.files import sparse
from testbed.servers import LoopFilesystem


def test_the_login_users_disk_full(served, tmp_path):
    why = LoopFilesystem.unavailable()
    if why:
        pytest.skip(f"no loop device for a small ext4 disk: {why}")
    daemon, server = served
    # rclone serve sftp answers statvfs for the directory it serves, whatever
    # is mounted below it: there, the small disk is the served directory.
    mount = server.served if server.kind == "rclone-serve" else server.remote_dir("small")
    disk = LoopFilesystem(tmp_path, mount, server.account)
    disk.mount()
    try:
        path = add(daemon, server, "small", mount)
        vfs = os.statvfs(mount)
        avail, free, total = (vfs.f_bavail * vfs.f_frsize, vfs.f_bfree * vfs.f_frsize, vfs.f_blocks * vfs.f_frsize)
        assert free - avail > 1024 * 1024  # the root reserve this is about

        usage = daemon.ctl_json("dest", "usage", "small")
        # (ext4 may use a block or two of its own meanwhile)
        assert abs(usage["stats"]["free_bytes"] - avail) <= 64 * 1024, (path, usage["stats"], avail, free)
        assert usage["stats"]["total_bytes"] == total
        # a threshold between the user's share and root's: only the user's figure is under it
        threshold = math.ceil(100 * avail / total) + 1
        assert threshold < 100 * free / total
        daemon.ctl_json("dest", "edit", "small", "--warn-free-percent", str(threshold))
        daemon.ctl_json("dest", "usage", "small")
        assert any(w.startswith("only ") for w in daemon.ctl_json("dest", "show", "small")["warnings"])

        # a file that root could still store, the login user cannot
        sparse(daemon.users_dir / "big/backup/big.img", avail + (free - avail) // 2)
        failed = job(daemon, "sync", "small")
        assert failed["state"] == "failed" and failed["error"].startswith("remote disk full:"), failed
        assert [p for p in mount.rglob("*") if p.is_file()] == []
    finally:
        disk.unmount()
