"""A sync's users shared between rclone runs at once (the destination's
`processes`), with the real daemon, sshd and rclone: every user is backed
up, the job's counts add up, and the delete guard's budget holds for the
job as a whole: a share whose part of it ran out runs again with what the
other shares left, and no job deletes more than the budget."""
from __future__ import annotations

import json
from pathlib import Path

from testbed.daemon import DaemonProcess
from testbed.files import write
from testbed.linksim import LinkSim
from testbed.sshd import SshServer

USERS = ("alice", "bob", "carol")
FILES = 12


def sync(daemon: DaemonProcess, *extra: str) -> dict:
    return sync_dest(daemon, "d", *extra)


def sync_dest(daemon: DaemonProcess, name: str, *extra: str) -> dict:
    res = daemon.ctl("sync", name, "--wait", "--json", *extra, timeout_s=300)
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def notes(daemon: DaemonProcess, job: dict, msg: str) -> list[dict]:
    lines = (daemon.data_dir / "job-logs" / f"{job['id']}.log").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("msg") == msg]


def remote_files(remote: Path, user: str) -> set[str]:
    return {p.name for p in (remote / "backup" / user).rglob("*") if p.is_file()}


def test_shares_back_up_everyone_and_keep_the_delete_budget_whole(make_daemon, sshd: SshServer):
    daemon = make_daemon()
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    remote = sshd.remote_dir("dest")
    # Through a link of 10 ms each way: the runs that start together would
    # find a shared directory missing within one round trip of each other.
    link = LinkSim(sshd.host, sshd.port, delay_s=0.01).start()
    try:
        _shares(daemon, sshd, remote, link.port)
    finally:
        link.stop()


def _shares(daemon: DaemonProcess, sshd: SshServer, remote: Path, port: int) -> None:
    # Every sync lists the remote (full), so deletions go through rclone
    # sync's own --max-delete in each share. One transfer per run: a share
    # needs eight files per transfer, and these trees are small.
    daemon.ctl_json("dest", "add", "d", "--host", sshd.host, "--port", str(port), "--user", sshd.user,
                    "--remote-path", str(remote), "--host-key-fingerprint", sshd.host_key_fingerprint(),
                    "--processes", "3", "--full-sync-every", "0", "--transfers", "1")
    for user in USERS:
        for i in range(FILES):
            write(daemon.users_dir / f"{user}/backup/d{i % 2}/f{i}.txt", f"{user} {i}\n" * 40)
    first = sync(daemon)
    assert first["state"] == "succeeded", first
    assert first["stats"]["files_transferred"] == len(USERS) * FILES
    assert {u: s["files_transferred"] for u, s in first["stats"]["users"].items()} == {u: FILES for u in USERS}
    assert notes(daemon, first, "users shared between rclone runs at once")[0]["runs"] == 3
    # The runs made no shared directory (backup/ was missing): made first.
    assert notes(daemon, first, "directories the runs share made first")[0]["ok"]
    assert "mkdir" not in (daemon.data_dir / "job-logs" / f"{first['id']}.log").read_text()
    # Nothing was replaced: the versions folder made for the runs is gone
    # again, so `dest versions` lists no folder that keeps nothing.
    assert [p for p in (remote / "versions").iterdir()] == []
    assert daemon.ctl_json("dest", "versions", "d") == []
    assert all(remote_files(remote, u) == {f"f{i}.txt" for i in range(FILES)} for u in USERS)

    # Budget 6, in three shares of 2. alice deletes 5: her share stops at
    # 2, and she runs again with the 4 the other shares left.
    daemon.ctl_json("dest", "edit", "d", "--max-delete", "6")
    for i in range(5):
        (daemon.users_dir / f"alice/backup/d{i % 2}/f{i}.txt").unlink()
    second = sync(daemon)
    assert second["state"] == "succeeded", second
    assert second["stats"]["users"]["alice"]["files_deleted"] == 5
    assert notes(daemon, second, "sync run again with the rest of the delete guard's budget")[0]["budget"] == 4
    assert remote_files(remote, "alice") == {f"f{i}.txt" for i in range(5, FILES)}

    # bob and carol delete 4 each: 8 > 6. The job deletes exactly 6 and
    # refuses 2, whatever the shares.
    for user in ("bob", "carol"):
        for i in range(4):
            (daemon.users_dir / f"{user}/backup/d{i % 2}/f{i}.txt").unlink()
    third = sync(daemon)
    assert third["state"] == "failed"
    assert "delete guard: 2 deletion(s) refused, 6 made" in third["error"], third["error"]
    gone = sum(FILES - len(remote_files(remote, u)) for u in ("bob", "carol"))
    assert gone == 6
    # Both shares moved files into the same versions folder, made before
    # they started: neither lost a race to make it.
    log = (daemon.data_dir / "job-logs" / f"{third['id']}.log").read_text()
    assert "mkdir" not in log, log
    assert len(list((remote / "versions").rglob("f*.txt"))) == 5 + 6  # every deletion kept in versions/
    assert sync(daemon, "--allow-deletes")["state"] == "succeeded"
    assert remote_files(remote, "bob") == remote_files(remote, "carol") == {f"f{i}.txt" for i in range(4, FILES)}


def test_by_default_a_sync_starts_more_runs_across_a_link_than_on_a_lan(make_daemon, sshd: SshServer):
    daemon = make_daemon()
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    for u in range(6):  # files enough for six runs (share_count): more than a LAN's four
        for i in range(70):
            write(daemon.users_dir / f"user{u}/backup/d{i % 3}/f{i}.txt", f"{u} {i}\n")
    with LinkSim(sshd.host, sshd.port, delay_s=0.01) as link:
        for name, port in (("lan", sshd.port), ("far", link.port)):
            shown = daemon.ctl_json("dest", "add", name, "--host", sshd.host, "--port", str(port), "--user", sshd.user,
                                    "--remote-path", str(sshd.remote_dir(name)),
                                    "--host-key-fingerprint", sshd.host_key_fingerprint())
            assert shown["processes"] == 0  # chosen per sync
        assert "link:        4 (LAN) or 16 (link) rclone processes, each 8 transfers" in daemon.ctl("dest", "show",
                                                                                                    "lan").stdout
        chosen = {}
        for name in ("lan", "far"):
            job = sync_dest(daemon, name)
            assert job["state"] == "succeeded", job
            (note,) = notes(daemon, job, "rclone processes chosen for the server's distance")
            chosen[name] = (note["processes"], note["link"])
    assert chosen == {"lan": (4, False), "far": (16, True)}
