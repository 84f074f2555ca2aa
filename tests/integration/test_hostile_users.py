"""Local users attack each other and the daemon through their own trees.

The daemon runs as the unit runs it (its own account, the unit's
capabilities, via setpriv); every tree belongs to a real local account,
and the attacks run as that account."""
from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anemoned import caps
from anemoned.link_options import DEFAULT_TRANSFERS
from testbed import accounts
from testbed.daemon import DaemonProcess
from testbed.files import sparse, tree, write
from testbed.sshd import SshServer

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root to create accounts and run the daemon as the unit does")
SECRET = b"root-only secret: this must never reach a backup\n"


@pytest.fixture
def setup(make_daemon, sshd: SshServer):
    daemon = make_daemon()
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    remote = sshd.remote_dir("dest")
    daemon.add_destination("d", sshd, remote, "--stall-timeout", "10")
    return daemon, remote


def sync(daemon: DaemonProcess, *extra: str, expect: int | None = None) -> dict:
    res = daemon.ctl("sync", "d", "--wait", "--json", *extra, timeout_s=300)
    job = __import__("json").loads(res.stdout)
    if expect is not None:
        assert res.returncode == expect, res.stderr + res.stdout
    return job


def as_user(name: str, code: str, *args: str) -> subprocess.Popen:
    """A Python program running as the account that owns users_dir/name."""
    account = accounts.for_tree(name)
    return subprocess.Popen([*[a for a in accounts.setpriv_prefix(account.pw_name) if not a.startswith(("--inh", "--amb", "--bou"))],
                             "/usr/bin/python3", "-c", code, *args])


SWAPPER = r"""
import os, sys, time
target, secret, decoy = sys.argv[1], sys.argv[2], sys.argv[3]
st = os.stat(secret) if os.access(secret, os.F_OK) else None
end = time.time() + float(sys.argv[4])
i = 0
while time.time() < end:
    i += 1
    link, plain = f"{target}.l{i}", f"{target}.f{i}"
    os.symlink(secret, link)
    os.rename(link, target)
    with open(plain, "wb") as f:
        f.write(open(decoy, "rb").read())
    os.rename(plain, target)
"""


def test_a_symlink_swapped_in_after_listing_never_reads_what_the_user_cannot(setup, tmp_path):
    daemon, remote = setup
    secret = tmp_path / "secret"  # root's, 0600, outside every tree
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    decoy_src = daemon.users_dir / "mallory/decoy-source"
    write(daemon.users_dir / "mallory/backup/plain.txt", "ordinary")
    write(decoy_src, b"D" * len(SECRET))
    daemon.own_trees()
    os.utime(decoy_src, (secret.stat().st_mtime, secret.stat().st_mtime))
    seen = set()
    for round_ in range(6):
        target = daemon.users_dir / f"mallory/backup/swap{round_}"
        write(target, b"D" * len(SECRET))
        daemon.own_trees()
        swapper = as_user("mallory", SWAPPER, str(target), str(secret), str(decoy_src), "30")
        try:
            time.sleep(0.2)
            job = sync(daemon, "--full")
        finally:
            swapper.kill()
            swapper.wait()
        seen.add(job["stats"]["users"]["mallory"]["status"])
        for f in (remote / "backup/mallory").rglob("*"):
            if f.is_file():
                assert f.read_bytes() != SECRET, f"{f} holds the root-only file"
    # "stalled" too: on a busy machine mallory's own swapping loop can starve her reader past the
    # 10 s stall timeout; that costs her alone.
    assert seen <= {"succeeded", "failed", "stalled"}
    assert (remote / "backup/mallory/plain.txt").read_text() == "ordinary"


def test_a_restore_does_not_follow_a_symlink_planted_in_its_target(setup):
    daemon, remote = setup
    write(daemon.users_dir / "alice/backup/certs/known_hosts", "attacker's host keys\n")
    write(daemon.users_dir / "alice/backup/notes.txt", "my notes")
    assert sync(daemon)["state"] == "succeeded"
    known_hosts = daemon.data_dir / "certs/known_hosts"
    before = known_hosts.read_bytes()
    certs_link = daemon.users_dir / "alice/backup/certs"
    for f in certs_link.iterdir():
        f.unlink()
    certs_link.rmdir()
    os.symlink(daemon.data_dir / "certs", certs_link)  # alice plants a link to the daemon's secrets
    (daemon.users_dir / "alice/backup/notes.txt").unlink()
    res = daemon.ctl("restore", "d", "--user", "alice", "--to", str(daemon.users_dir / "alice/backup"), "--overwrite",
                     "--wait", "--json", timeout_s=120)
    job = __import__("json").loads(res.stdout)
    assert known_hosts.read_bytes() == before
    assert job["stats"]["written_as"] == accounts.for_tree("alice").pw_name
    # What alice may write came back, as hers.
    notes = daemon.users_dir / "alice/backup/notes.txt"
    assert notes.read_text() == "my notes" and notes.stat().st_uid == accounts.for_tree("alice").pw_uid


def test_a_restore_refuses_to_hand_one_users_files_to_another(setup):
    daemon, remote = setup
    write(daemon.users_dir / "alice/backup/a.txt", "alice's")
    write(daemon.users_dir / "bob/backup/b.txt", "bob's")
    assert sync(daemon)["state"] == "succeeded"
    for place in (daemon.users_dir / "bob/backup/loot", daemon.data_dir / "certs", Path("/tmp/loot")):
        res = daemon.ctl("restore", "d", "--user", "alice", "--to", str(place), "--overwrite")
        assert res.returncode == 2, (place, res.stderr)
        assert "to:" in res.stderr
    assert not (daemon.users_dir / "bob/backup/loot").exists() and not Path("/tmp/loot").exists()
    assert not (daemon.data_dir / "certs/a.txt").exists()
    # A place nobody owns: a fresh 0700 directory of the daemon's.
    target = daemon.data_dir / "restore/alice"
    job = daemon.ctl_json("restore", "d", "--user", "alice", "--to", str(target), "--wait")
    assert job["state"] == "succeeded" and (target / "a.txt").read_text() == "alice's"
    assert target.stat().st_uid == daemon.uid and target.stat().st_mode & 0o777 == 0o700


def test_a_restore_into_the_users_tree_keeps_their_files_private(setup):
    daemon, remote = setup
    write(daemon.users_dir / "alice/backup/private/secret.txt", "alice only")
    daemon.own_trees()
    (daemon.users_dir / "alice/backup/private/secret.txt").chmod(0o600)
    (daemon.users_dir / "alice/backup/private").chmod(0o700)
    assert sync(daemon)["state"] == "succeeded"
    target = daemon.users_dir / "alice/backup/back"
    job = daemon.ctl_json("restore", "d", "--user", "alice", "--to", str(target), "--wait")
    assert job["state"] == "succeeded" and (target / "private/secret.txt").read_text() == "alice only"
    for p in (target, target / "private", target / "private/secret.txt"):
        assert p.stat().st_mode & 0o077 == 0, (p, oct(p.stat().st_mode))  # SFTP carries no modes: private


def test_one_users_unreadable_directory_or_odd_file_name_fails_only_that_user(setup):
    daemon, remote = setup
    write(daemon.users_dir / "mallory/backup/ok.txt", "ok")
    write(daemon.users_dir / "mallory/backup/x no space left y.img", "a name that reads like a full disk")
    write(daemon.users_dir / "bob/backup/keep.txt", "keep")
    write(daemon.users_dir / "bob/backup/old.txt", "old")
    daemon.own_trees()
    (daemon.users_dir / "mallory").rename(daemon.users_dir / ".mallory-later")
    assert sync(daemon)["state"] == "succeeded"
    (daemon.users_dir / ".mallory-later").rename(daemon.users_dir / "mallory")
    locked = daemon.users_dir / "mallory/backup/locked"
    locked.mkdir()
    write(locked / "f", "f")
    os.chown(locked, accounts.for_tree("mallory").pw_uid, 0)
    locked.chmod(0)
    (daemon.users_dir / "bob/backup/old.txt").unlink()
    job = sync(daemon, expect=1)
    users = job["stats"]["users"]
    assert users["mallory"]["status"] == "failed" and users["mallory"]["error"].startswith("locked"), users["mallory"]
    assert users["bob"]["status"] == "succeeded", users["bob"]
    assert not (remote / "backup/bob/old.txt").exists()
    assert not job["error"].startswith(("remote", "session", "timeout")), job["error"]


def test_socket_group_members_run_backups_but_do_not_choose_servers_or_keys(make_daemon, sshd):
    group, member = accounts.ensure_group("anemt-ops"), accounts.ensure("anemt-operator")
    for account in (member.pw_name, accounts.DAEMON_ACCOUNT):  # the daemon gives its socket to the group
        accounts.add_to_group(account, group.gr_name)
    daemon = make_daemon(socket_group=group.gr_name)
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    daemon.add_destination("d", sshd, sshd.remote_dir("ops"))
    write(daemon.users_dir / "alice/backup/a.txt", "a")
    daemon.own_trees()

    def as_operator(*args: str) -> subprocess.CompletedProcess[str]:
        code = ("import sys; from anemonectl.cli import main, build_parser; build_parser(); import os; "
                f"os.setgroups([{group.gr_gid}]); os.setgid({member.pw_gid}); os.setuid({member.pw_uid}); "
                f"sys.exit(main(['--socket', {str(daemon.socket)!r}, *{list(args)!r}]))")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert as_operator("status").returncode == 0
    assert as_operator("sync", "d", "--wait").returncode == 0
    for args in (["dest", "add", "evil", "--host", "127.0.0.1", "--user", "x", "--remote-path", "/x", "--trust-host-key"],
                 ["dest", "edit", "d", "--port", "2222"], ["dest", "remove", "d"], ["key", "generate", "--force"],
                 ["dest", "trust", "d"]):
        res = as_operator(*args)
        assert res.returncode == 3 and "root or the daemon's user" in res.stderr, (args, res.stderr)
    assert daemon.ctl_json("dest", "show", "d")["port"] == sshd.port


def test_a_password_is_never_sent_to_another_server_by_an_edit(setup, sshd):
    daemon, _ = setup
    if sshd.password is None:
        pytest.skip("password logins need root to create the SFTP account")
    daemon.add_destination("pw", sshd, sshd.remote_dir("pw"), "--password-stdin", stdin=sshd.password + "\n")
    res = daemon.ctl("dest", "edit", "pw", "--port", "1", "--trust-host-key")
    assert res.returncode == 2 and "password" in res.stderr, res.stderr
    assert daemon.ctl_json("dest", "show", "pw")["port"] == sshd.port


def test_one_users_fifo_stalls_only_that_user_and_the_others_deletions_are_mirrored(setup):
    daemon, remote = setup
    # Twice as many files as rclone sends at once: those not yet opened
    # when they become FIFOs are what stalls.
    n = 2 * DEFAULT_TRANSFERS
    for i in range(n):
        sparse(daemon.users_dir / f"mallory/backup/big{i}.img", 2400 * 1024 * 1024 // n)
    write(daemon.users_dir / "bob/backup/keep.txt", "keep")
    write(daemon.users_dir / "bob/backup/old.txt", "old")
    daemon.own_trees()
    # First bob alone, so that he has something to delete later.
    (daemon.users_dir / "mallory").rename(daemon.users_dir / ".mallory-later")
    assert sync(daemon)["state"] == "succeeded"
    (daemon.users_dir / ".mallory-later").rename(daemon.users_dir / "mallory")
    (daemon.users_dir / "bob/backup/old.txt").unlink()
    daemon.own_trees()
    job = daemon.ctl_json("sync", "d")
    daemon.wait_for_progress(job["id"])  # rclone has listed mallory's files and is sending some
    replacer = as_user("mallory", r"""
import os, sys
for i in range(int(sys.argv[2])):
    p = f"{sys.argv[1]}/big{i}.img"
    os.mkfifo(p + ".fifo")
    os.rename(p + ".fifo", p)
""", str(daemon.users_dir / "mallory/backup"), str(n))
    assert replacer.wait(10) == 0
    done = daemon.ctl_json("job", "wait", str(job["id"]), expect=1, timeout_s=240)  # within the stall timeout
    assert done["state"] == "failed", done
    users = done["stats"]["users"]
    assert users["mallory"]["status"] == "stalled", users
    assert users["bob"]["status"] == "succeeded"
    assert not (remote / "backup/bob/old.txt").exists() and (remote / "backup/bob/keep.txt").exists()
    assert "mallory stalled" in done["error"]


def test_a_path_too_long_for_the_server_fails_that_user_only(setup, sshd):
    daemon, _ = setup
    # The server's copy lives 800 characters deeper than the local tree, so
    # a path that is legal here (under 4096 bytes) is too long there.
    remote = sshd.remote_dir("/".join(c * 200 for c in "LMNO"))
    daemon.add_destination("long", sshd, remote)
    deep = "/".join(f"{i:02d}" + "d" * 238 for i in range(14))
    write(daemon.users_dir / "alice/backup" / deep / "file.txt", "legal here, too long there")
    write(daemon.users_dir / "alice/backup/fine.txt", "fine")
    write(daemon.users_dir / "bob/backup/keep.txt", "keep")
    write(daemon.users_dir / "bob/backup/old.txt", "old")
    daemon.own_trees()
    (daemon.users_dir / "alice").rename(daemon.users_dir / ".alice-later")
    assert daemon.ctl_json("sync", "long", "--wait")["state"] == "succeeded"
    (daemon.users_dir / ".alice-later").rename(daemon.users_dir / "alice")
    (daemon.users_dir / "bob/backup/old.txt").unlink()
    job = daemon.ctl_json("sync", "long", "--wait", expect=1)
    users = job["stats"]["users"]
    assert users["alice"]["status"] == "failed" and users["alice"]["error"].startswith(deep[:40]), users["alice"]
    assert users["bob"]["status"] == "succeeded"
    assert not (remote / "backup/bob/old.txt").exists()  # bob's deletion went through
    assert job["error"].startswith("1 of 2 users not backed up: alice failed")
    # The failed user is synced again next time, not treated as unchanged.
    again = daemon.ctl_json("sync", "long", "--wait", expect=1)
    assert again["stats"]["users"]["alice"]["status"] == "failed"
    assert again["stats"]["users"]["bob"]["status"] == "unchanged"


def test_a_file_its_owner_cannot_read_is_reported_for_that_user_only(setup):
    daemon, remote = setup
    write(daemon.users_dir / "alice/backup/open.txt", "open")
    write(daemon.users_dir / "alice/backup/locked.txt", "locked")
    write(daemon.users_dir / "bob/backup/b.txt", "b")
    daemon.own_trees()
    (daemon.users_dir / "alice/backup/locked.txt").chmod(0)
    job = sync(daemon, expect=1)
    users = job["stats"]["users"]
    assert users["alice"]["status"] == "failed" and "locked.txt" in users["alice"]["error"]
    assert users["bob"]["status"] == "succeeded" and (remote / "backup/bob/b.txt").read_text() == "b"


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_readers_run_as_the_tree_owner_without_any_capability(setup):
    daemon, remote = setup
    sparse(daemon.users_dir / "alice/backup/big.img", 2 * 1024 ** 3)
    job = daemon.ctl_json("sync", "d")
    daemon.wait_for_progress(job["id"])
    alice = accounts.for_tree("alice")
    # The daemon, which parses requests, holds no capability; only its spawner
    # (its one child running the daemon's own program) can change uid and kill.
    d = caps.sets(daemon.proc.pid)
    assert all(v == 0 for v in d.values()), d
    spawners = [p for p in _children(daemon.proc.pid) if Path(f"/proc/{p}/cmdline").read_bytes().startswith(
        Path(f"/proc/{daemon.proc.pid}/cmdline").read_bytes())]
    assert len(spawners) == 1, spawners
    s = caps.sets(spawners[0])
    assert s["CapPrm"] == s["CapEff"] == sum(1 << c for c in caps.KEPT)
    assert s["CapInh"] == s["CapAmb"] == s["CapBnd"] == 0
    readers = [p for p in _children(spawners[0]) if b"sftp-server" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert readers
    for pid in readers:
        status = Path(f"/proc/{pid}/status").read_text()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M)[1].split()
        groups = re.search(r"^Groups:\s*(.*)$", status, re.M)[1].split()
        assert set(uids) == {str(alice.pw_uid)}
        assert set(map(int, groups)) == set(os.getgrouplist(alice.pw_name, alice.pw_gid))
        assert {k: v for k, v in caps.sets(pid).items()} == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    rclones = [p for p in _children(daemon.proc.pid) if b"rclone" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert rclones
    for pid in rclones:
        assert all(v == 0 for v in caps.sets(pid).values()), caps.sets(pid)
    daemon.ctl("job", "cancel", str(job["id"]))


def test_trees_that_are_not_a_users_own_are_skipped(setup):
    daemon, remote = setup
    write(daemon.users_dir / "alice/backup/a.txt", "alice")
    daemon.own_trees()
    write(daemon.users_dir / "rooty/backup/r.txt", "root's")  # backup/ stays root's (own_trees leaves
    alice = accounts.for_tree("alice")                         # a user directory that is not root's alone)
    os.chown(daemon.users_dir / "rooty", alice.pw_uid, alice.pw_gid)
    impostor = pwd.getpwnam(accounts.DAEMON_ACCOUNT)  # an account exists with this name and another uid
    fake = daemon.users_dir / accounts.DAEMON_ACCOUNT
    write(fake / "backup/x.txt", "x")
    accounts.chown_tree(fake, alice.pw_uid, alice.pw_gid)
    job = daemon.ctl_json("sync", "d", "--wait")
    users = job["stats"]["users"]
    assert users["alice"]["status"] == "succeeded"
    assert "root" in users["rooty"]["warning"] and users["rooty"]["status"] == "skipped"
    assert users[accounts.DAEMON_ACCOUNT]["status"] == "skipped"
    assert str(impostor.pw_uid) in users[accounts.DAEMON_ACCOUNT]["warning"]
    assert not (remote / "backup/rooty").exists() and not (remote / f"backup/{accounts.DAEMON_ACCOUNT}").exists()


def test_a_file_system_mounted_inside_a_tree_is_not_crossed(setup):
    daemon, remote = setup
    write(daemon.users_dir / "alice/backup/here.txt", "here")
    mnt = daemon.users_dir / "alice/backup/mnt [x]"
    mnt.mkdir()
    daemon.own_trees()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        write(mnt / "elsewhere.txt", "another file system")
        os.chown(mnt / "elsewhere.txt", accounts.for_tree("alice").pw_uid, 0)
        job = daemon.ctl_json("sync", "d", "--wait")
        assert job["stats"]["users"]["alice"]["status"] == "succeeded"
        assert (remote / "backup/alice/here.txt").read_text() == "here"
        assert not (remote / "backup/alice/mnt [x]/elsewhere.txt").exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_user_who_stops_their_own_processes_delays_nobody_else_beyond_the_stall_timeout(setup):
    daemon, remote = setup
    write(daemon.users_dir / "mallory/backup/m.txt", "m")
    write(daemon.users_dir / "bob/backup/b.txt", "b")
    daemon.own_trees()
    # Everything mallory's find, sftp-server or md5sum will be, stopped as it starts.
    stopper = as_user("mallory", "import os, signal\nwhile True:\n    try: os.kill(-1, signal.SIGSTOP)\n"
                                 "    except OSError: pass\n")
    try:
        started = time.monotonic()
        job = sync(daemon, expect=1)
        verify = daemon.ctl_json("verify", "d", "--wait", expect=1, timeout_s=300)
        took = time.monotonic() - started
    finally:
        stopper.kill()
        stopper.wait()
    users = job["stats"]["users"]
    assert users["bob"]["status"] == "succeeded" and (remote / "backup/bob/b.txt").read_text() == "b"
    # Whichever of mallory's processes the stopper catches first (the scan's find, or the
    # sftp-server that reads for rclone) the outcome is the same: mallory stalled, bob did not wait.
    assert users["mallory"]["status"] == "stalled", users["mallory"]
    assert any(why in users["mallory"]["error"] for why in ("no answer", "no progress")), users["mallory"]
    assert "mallory stalled" in job["error"]
    assert verify["stats"]["users"]["bob"]["status"] == "succeeded"
    assert verify["stats"]["users"]["mallory"]["status"] == "stalled"
    assert took < 120, took  # two jobs, each held up at most about the 10 s stall timeout


def test_no_user_process_outlives_a_daemon_killed_mid_sync(setup):
    """The daemon SIGKILLed (a crash: no clean-up) while a user's reader
    runs: the spawner dies with it (parent-death signal), and the reader
    with the spawner, even one its user has stopped."""
    daemon, _ = setup
    sparse(daemon.users_dir / "alice/backup/big.img", 2 * 1024 ** 3)
    job = daemon.ctl_json("sync", "d")
    daemon.wait_for_progress(job["id"])
    pid = daemon.proc.pid
    spawner = next(p for p in _children(pid) if Path(f"/proc/{p}/cmdline").read_bytes().startswith(
        Path(f"/proc/{pid}/cmdline").read_bytes()))
    readers = [p for p in _children(spawner) if b"sftp-server" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert readers
    as_user("alice", "import os, signal, sys\nfor p in sys.argv[1:]: os.kill(int(p), signal.SIGSTOP)",
            *map(str, readers)).wait()
    daemon.kill()
    deadline = time.monotonic() + 10
    left = [spawner, *readers]
    while left and time.monotonic() < deadline:
        left = [p for p in left if Path(f"/proc/{p}").exists() and "zombie" not in
                Path(f"/proc/{p}/status").read_text().split("State:")[1].splitlines()[0]]
        time.sleep(0.1)
    assert not left, left
