"""Getting files back, proving the remote copy, measuring the server:
against the real sshd, rclone and daemon."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3

import pytest

from testbed.daemon import DaemonProcess
from testbed.files import tree
from testbed.sshd import SshServer


@pytest.fixture
def synced(daemon: DaemonProcess, sshd: SshServer):
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    remote = sshd.remote_dir("r")
    daemon.add_destination("d", sshd, remote)
    t = 1_650_000_000
    for user, files in {"alice": {"docs/a.txt": "alpha\n" * 50, "docs/deep/b.txt": "beta", "c d.txt": "gamma"},
                        "bob": {"x.bin": "x" * 3000}}.items():
        for i, (rel, text) in enumerate(files.items()):
            p = daemon.users_dir / user / "backup" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            os.utime(p, (t + i, t + i))
    assert daemon.ctl_json("sync", "d", "--wait")["state"] == "succeeded"
    return daemon, remote


def test_round_trip_sub_path_version_and_refusals(synced):
    daemon, remote = synced
    places = daemon.data_dir / "restore"  # no user's place: the daemon makes each target itself, 0700
    alice = daemon.users_dir / "alice/backup"
    original = tree(alice)

    # the user loses everything locally; the restore brings it all back
    target = places / "restored"
    job = daemon.ctl_json("restore", "d", "--user", "alice", "--to", str(target), "--wait")
    assert job["state"] == "succeeded" and job["stats"]["files_transferred"] == 3
    assert tree(target) == original  # content and modification times

    listing = daemon.ctl_json("restore", "d", "--user", "alice", "--list", "--path", "docs")
    assert sorted(e["path"] for e in listing["entries"] if not e["is_dir"]) == ["a.txt", "deep/b.txt"]

    sub = places / "sub"
    assert daemon.ctl_json("restore", "d", "--user", "alice", "--path", "docs/deep", "--to", str(sub), "--wait")["state"] == "succeeded"
    assert tree(sub) == {"b.txt": original["docs/deep/b.txt"]}

    # a non-empty target is refused, unless --overwrite
    res = daemon.ctl("restore", "d", "--user", "alice", "--to", str(target))
    assert res.returncode == 2 and "not empty" in res.stderr
    (target / "c d.txt").write_text("scribbled")
    assert daemon.ctl_json("restore", "d", "--user", "alice", "--to", str(target), "--overwrite", "--wait")["state"] == "succeeded"
    assert (target / "c d.txt").read_text() == "gamma"

    # a version: the state before a change
    (alice / "docs/a.txt").write_text("rewritten")
    changed = daemon.ctl_json("sync", "d", "--wait")
    folder = changed["stats"]["versions_folder"]
    assert daemon.ctl_json("dest", "versions", "d") == [folder]
    old = places / "old"
    job = daemon.ctl_json("restore", "d", "--user", "alice", "--version", folder, "--to", str(old), "--wait")
    assert job["state"] == "succeeded"
    assert tree(old) == {"docs/a.txt": original["docs/a.txt"]}

    for bad, field in ((["--user", "../etc"], "user"), (["--user", "alice", "--path", "../../x"], "path"),
                       (["--user", "alice", "--version", "yesterday"], "version")):
        res = daemon.ctl("restore", "d", *bad, "--to", str(places / "never"))
        assert res.returncode == 2 and field in res.stderr
    assert not (places / "never").exists()


def test_verify_passes_then_names_a_file_changed_behind_its_back(synced):
    daemon, remote = synced
    ok = daemon.ctl_json("verify", "d", "--wait")
    assert ok["state"] == "succeeded" and ok["stats"]["checks"] == 4 and ok["stats"]["differ"] == 0

    # same size, same modification time, different content: a sync would not notice
    victim = remote / "backup/alice/docs/deep/b.txt"
    st = victim.stat()
    victim.write_text("BETA")
    os.utime(victim, (st.st_atime, st.st_mtime))
    assert daemon.ctl_json("sync", "d", "--wait")["stats"]["files_transferred"] == 0

    res = daemon.ctl("verify", "d", "--wait")
    assert res.returncode == 1
    job = daemon.ctl_json("job", "show", str(daemon.ctl_json("job", "list", "--limit", "1")[0]["id"]))
    assert job["state"] == "failed" and "alice/docs/deep/b.txt" in job["error"]
    assert job["stats"]["users"]["alice"]["differing_files"] == ["alice/docs/deep/b.txt"]
    assert job["stats"]["users"]["bob"]["status"] == "succeeded"
    assert daemon.ctl_json("verify", "d", "--user", "bob", "--wait")["state"] == "succeeded"


def test_usage_matches_what_is_on_disk(synced):
    daemon, remote = synced
    (daemon.users_dir / "bob/backup/x.bin").write_text("y" * 10)  # an overwrite: the old copy goes to versions/
    assert daemon.ctl_json("sync", "d", "--wait")["state"] == "succeeded"
    job = daemon.ctl_json("dest", "usage", "d")
    u = job["stats"]
    for user in ("alice", "bob"):
        files = [p for p in (remote / "backup" / user).rglob("*") if p.is_file()]
        assert u["users"][user] == {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    versions = [p for p in (remote / "versions").rglob("*") if p.is_file()]
    assert (u["versions_files"], u["versions_bytes"]) == (1, 3000) == (len(versions), sum(p.stat().st_size for p in versions))
    df = os.statvfs(remote)
    slack = 64 * 1024 * 1024  # other tests write meanwhile
    # what the server's statvfs says: available to users, or free blocks
    assert df.f_bavail * df.f_frsize - slack <= u["free_bytes"] <= df.f_bfree * df.f_frsize + slack
    # a threshold above the real free share: dest show and status warn
    daemon.ctl_json("dest", "edit", "d", "--warn-free-percent", "100")
    daemon.ctl_json("dest", "usage", "d")
    assert daemon.ctl_json("dest", "show", "d")["warnings"]
    assert any(w.startswith("d: only") for w in daemon.ctl_json("status")["warnings"])
    assert "remote free space low" in daemon.log_text()


def test_versions_past_keep_versions_days_are_pruned_and_nothing_else(daemon: DaemonProcess, sshd: SshServer):
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    remote = sshd.remote_dir("pruned")
    for folder in ("2020-01-01T000000Z", "not-ours"):
        (sshd.remote_dir(f"pruned/versions/{folder}/alice") / "old.txt").write_text("old")
    daemon.add_destination("d", sshd, remote)
    (daemon.users_dir / "alice/backup").mkdir(parents=True)
    (daemon.users_dir / "alice/backup/a.txt").write_text("a")
    # The first sync only starts the daily pruning clock ...
    assert daemon.ctl_json("sync", "d", "--wait")["state"] == "succeeded"
    assert sorted(p.name for p in (remote / "versions").iterdir()) == ["2020-01-01T000000Z", "not-ours"]
    # ... a day later, the next sync prunes (the clock is moved back in the
    # daemon's own database, which it reads afresh for every job).
    with sqlite3.connect(daemon.data_dir / "state.db") as db:
        db.execute("UPDATE destinations SET versions_pruned_at = '2000-01-01T00:00:00+00:00' WHERE name = 'd'")
    assert daemon.ctl_json("sync", "d", "--wait")["state"] == "succeeded"
    assert sorted(p.name for p in (remote / "versions").iterdir()) == ["not-ours"]
    assert "old versions removed dest=d folder=2020-01-01T000000Z" in daemon.log_text()


def test_a_name_with_a_line_break_cannot_speak_for_another_users_files(synced):
    """alice names folders so that, in the server's md5sum output for
    every user at once, her file's line would break early and the rest
    read as a line for bob's file, with that file's right md5: after
    U+2028 (rclone prints it as it is; Python's splitlines() ended a line
    there, and bob's file, lost on the server, passed as the same), and
    after a real line break (rclone prints it as U+240A: should it ever
    print it as it is, this fails). bob's file must be reported missing."""
    daemon, remote = synced
    bob_file = daemon.users_dir / "bob/backup/x.bin"
    md5 = hashlib.md5(bob_file.read_bytes()).hexdigest()
    for brk in ("\u2028", "\n"):  # folder "z<break><md5>  bob" holding x.bin: "<hash>  alice/z<break><md5>  bob/x.bin"
        folder = daemon.users_dir / "alice/backup" / f"z{brk}{md5}  bob"
        folder.mkdir()
        (folder / "x.bin").write_text("alice's own")
    assert daemon.ctl_json("sync", "d", "--wait")["state"] == "succeeded"
    (remote / "backup/bob/x.bin").unlink()  # lost on the server
    res = daemon.ctl("verify", "d", "--wait", "--json")
    job = json.loads(res.stdout)
    assert job["state"] == "failed", job
    assert job["stats"]["users"]["bob"]["missing_files"] == ["bob/x.bin"], job["stats"]["users"]["bob"]


def test_verify_names_the_users_it_could_not_verify(synced):
    """A user whose tree has a problem (here: emptied) is not compared,
    and the job says so per user, as a sync does, instead of leaving them
    out of its report."""
    daemon, _ = synced
    (daemon.users_dir / "bob/backup/x.bin").unlink()
    job = daemon.ctl_json("verify", "d", "--wait")
    assert job["state"] == "succeeded", job
    assert job["stats"]["users"]["alice"]["status"] == "succeeded"
    assert job["stats"]["users"]["bob"]["status"] == "skipped" and job["stats"]["users"]["bob"]["warning"], job
    shown = daemon.ctl("job", "show", str(job["id"])).stdout
    assert f"bob: skipped: {job['stats']['users']['bob']['warning']}" in shown, shown
