"""Faults produced for real (real sshd, real rclone, real daemon): after
each, nothing that was on the server is lost or corrupted."""
from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testbed.daemon import DaemonProcess
from testbed.files import snapshot, sparse
from testbed.sshd import SshServer

GIB = 1024 ** 3
MIB = 1024 ** 2


@pytest.fixture
def env(make_daemon, sshd: SshServer):
    def make(**config) -> tuple[DaemonProcess, Path]:
        daemon = make_daemon(**config)
        sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
        remote = sshd.remote_dir("dest")
        daemon.add_destination("d", sshd, remote)
        for user, n in (("alice", 3), ("bob", 2)):
            for i in range(n):
                f = daemon.users_dir / user / "backup" / f"docs/f{i}.txt"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(f"{user} {i}\n" * 100)
        assert sync(daemon)["state"] == "succeeded"
        return daemon, remote
    return make


def sync(daemon: DaemonProcess, name: str = "d", *extra: str) -> dict:
    res = daemon.ctl("sync", name, "--wait", "--json", *extra, timeout_s=600)
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def test_server_down_fails_unreachable_and_changes_nothing(env, sshd):
    daemon, remote = env()
    before = snapshot(remote)
    (daemon.users_dir / "alice/backup/docs/f0.txt").unlink()
    sshd.stop()
    job = sync(daemon)
    assert job["state"] == "failed" and job["error"].startswith("unreachable:")
    sshd.start()
    assert snapshot(remote) == before
    assert sync(daemon)["state"] == "succeeded"


def test_changed_host_key_transfers_nothing(env, sshd):
    daemon, remote = env()
    before = snapshot(remote)
    (daemon.users_dir / "bob/backup/new.txt").write_text("new")
    sshd.stop()
    sshd.new_host_key()
    sshd.start()
    job = sync(daemon)
    assert job["state"] == "failed" and job["error"].startswith("host key mismatch:")
    assert snapshot(remote) == before


def test_sshd_killed_mid_transfer_then_the_next_sync_completes_cleanly(env, sshd):
    daemon, remote = env()
    sparse(daemon.users_dir / "alice/backup/big.img", 128 * MIB)
    daemon.ctl_json("dest", "edit", "d", "--bwlimit", "32M")  # 4 s to send: killed well before the end
    job_id = int(daemon.ctl("sync", "d").stdout)
    daemon.wait_for_progress(job_id)
    sshd.stop(signal.SIGKILL)
    job = daemon.ctl_json("job", "wait", str(job_id), expect=1, timeout_s=300)
    assert job["state"] == "failed" and job["error"]
    sshd.start()
    daemon.ctl_json("dest", "edit", "d", "--bwlimit", "off")
    assert sync(daemon)["state"] == "succeeded"
    local = snapshot(daemon.users_dir / "alice/backup")
    assert snapshot(remote / "backup/alice") == local
    leftovers = [p for p in remote.rglob("*") if ".partial" in p.name]
    assert leftovers == []


def test_daemon_killed_mid_sync_is_interrupted_and_catches_up(env):
    daemon, remote = env()
    sparse(daemon.users_dir / "bob/backup/big.img", 128 * MIB)
    daemon.ctl_json("dest", "edit", "d", "--bwlimit", "32M")  # 4 s to send: killed well before the end
    job_id = int(daemon.ctl("sync", "d").stdout)
    daemon.wait_for_progress(job_id)
    daemon.kill()
    daemon.start()
    assert daemon.ctl_json("job", "show", str(job_id))["state"] == "interrupted"
    jobs = daemon.ctl_json("job", "list")
    catch_up = jobs[0]
    assert catch_up["trigger"] == "catch-up" and catch_up["id"] > job_id
    assert daemon.ctl_json("job", "wait", str(catch_up["id"]), timeout_s=300)["state"] == "succeeded"
    assert (remote / "backup/bob/big.img").stat().st_size == 128 * MIB
    assert [p for p in remote.rglob("*") if ".partial" in p.name] == []


def test_read_only_remote_fails_clearly_and_keeps_what_was_there(env):
    daemon, remote = env()
    before = snapshot(remote)
    (daemon.users_dir / "alice/backup/docs/f0.txt").write_text("changed")
    (daemon.users_dir / "alice/backup/docs/added.txt").write_text("new")
    for d in [remote / "backup", *[p for p in (remote / "backup").rglob("*") if p.is_dir()]]:
        d.chmod(0o555)
    try:
        job = sync(daemon)
    finally:
        for d in [remote / "backup", *[p for p in (remote / "backup").rglob("*") if p.is_dir()]]:
            d.chmod(0o755)
    assert job["state"] == "failed" and "permission denied" in job["error"].lower()
    assert job["error"].startswith("remote path not writable:")
    assert snapshot(remote) == before


def test_full_remote_disk_fails_clearly_and_corrupts_nothing(make_daemon, sshd):
    if os.getuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    small = sshd.remote_dir("small")
    account = pwd.getpwnam(sshd.user)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=2m,uid={account.pw_uid},gid={account.pw_gid},mode=0755",
                    "tmpfs", str(small)], check=True)
    try:
        daemon = make_daemon()
        sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
        daemon.add_destination("small", sshd, small)
        first = daemon.users_dir / "alice/backup/first.txt"
        first.parent.mkdir(parents=True)
        first.write_text("fits\n" * 1000)
        assert sync(daemon, "small")["state"] == "succeeded"
        before = snapshot(small)
        (daemon.users_dir / "alice/backup/huge.bin").write_bytes(os.urandom(4 * 1024 * 1024))
        job = sync(daemon, "small")
        assert job["state"] == "failed" and job["error"].startswith("remote disk full:")
        assert (small / "backup/alice/first.txt").read_text() == "fits\n" * 1000
        assert {k: v for k, v in snapshot(small).items() if not k.startswith("versions/")} == before
        assert [p for p in small.rglob("*") if ".partial" in p.name or p.name == "huge.bin"] == []
    finally:
        subprocess.run(["umount", "-l", str(small)])


def test_restart_with_queued_work_keeps_everything(make_daemon, sshd):
    daemon = make_daemon(max_concurrent_syncs=1)
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    r1, r2 = sshd.remote_dir("one"), sshd.remote_dir("two")
    daemon.add_destination("one", sshd, r1)
    daemon.add_destination("two", sshd, r2)
    daemon.ctl_json("dest", "schedule", "two", "--daily", "03:30")
    daemon.ctl_json("dest", "edit", "one", "--bwlimit", "16M")  # still running when the daemon stops
    sparse(daemon.users_dir / "alice/backup/big.img", 128 * MIB)
    first = int(daemon.ctl("sync", "one").stdout)
    second = int(daemon.ctl("sync", "two").stdout)
    daemon.wait_for_progress(first)
    assert daemon.ctl_json("job", "show", str(second))["state"] == "queued"
    daemon.signal(signal.SIGTERM)
    assert daemon.stop() == 0
    daemon.start()
    assert [d["name"] for d in daemon.ctl_json("dest", "list")] == ["one", "two"]
    assert daemon.ctl_json("dest", "show", "two")["schedule"]["time"] == "03:30"
    assert daemon.ctl_json("job", "show", str(first))["state"] == "interrupted"
    assert daemon.ctl_json("job", "wait", str(second), timeout_s=300)["state"] == "succeeded"
    ids = {j["id"] for j in daemon.ctl_json("job", "list")}
    assert {first, second} <= ids


def test_delete_guard_refuses_a_mass_deletion_until_allowed(env):
    daemon, remote = env()
    daemon.ctl_json("dest", "edit", "d", "--max-delete", "2")
    for i in range(3):
        (daemon.users_dir / f"alice/backup/docs/f{i}.txt").unlink()
    (daemon.users_dir / "alice/backup/docs/still.txt").write_text("here")  # alice is not empty
    job = sync(daemon)
    assert job["state"] == "failed"
    assert "delete guard: 1 deletion(s) refused" in job["error"] and "--allow-deletes" in job["error"]
    assert len(list((remote / "backup/alice/docs").glob("f*.txt"))) == 1  # at most 2 went
    # alice's index was clean: the deletions were an incremental sync's
    # server-side moves, under the same guard; refused, her next is full.
    assert job["stats"]["sync_modes"] == {"alice": "incremental"}
    assert len(list((remote / "versions").rglob("f*.txt"))) == 2
    allowed = sync(daemon, "d", "--allow-deletes")
    assert allowed["state"] == "succeeded"
    assert allowed["stats"]["sync_modes"] == {"alice": "full: the last sync of this user failed"}
    assert sorted(p.name for p in (remote / "backup/alice/docs").iterdir()) == ["still.txt"]
    # every deleted file is still on the server, in versions/
    kept = sorted(p.name for p in (remote / "versions").rglob("f*.txt"))
    assert kept == ["f0.txt", "f1.txt", "f2.txt"]


def test_emptied_tree_is_kept_unless_the_operator_says_so(env):
    daemon, remote = env()
    for f in (daemon.users_dir / "bob/backup/docs").iterdir():
        f.unlink()
    (daemon.users_dir / "bob/backup/docs").rmdir()
    job = sync(daemon)
    assert job["state"] == "succeeded" and job["stats"]["users"]["bob"]["status"] == "skipped"
    assert len(list((remote / "backup/bob").rglob("*.txt"))) == 2
    job = sync(daemon, "d", "--allow-empty", "bob")
    assert job["state"] == "succeeded" and job["stats"]["users"]["bob"]["files_deleted"] == 2
    assert list((remote / "backup/bob").rglob("*.txt")) == []


def test_a_server_that_freezes_mid_sync_fails_the_job_as_timeout_within_a_minute(env, sshd):
    daemon, remote = env()
    sparse(daemon.users_dir / "alice/backup/big.img", 2 * GIB)
    job = daemon.ctl_json("sync", "d")
    daemon.wait_for_progress(job["id"])
    sshd.freeze()  # the server (and the link to it) says nothing more
    try:
        started = time.monotonic()
        done = daemon.ctl_json("job", "wait", str(job["id"]), expect=1, timeout_s=120)
        took = time.monotonic() - started
    finally:
        sshd.thaw()
    assert done["state"] == "failed" and done["error"].startswith("timeout:"), done
    assert took < 60, took  # the contract of this fault, not a speed claim
    assert done["stats"]["users"]["alice"]["status"] == "failed"
