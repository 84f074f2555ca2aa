"""The whole flow and its failures against every real SFTP server kind
(issue 12): OpenSSH, OpenSSH chrooted with ForceCommand internal-sftp,
ProFTPD mod_sftp, rclone serve sftp. One server of each kind for the module; each
test has its own destination and remote directory."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from _servers import add, conn_test, job
from testbed.files import tree, write


def users(daemon, prefix: str) -> dict[str, Path]:
    """Two users with a few files each, under names unique to the test."""
    t = 1_650_000_000
    made = {}
    for user, files in {f"{prefix}a": {"docs/a.txt": "alpha\n" * 50, "docs/deep/b.txt": "beta", "c d.txt": "gamma"},
                        f"{prefix}b": {"x.bin": "x" * 3000}}.items():
        for i, (rel, text) in enumerate(files.items()):
            write(daemon.users_dir / user / "backup" / rel, text, t + i)
        made[user] = daemon.users_dir / user / "backup"
    return made


def remove_users(made: dict[str, Path]) -> None:
    """Other tests share the daemon: leave nothing of this one to sync."""
    for backup in made.values():
        for p in sorted(backup.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        backup.rmdir()
        backup.parent.rmdir()


def test_whole_flow(served):
    daemon, server = served
    remote = server.remote_dir("flow")
    add(daemon, server, "flow", remote)
    tested = conn_test(daemon, "flow")
    assert tested["ok"], tested
    made = users(daemon, "fl")
    try:
        first = job(daemon, "sync", "flow")
        assert first["state"] == "succeeded", first
        for user, backup in made.items():
            assert tree(remote / "backup" / user) == tree(backup)
        again = job(daemon, "sync", "flow")
        assert again["state"] == "succeeded" and again["stats"]["files_transferred"] == 0

        alice, bob = made.values()
        (alice / "docs/a.txt").write_text("rewritten")
        (alice / "new.txt").write_text("new")
        (bob / "x.bin").unlink()
        (bob / "y.bin").write_text("y")
        changed = job(daemon, "sync", "flow")
        assert changed["state"] == "succeeded", changed
        assert (changed["stats"]["files_transferred"], changed["stats"]["files_deleted"]) == (3, 1)
        # 9a: checked are the 3 files compared, not also the deletion and
        # the 2 moves into versions/ (an incremental sync: the 3 it named)
        assert changed["stats"]["checks"] == 3, changed["stats"]
        for user, backup in made.items():
            assert tree(remote / "backup" / user) == tree(backup)
        assert (remote / "versions" / changed["stats"]["versions_folder"] / "flb/x.bin").exists()

        target = daemon.data_dir / "restore/r"  # no user's place: the daemon makes it
        restored = job(daemon, "restore", "flow", "--user", "fla", "--to", str(target))
        assert restored["state"] == "succeeded" and tree(target) == tree(alice)

        verified = job(daemon, "verify", "flow")
        assert verified["state"] == "succeeded", verified

        usage = daemon.ctl_json("dest", "usage", "flow")
        assert usage["state"] == "succeeded", usage
        assert usage["stats"]["users"]["fla"]["files"] == 4
        vfs = os.statvfs(remote)
        slack = 64 * 1024 * 1024  # other tests write meanwhile
        assert abs(usage["stats"]["free_bytes"] - vfs.f_bavail * vfs.f_frsize) < slack, [l for l in daemon.log_text().splitlines() if "statvfs" in l]
    finally:
        remove_users(made)


def test_server_stopped_fails_every_job_as_unreachable_and_usage_is_not_faked(served, tmp_path):
    daemon, server = served
    add(daemon, server, "stopped", server.remote_dir("stopped"))
    made = users(daemon, "st")
    try:
        assert job(daemon, "sync", "stopped")["state"] == "succeeded"
        assert daemon.ctl_json("dest", "usage", "stopped")["state"] == "succeeded"
        server.stop()
        try:
            for args in (("sync", "stopped"), ("verify", "stopped"), ("dest", "usage", "stopped"),
                         ("restore", "stopped", "--user", "sta", "--to", str(daemon.data_dir / "restore/while-stopped"))):
                failed = job(daemon, *args)
                assert failed["state"] == "failed", (args, failed)
                # the server was found dead before rclone was started at all
                assert failed["error"].startswith("unreachable: cannot connect to 127.0.0.1:"), (args, failed)
            tested = conn_test(daemon, "stopped")
            assert tested["class"] == "unreachable"
            versions = daemon.ctl("dest", "versions", "stopped")
            assert versions.returncode == 1 and "unreachable:" in versions.stderr, versions.stderr
            shown = daemon.ctl_json("dest", "show", "stopped")
            assert shown["usage"] is None
            assert any("last usage measurement" in w and "failed" in w for w in shown["warnings"])
        finally:
            server.start()
    finally:
        remove_users(made)


def test_server_frozen_fails_as_timeout(served):
    daemon, server = served
    add(daemon, server, "frozen", server.remote_dir("frozen"))
    made = users(daemon, "fr")
    server.freeze()
    try:
        failed = job(daemon, "sync", "frozen")
        assert failed["state"] == "failed" and failed["error"].startswith("timeout:"), failed
        assert "sent nothing" in failed["error"]
    finally:
        server.thaw()
        remove_users(made)
    assert job(daemon, "sync", "frozen")["state"] == "succeeded"


def test_remote_path_owned_by_root(served):
    if os.getuid() != 0:
        pytest.skip("needs root to give the remote path to root")
    daemon, server = served
    remote = server.remote_dir("rootowned")
    add(daemon, server, "rootowned", remote)
    os.chown(remote, 0, 0)
    made = users(daemon, "ro")
    try:
        tested = conn_test(daemon, "rootowned")
        assert tested["class"] == "remote path not writable", tested
        failed = job(daemon, "sync", "rootowned")
        assert failed["state"] == "failed" and failed["error"].startswith("remote path not writable:"), failed
        assert list(remote.iterdir()) == []
    finally:
        remove_users(made)


def test_proftpd_told_an_openssh_key_line_says_what_it_wants(served):
    daemon, server = served
    if server.kind != "proftpd":
        pytest.skip("ProFTPD's own key format")
    add(daemon, server, "keyform", server.remote_dir("keyform"))
    other = daemon.data_dir / "certs/other_key"  # where the daemon's account can read it
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    os.chown(other, *[(daemon.data_dir / "certs").stat().st_uid, (daemon.data_dir / "certs").stat().st_gid])
    server.authorize(other.with_suffix(".pub").read_text())  # the line an operator pastes from `key show`
    daemon.ctl_json("dest", "edit", "keyform", "--key-file", str(other))
    assert "mod_sftp" in daemon.ctl_json("dest", "show", "keyform")["server_version"]
    tested = conn_test(daemon, "keyform")
    assert tested["class"] == "authentication failed", tested
    assert any("--format rfc4716" in h for h in tested["hints"]), tested["hints"]


def test_a_file_corrupted_on_the_server_is_named_by_a_downloading_verify(served):
    """Finding 6: rclone serve sftp answers md5 from a cache keyed on size and
    modification time, so a server-side hash can miss a corruption; a verify
    that downloads compares the bytes themselves (verify --download, or
    dest edit --verify-download for scheduled verifies too)."""
    daemon, server = served
    remote = server.remote_dir("corrupt")
    add(daemon, server, "corrupt", remote)
    made = users(daemon, "co")
    try:
        assert job(daemon, "sync", "corrupt")["state"] == "succeeded"
        assert job(daemon, "verify", "corrupt")["state"] == "succeeded"
        damaged = remote / "backup/coa/docs/a.txt"
        st = damaged.stat()
        damaged.write_bytes(b"X" * st.st_size)  # same size and time: a sync sees nothing
        os.utime(damaged, (st.st_atime, st.st_mtime))
        once = job(daemon, "verify", "corrupt", "--download")
        assert once["state"] == "failed" and "coa/docs/a.txt" in once["error"], once
        assert once["stats"]["method"] == "download"
        daemon.ctl_json("dest", "edit", "corrupt", "--verify-download")
        assert daemon.ctl_json("dest", "show", "corrupt")["verify_download"] is True
        scheduled_kind = job(daemon, "verify", "corrupt")
        assert scheduled_kind["state"] == "failed" and scheduled_kind["stats"]["method"] == "download"
    finally:
        remove_users(made)
