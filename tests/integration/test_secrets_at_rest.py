"""No secret, plain or obscured, in anything the daemon writes.

A password destination goes through every operation that runs rclone
(add, test, sync, versions, restore --list, restore, verify, usage); then
every file under data_dir, the daemon's log and every RPC answer is
searched for the password, in plain and in rclone's obscured form. The
obscured form is randomised per run, so testbed.secrets_scan reveals every
base64 token it finds, as `rclone reveal` would; the values rclone really
received (read from /proc/PID/environ while the operations ran) are checked
to reveal to the password, so the search looks for the right thing. Every
process's argv is searched too.

With rclone 1.75 no copy was found (it redacts option values in its own
debug lines); rclone.run() also redacts every secret of the run's
environment from everything rclone says, for the rclone versions (>= 1.63)
and messages that do not.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from testbed.daemon import DaemonProcess
from testbed.secrets_scan import files_under, leaks, obscured_in, reveal
from testbed.sshd import SshServer


def _watch_processes(daemon_pid: int, seen: set[str], cmdlines: set[bytes], stop: threading.Event) -> None:
    """Collect RCLONE_CONFIG_DEST_PASS of every rclone process the daemon
    started (not another test's on the same machine), and every command line."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                cmdlines.add(Path(f"/proc/{pid}/cmdline").read_bytes())
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent != daemon_pid:
                continue
            for entry in environ.split(b"\0"):
                if entry.startswith(b"RCLONE_CONFIG_DEST_PASS="):
                    seen.add(entry.split(b"=", 1)[1].decode())
        time.sleep(0.005)


def test_no_password_plain_or_obscured_in_any_file_the_daemon_writes(daemon: DaemonProcess, sshd: SshServer,
                                                                     tmp_path: Path):
    if sshd.password is None:
        pytest.skip("password logins need root to create the SFTP account")
    password = sshd.password
    wrong = "wrong-" + password
    remote = sshd.remote_dir("pw")
    for user in ("alice", "bob"):
        p = daemon.users_dir / user / "backup" / "notes.txt"
        p.parent.mkdir(parents=True)
        p.write_text(f"{user}'s notes\n")
    seen: set[str] = set()
    cmdlines: set[bytes] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_processes, args=(daemon.proc.pid, seen, cmdlines, stop))
    watcher.start()
    answers = []
    try:
        daemon.add_destination("pw", sshd, remote, "--password-stdin", stdin=password + "\n")
        assert daemon.ctl("dest", "test", "pw").returncode == 0
        assert daemon.ctl_json("sync", "pw", "--wait")["state"] == "succeeded"
        (daemon.users_dir / "alice/backup/notes.txt").write_text("changed, so the old one goes to versions/\n")
        answers.append(daemon.ctl_json("sync", "pw", "--wait"))
        assert answers[-1]["state"] == "succeeded"
        answers.append(daemon.ctl_json("dest", "versions", "pw"))
        answers.append(daemon.ctl_json("restore", "pw", "--user", "alice", "--list"))
        answers.append(daemon.ctl_json("restore", "pw", "--user", "alice", "--to", str(daemon.data_dir / "restore/x"),
                                       "--wait"))
        assert answers[-1]["state"] == "succeeded"
        answers.append(daemon.ctl_json("verify", "pw", "--wait"))
        assert answers[-1]["state"] == "succeeded"
        job = daemon.ctl_json("dest", "usage", "pw")
        answers.append(daemon.ctl_json("job", "wait", str(job["id"])))
        assert answers[-1]["state"] == "succeeded"
        # Failures log the most: a wrong password, then the server gone.
        assert daemon.ctl("dest", "edit", "pw", "--password-stdin", stdin=wrong + "\n").returncode == 0
        assert daemon.ctl("dest", "test", "pw").returncode == 1
        answers.append(daemon.ctl_json("sync", "pw", "--full", "--wait", expect=1))
        assert daemon.ctl("dest", "edit", "pw", "--password-stdin", stdin=password + "\n").returncode == 0
        sshd.stop()
        answers.append(daemon.ctl_json("sync", "pw", "--full", "--wait", expect=1))
        assert daemon.ctl("restore", "pw", "--user", "alice", "--list").returncode == 1
        answers += [daemon.ctl_json("dest", "list"), daemon.ctl_json("job", "list"), daemon.ctl_json("status")]
    finally:
        stop.set()
        watcher.join()
    # The search is real: every obscured value rclone got reveals to the password.
    assert seen, "never saw an rclone process with the password in its environment"
    secrets = (password, wrong)
    assert {reveal(value) for value in seen} == {s.encode() for s in secrets}
    daemon.stop()  # the database's -wal and -shm included, as they are at rest
    for secret in secrets:
        found = leaks([*files_under(daemon.dir)], secret)  # data_dir, the restored files, the log
        assert found == {}, found
        assert secret not in json.dumps(answers)
    assert not any(v in json.dumps(answers) for v in seen)
    # nor in any process's argv
    assert any(b"rclone" in c for c in cmdlines)
    for cmdline in cmdlines:
        assert not any(s.encode() in cmdline for s in (*secrets, *seen)), cmdline
        assert not any(obscured_in(cmdline, s) for s in secrets), cmdline
