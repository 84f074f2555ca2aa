"""The remote index (issue 14, part 3) with the real daemon, sshd and
rclone: incremental syncs send only what changed and move deletions into
the versions folder; renames, directory moves, a file changed with the
same size and mtime, and a file deleted on the server by someone else
behave as the README says; hostile names survive the files-from list; a
name with a line break means full syncs; a crash at any moment leaves
the next sync correct; a tree that changes every day still gets its
full sync every `full_sync_every` days; an incremental sync lists no
remote directory."""
from __future__ import annotations

import os
import sqlite3
import time
from datetime import datetime, timedelta

from testbed.files import sparse, tree, write

GIB = 1024 ** 3
HOSTILE = ["-dash", "--long", "[br]", "{br,ace}", "st*ar", "back\\slash", "#hash", ";semi", " lead", "trail ",
           "q?x", "new.partial"]


def sync(daemon, *extra: str, expect: int = 0) -> dict:
    return daemon.ctl_json("sync", "d0", "--wait", *extra, expect=expect, timeout_s=300)


def test_incremental_syncs_renames_moves_hostile_names_and_what_only_a_full_sync_repairs(make_daemon, sshd):
    daemon = make_daemon()
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    remote = sshd.remote_dir("dest0")
    daemon.add_destination("d0", sshd, remote)
    users, t0 = daemon.users_dir, 1_700_000_000
    for rel in ("docs/a.txt", "docs/b.txt", "dir1/x.txt", "dir1/sub/y.txt", "keep.txt"):
        write(users / "alice/backup" / rel, f"alice {rel}\n", t0)
    for name in HOSTILE:
        write(users / "bob/backup/h" / name, f"bob {name}", t0)
    write(users / "carol/backup/new\nline", "carol", t0)
    write(users / "carol/backup/plain", "carol 1", t0)

    first = sync(daemon)
    assert set(first["stats"]["sync_modes"].values()) == {"full: first sync to this place"}

    # A rename, a directory move, hostile names changed and added, and a
    # tree whose names cannot be written one per line.
    a = users / "alice/backup"
    (a / "docs/a.txt").rename(a / "docs/a2.txt")
    (a / "dir1").rename(a / "dir2")
    for name in HOSTILE:
        write(users / "bob/backup/h" / name, f"bob {name} changed", t0 + 60)
        write(users / "bob/backup/new" / name, "new", t0 + 60)
    write(users / "carol/backup/plain", "carol 2", t0 + 60)
    second = sync(daemon)
    st = second["stats"]
    assert st["sync_modes"] == {"alice": "incremental", "bob": "incremental",
                                "carol": "full: a name in backup/ holds a line break"}
    # alice: the renamed and moved files are sent again, their old names
    # moved into versions/; the old directory stays, empty, on the server
    # until the next full sync.
    assert st["users"]["alice"]["files_transferred"] == 3 and st["users"]["alice"]["files_deleted"] == 3
    assert st["users"]["bob"]["files_transferred"] == 2 * len(HOSTILE)
    for user in ("alice", "bob", "carol"):
        assert tree(remote / "backup" / user) == tree(users / user / "backup"), user
    versions = remote / "versions" / st["versions_folder"]
    assert sorted(str(p.relative_to(versions)) for p in versions.rglob("*") if p.is_file()) == sorted(
        ["alice/docs/a.txt", "alice/dir1/x.txt", "alice/dir1/sub/y.txt", "carol/plain"] + [f"bob/h/{n}" for n in HOSTILE])
    assert (remote / "backup/alice/dir1").is_dir() and not any((remote / "backup/alice/dir1").rglob("*.txt"))
    log = (daemon.data_dir / "job-logs" / f"{second['id']}.log").read_text()
    assert '"msg": "Unchanged skipping"' not in log  # rclone's debug records stay out of the job log

    # Someone deletes a file on the server: an incremental sync trusts the
    # index and does not see it; the next full sync brings it back (and
    # removes the directory the move left empty).
    (remote / "backup/alice/keep.txt").unlink()
    write(a / "docs/c.txt", "new", t0 + 120)
    # A file changed keeping its size and mtime (a new inode, so the tree's
    # fingerprint changes): neither sync sends it; `verify` finds it.
    write(a / "docs/b.txt.new", "ALICE docs/b.txt\n", t0)
    (a / "docs/b.txt.new").rename(a / "docs/b.txt")
    third = sync(daemon)
    assert third["stats"]["sync_modes"] == {"alice": "incremental"}
    assert third["stats"]["users"]["alice"]["files_transferred"] == 1
    assert not (remote / "backup/alice/keep.txt").exists()
    assert (remote / "backup/alice/docs/b.txt").read_text() == "alice docs/b.txt\n"
    full = sync(daemon, "--full")
    assert full["stats"]["sync_modes"]["alice"] == "full: sync --full or full_sync_every 0"
    assert (remote / "backup/alice/keep.txt").read_text() == "alice keep.txt\n"
    assert not (remote / "backup/alice/dir1").exists()
    assert (remote / "backup/alice/docs/b.txt").read_text() == "alice docs/b.txt\n"
    assert tree(remote / "backup/bob") == tree(users / "bob/backup")


def test_a_crash_at_any_point_leaves_the_next_sync_correct(make_daemon, sshd):
    daemon = make_daemon()
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    remote = sshd.remote_dir("dest0")
    daemon.add_destination("d0", sshd, remote)
    a = daemon.users_dir / "alice/backup"
    for i in range(5):
        write(a / f"f{i}.txt", f"alice {i}\n", 1_700_000_000)
    sync(daemon)
    write(a / "f0.txt", "alice 0 changed\n", 1_700_000_100)
    assert sync(daemon)["stats"]["sync_modes"] == {"alice": "incremental"}

    # Killed in the middle of an incremental sync (a new file sent, a big
    # one on its way, a file to move into versions/)...
    write(a / "new.txt", "new\n", 1_700_000_200)
    (a / "f1.txt").unlink()
    sparse(a / "big.img", 2 * GIB)
    job_id = int(daemon.ctl("sync", "d0").stdout.strip())
    daemon.wait_for_progress(job_id)
    daemon.kill()
    # ...and the tree put back as it was after the last success: its
    # fingerprint says "unchanged", but the server may differ from it.
    (a / "new.txt").unlink()
    (a / "big.img").unlink()
    write(a / "f1.txt", "alice 1\n", 1_700_000_000)
    daemon.start()
    deadline = time.monotonic() + 120
    while any(j["state"] in ("queued", "running") for j in daemon.ctl_json("job", "list")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    after = [j for j in daemon.ctl_json("job", "list") if j["id"] > job_id and j["kind"] == "sync"]
    job = after[0] if after else sync(daemon)
    assert job["state"] == "succeeded"
    assert job["stats"]["sync_modes"] == {"alice": "full: the last sync did not finish (index dirty)"}
    assert tree(remote / "backup/alice") == tree(a)
    assert not [p for p in (remote / "backup").rglob("*") if "partial" in p.name]
    # The full sync rebuilt the index: nothing to do, then incremental again.
    assert sync(daemon)["stats"]["users"]["alice"]["status"] == "unchanged"
    write(a / "f2.txt", "alice 2 changed\n", 1_700_000_300)
    again = sync(daemon)
    assert again["stats"]["sync_modes"] == {"alice": "incremental"}
    assert again["stats"]["users"]["alice"]["files_transferred"] == 1
    assert tree(remote / "backup/alice") == tree(a)


def days_pass(daemon, days: int) -> None:
    """As if `days` went by since each user's last full sync: its recorded
    time moved back (the daemon reads it afresh at every sync)."""
    db = sqlite3.connect(daemon.data_dir / "state.db")
    with db:
        rows = db.execute("SELECT destination, user, full_at FROM user_state").fetchall()
        for dest, user, full_at in rows:
            earlier = datetime.fromisoformat(full_at) - timedelta(days=days)
            db.execute("UPDATE user_state SET full_at = ? WHERE destination = ? AND user = ?",
                       (earlier.isoformat(), dest, user))
    db.close()


def test_a_tree_that_changes_every_day_still_gets_its_full_sync_every_full_sync_every_days(make_daemon, sshd):
    """Incremental syncs trust the index; the full sync every
    `full_sync_every` days (7 by default) is what repairs the server. Its
    clock is the last full sync, not the last success: an incremental
    sync of a tree that changes more often than that must not push it on
    (it did, so a file deleted on the server by someone else never came
    back while its owner kept working)."""
    daemon = make_daemon()
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    remote = sshd.remote_dir("dest0")
    daemon.add_destination("d0", sshd, remote)
    a = daemon.users_dir / "alice/backup"
    write(a / "keep.txt", "alice keep\n", 1_700_000_000)
    assert sync(daemon)["stats"]["sync_modes"] == {"alice": "full: first sync to this place"}
    (remote / "backup/alice/keep.txt").unlink()  # someone else, on the server
    for day in range(1, 8):
        days_pass(daemon, 1)
        write(a / f"day{day}.txt", f"day {day}\n", 1_700_000_000 + day * 86400)
        modes = sync(daemon)["stats"]["sync_modes"]
        if day < 7:
            assert modes == {"alice": "incremental"}, day
    assert modes == {"alice": "full: full_sync_every"}
    assert tree(remote / "backup/alice") == tree(a)
    write(a / "day8.txt", "day 8\n", 1_700_000_000 + 8 * 86400)
    assert sync(daemon)["stats"]["sync_modes"] == {"alice": "incremental"}  # a new week from the full sync


def test_an_incremental_sync_lists_no_remote_directory(make_daemon, sshd):
    """Its changes go by name (--no-traverse): a remote directory the
    server will not list (search and write allowed, read not) still takes
    them, where any listing of it fails."""
    daemon = make_daemon()
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    remote = sshd.remote_dir("dest0")
    daemon.add_destination("d0", sshd, remote)
    a = daemon.users_dir / "alice/backup"
    for name in ("a.txt", "b.txt"):
        write(a / "docs" / name, f"alice {name}\n", 1_700_000_000)
    sync(daemon)
    unlistable = remote / "backup/alice/docs"
    unlistable.chmod(0o300)
    try:
        write(a / "docs/a.txt", "alice a.txt, changed\n", 1_700_000_100)
        write(a / "docs/new.txt", "new\n", 1_700_000_100)
        job = sync(daemon)
        assert job["stats"]["sync_modes"] == {"alice": "incremental"}
        assert job["stats"]["users"]["alice"]["files_transferred"] == 2
    finally:
        unlistable.chmod(0o755)
    assert tree(remote / "backup/alice") == tree(a)
    assert (remote / "versions" / job["stats"]["versions_folder"] / "alice/docs/a.txt").read_text() == "alice a.txt\n"


def test_a_folder_its_owner_can_no_longer_read_is_not_taken_for_deleted(make_daemon, sshd):
    """The scanner lists a tree with its owner's rights: a folder the owner
    can no longer read (root's, 0700) is left out of the listing, and an
    incremental sync would take its files for deleted and move them out of
    backup/ (or delete them, versions off) while they are still there. Such
    a tree is synced in full: rclone meets the same error and deletes
    nothing."""
    daemon = make_daemon()
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    remote = sshd.remote_dir("dest0")
    daemon.add_destination("d0", sshd, remote)
    a = daemon.users_dir / "alice/backup"
    for rel in ("priv/p1.txt", "priv/p2.txt", "open.txt"):
        write(a / rel, f"alice {rel}\n", 1_700_000_000)
    sync(daemon)
    owner = (a / "priv").stat()
    os.chown(a / "priv", 0, 0)
    (a / "priv").chmod(0o700)
    try:
        write(a / "open.txt", "alice open.txt, changed\n", 1_700_000_100)
        job = sync(daemon, expect=1)
    finally:
        os.chown(a / "priv", owner.st_uid, owner.st_gid)
        (a / "priv").chmod(0o755)
    assert job["stats"]["sync_modes"]["alice"].startswith("full: part of backup/ could not be read"), job
    assert (remote / "backup/alice/priv/p1.txt").read_text() == "alice priv/p1.txt\n"
    assert (remote / "backup/alice/priv/p2.txt").read_text() == "alice priv/p2.txt\n"
    assert (remote / "backup/alice/open.txt").read_text() == "alice open.txt, changed\n"
    assert not (remote / "versions").exists() or not list((remote / "versions").rglob("p*.txt"))
