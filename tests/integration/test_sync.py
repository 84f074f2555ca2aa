"""Sync jobs against a real sshd with the real rclone and the real daemon."""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from testbed.daemon import DaemonProcess
from testbed.files import sparse, tree, write
from testbed.sshd import SshServer

GIB = 1024 ** 3


@pytest.fixture
def setup(make_daemon, sshd: SshServer):
    made = []

    def make(n_destinations: int = 1, **config) -> tuple[DaemonProcess, list[Path]]:
        made.append(1)
        n = len(made)  # hypothesis calls this more than once per test
        daemon = make_daemon(name=f"daemon{n}" if n > 1 else "daemon", **config)
        sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
        remotes = []
        for i in range(n_destinations):
            remote = sshd.remote_dir(f"dest{i}" if n == 1 else f"run{n}-dest{i}")
            daemon.add_destination(f"d{i}", sshd, remote)
            remotes.append(remote)
        return daemon, remotes
    return make


def sync(daemon: DaemonProcess, name: str = "d0", *extra: str, expect: int = 0) -> dict:
    return daemon.ctl_json("sync", name, "--wait", *extra, expect=expect, timeout_s=300)


def rclone_processes_for(marker: str) -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "rclone" in cmd and marker in cmd:
                pids.append(int(pid))
    return pids


def test_mirror_is_exact_incremental_and_stats_are_exact(setup):
    daemon, (remote,) = setup()
    users = daemon.users_dir
    t0 = 1_700_000_000
    write(users / "alice/backup/documents/report 2024.txt", "quarterly\n" * 100, t0)
    write(users / "alice/backup/photos/été/chat.jpg", b"\xff\xd8" * 3000, t0 + 1)
    write(users / "alice/backup/-leading-dash", "dash", t0 + 2)
    write(users / "bob/backup/a/b/c/d/deep.txt", "deep", t0 + 3)
    write(users / "bob/backup/spaces in name/ file .txt", "sp", t0 + 4)
    write(users / "charlie/backup/日本語.txt", "unicode", t0 + 5)
    write(users / "charlie/backup/random.bin", os.urandom(1_000_003), t0 + 6)  # many write chunks
    (users / "alice/backup/documents/passwd").symlink_to("/etc/passwd")
    (users / "dave").mkdir()  # a user directory without backup/: not a backup user
    (users / "mallory").mkdir()
    (users / "mallory/backup").symlink_to("/etc")  # symlinked backup/: never followed

    job = sync(daemon)
    assert job["state"] == "succeeded" and job["error"] is None
    for user in ("alice", "bob", "charlie"):
        assert tree(remote / "backup" / user) == tree(users / user / "backup"), user
    assert not (remote / "backup/alice/documents/passwd").exists()
    assert sorted(p.name for p in (remote / "backup").iterdir()) == ["alice", "bob", "charlie"]
    st = job["stats"]
    assert (st["files_transferred"], st["files_deleted"], st["errors"]) == (7, 0, 0)
    assert st["bytes_transferred"] == sum(len(c) for u in ("alice", "bob", "charlie")
                                          for c, _ in tree(users / u / "backup").values())
    assert st["users"]["alice"]["files_transferred"] == 3
    assert st["users"]["alice"]["bytes_transferred"] == 1000 + 6000 + 4
    assert st["users"]["bob"] == {"files_transferred": 2, "bytes_transferred": 6, "files_deleted": 0,
                                  "status": "succeeded", "warning": None}
    assert st["users"]["mallory"]["status"] == "skipped" and "symbolic link" in st["users"]["mallory"]["warning"]
    assert "dave" not in st["users"]
    assert set(job) >= {"id", "destination", "kind", "state", "dry_run", "queued_at", "started_at", "finished_at", "error", "stats"}
    assert set(st) >= {"files_transferred", "bytes_transferred", "files_deleted", "checks", "errors", "duration_s", "users"}

    # Nothing changed: no user's tree differs from what their last sync
    # left, so no rclone runs at all; a full sync compares every file.
    again = sync(daemon)
    assert (again["stats"]["files_transferred"], again["stats"]["bytes_transferred"], again["stats"]["checks"]) == (0, 0, 0)
    assert {u: again["stats"]["users"][u]["status"] for u in ("alice", "bob", "charlie")} == dict.fromkeys(
        ("alice", "bob", "charlie"), "unchanged")
    assert not (daemon.data_dir / "job-logs" / f"{again['id']}.log").read_text().count('"stats"')
    full = sync(daemon, "d0", "--full")
    assert (full["stats"]["files_transferred"], full["stats"]["bytes_transferred"], full["stats"]["checks"]) == (0, 0, 7)

    write(users / "bob/backup/a/b/c/d/deep.txt", "deeper now", t0 + 100)
    (users / "alice/backup/-leading-dash").unlink()
    dry = sync(daemon, "d0", "--dry-run")
    assert dry["dry_run"] is True
    assert (dry["stats"]["files_transferred"], dry["stats"]["files_deleted"]) == (1, 1)
    assert (remote / "backup/alice/-leading-dash").exists()  # a dry run changes nothing
    changed = sync(daemon)
    st = changed["stats"]
    assert (st["files_transferred"], st["bytes_transferred"], st["files_deleted"]) == (1, 10, 1)
    assert st["users"]["bob"]["files_transferred"] == 1 and st["users"]["alice"]["files_deleted"] == 1
    assert tree(remote / "backup/bob") == tree(users / "bob/backup")
    assert not (remote / "backup/alice/-leading-dash").exists()

    shown = daemon.ctl_json("dest", "show", "d0")["last_sync"]
    assert shown == {"job": changed["id"], "at": changed["finished_at"], "status": "succeeded", "error": None,
                     "files_transferred": 1, "bytes_transferred": 10}
    assert [j["id"] for j in daemon.ctl_json("job", "list", "--dest", "d0", "--limit", "2")] == [changed["id"], dry["id"]]
    # What the sync deleted or overwrote is kept beside backup/, not inside it.
    versions = remote / "versions" / st["versions_folder"]
    assert (versions / "alice/-leading-dash").read_text() == "dash"
    assert (versions / "bob/a/b/c/d/deep.txt").read_text() == "deep"
    assert sorted(p.name for p in remote.iterdir()) == ["backup", "versions"]
    # Both users had a clean index: an incremental sync, whose deletion is a
    # server-side move into the versions folder.
    assert changed["stats"]["sync_modes"] == {"alice": "incremental", "bob": "incremental"}
    log = daemon.data_dir / "job-logs" / f"{changed['id']}.log"
    assert '"Moved (server-side)", "object": "alice/-leading-dash"' in log.read_text()


def test_a_user_whose_tree_vanished_keeps_the_remote_copy(setup, sshd):
    daemon, (remote,) = setup()
    # Already on the server before the first sync (other machines' backups
    # of users this NAS does not have): rclone is told to touch only the
    # users synced, so these stay, including "axb", which an unescaped
    # "a.b" would have matched.
    for other in ("olduser", "axb", "we!rd", "alice2"):
        write(sshd.remote_dir(f"dest0/backup/{other}") / "old.txt", "from before")
    write(daemon.users_dir / "alice/backup/keep.txt", "precious")
    write(daemon.users_dir / "bob/backup/b.txt", "b")
    write(daemon.users_dir / "a.b/backup/dot.txt", "dot")
    assert sync(daemon)["state"] == "succeeded"
    assert sorted(p.name for p in (remote / "backup").iterdir()) == ["a.b", "alice", "alice2", "axb", "bob", "olduser", "we!rd"]
    (daemon.users_dir / "alice/backup/keep.txt").unlink()  # backup/ now empty
    os.rename(daemon.users_dir / "bob", daemon.users_dir / "bob.gone")  # bob's directory is gone
    job = sync(daemon)
    assert job["state"] == "succeeded"
    assert (remote / "backup/alice/keep.txt").read_text() == "precious"
    assert (remote / "backup/bob/b.txt").read_text() == "b"
    for other in ("olduser", "axb", "we!rd", "alice2"):
        assert (remote / f"backup/{other}/old.txt").read_text() == "from before"
    assert job["stats"]["users"]["alice"]["status"] == "skipped"
    assert "empty" in job["stats"]["users"]["alice"]["warning"]
    assert job["stats"]["users"]["bob"]["status"] == "skipped"
    assert "user skipped" in daemon.log_text() and "user=alice" in daemon.log_text()


def test_cancel_second_request_and_progress_on_a_long_sync(setup):
    daemon, (remote,) = setup()
    sparse(daemon.users_dir / "alice/backup/big.img", 3 * GIB)
    first = daemon.ctl("sync", "d0")
    assert first.returncode == 0
    job_id = int(first.stdout.strip())
    progress = daemon.wait_for_progress(job_id)
    assert progress["current_user"] == "alice" and progress["total_bytes"] == 3 * GIB

    # The server said it is OpenSSH when its key was fetched: uploads use
    # 255 KiB writes (and the mirror test checks content with such files).
    assert daemon.ctl_json("dest", "show", "d0")["server_version"].startswith("SSH-2.0-OpenSSH_")
    (pid,) = rclone_processes_for(str(remote))
    assert b"RCLONE_CONFIG_DEST_CHUNK_SIZE=255k" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")

    # Asking again while it runs returns the same job.
    assert int(daemon.ctl("sync", "d0").stdout.strip()) == job_id
    assert daemon.ctl_json("status")["jobs_running"] == 1

    started = time.monotonic()
    cancelled = daemon.ctl("job", "cancel", str(job_id))
    assert cancelled.returncode == 0
    assert time.monotonic() - started < 5
    job = daemon.ctl_json("job", "show", str(job_id))
    assert job["state"] == "cancelled"
    assert rclone_processes_for(str(remote)) == []
    waited = daemon.ctl("job", "wait", str(job_id))
    assert waited.returncode == 1  # a cancelled job is a failed outcome


def test_concurrency_limit_holds_with_three_destinations(setup):
    daemon, remotes = setup(3, max_concurrent_syncs=2)
    size = 64 * 1024 * 1024
    sparse(daemon.users_dir / "alice/backup/big.img", size)
    for i in range(3):  # each sync lasts about 4 s, without keeping the CPU busy
        daemon.ctl_json("dest", "edit", f"d{i}", "--bwlimit", "16M")
    ids = [int(daemon.ctl("sync", f"d{i}").stdout.strip()) for i in range(3)]
    for job_id in ids:
        assert daemon.ctl_json("job", "wait", str(job_id), timeout_s=300)["state"] == "succeeded"
    running, peak, order = 0, 0, []
    for m in re.finditer(r"job (started|succeeded) job=(\d+)", daemon.log_text()):
        running += 1 if m[1] == "started" else -1
        peak = max(peak, running)
        order.append((m[1], int(m[2])))
    assert peak == 2
    # the third started only after one of the first two finished
    third_start = order.index(("started", ids[2]))
    assert any(kind == "succeeded" for kind, _ in order[:third_start])
    for remote in remotes:
        assert (remote / "backup/alice/big.img").stat().st_size == size


def test_sigkill_leaves_no_rclone_and_sigterm_records_interrupted(setup):
    daemon, (remote,) = setup()
    sparse(daemon.users_dir / "alice/backup/big.img", 4 * GIB)
    job_id = int(daemon.ctl("sync", "d0").stdout.strip())
    daemon.wait_for_progress(job_id)
    assert rclone_processes_for(str(remote))
    daemon.kill()
    deadline = time.monotonic() + 5
    while rclone_processes_for(str(remote)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rclone_processes_for(str(remote)) == []

    daemon.start()
    job = daemon.ctl_json("job", "show", str(job_id))
    assert job["state"] == "interrupted"

    job_id = int(daemon.ctl("sync", "d0").stdout.strip())
    daemon.wait_for_progress(job_id)
    daemon.signal(signal.SIGTERM)
    assert daemon.stop() == 0
    assert rclone_processes_for(str(remote)) == []
    daemon.start()
    assert daemon.ctl_json("job", "show", str(job_id))["state"] == "interrupted"


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FILE_NAME = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                    min_size=1, max_size=60).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 255)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(FILE_NAME, min_size=1, max_size=12, unique_by=lambda n: n.lower()))
def test_hard_to_parse_names_arrive_intact_and_nothing_outside_is_read(setup, names):
    daemon, (remote,) = setup()
    tree_root = daemon.users_dir / "alice/backup"
    for i, name in enumerate(names):
        write(tree_root / f"d{i}" / name, f"content {i}")
    (tree_root / "escape").symlink_to(daemon.data_dir)  # a link out of the tree, to the daemon's secrets
    job = sync(daemon)
    assert job["state"] == "succeeded", job["error"]
    got = {str(p.relative_to(remote / "backup/alice")) for p in (remote / "backup/alice").rglob("*") if p.is_file()}
    assert got == {f"d{i}/{name}" for i, name in enumerate(names)}
    assert not (remote / "backup/alice/escape").exists()


def test_two_syncs_in_one_second_keep_both_replaced_copies(setup):
    """A versions folder is named by its sync's start second. A second sync
    in the same second as the last would have moved its replaced copy onto
    the one the first saved there; it takes the next second's name
    instead, so every replaced copy is kept."""
    daemon, (remote,) = setup()
    doc = daemon.users_dir / "alice/backup/doc.txt"
    write(doc, "v1")
    assert sync(daemon)["state"] == "succeeded"
    while time.time() % 1 > 0.05:  # at the top of a second: the next two syncs start in it
        time.sleep(0.01)
    for text in ("v22", "v333"):  # a new size each time: same-second mtimes
        write(doc, text)
        assert sync(daemon)["state"] == "succeeded"
    saved = sorted(p.read_text() for p in (remote / "versions").rglob("doc.txt"))
    assert saved == ["v1", "v22"], saved
    assert (remote / "backup/alice/doc.txt").read_text() == "v333"
