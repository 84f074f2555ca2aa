"""The seed's steps 1, 2, 4 and 5 with anemonectl against a real OpenSSH
server: key, destination with a pinned host key, connection test, and every
failure class produced for real."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from testbed.daemon import DaemonProcess
from testbed.sshd import SshServer


@pytest.fixture
def env(daemon: DaemonProcess, sshd: SshServer):
    key = daemon.ctl_json("key", "generate")
    sshd.authorize(key["public_key"])
    remote = sshd.remote_dir("backups")
    return daemon, sshd, remote


def add(daemon: DaemonProcess, sshd: SshServer, name: str, remote: Path | str, *extra: str, trust: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`dest add`, its outcome left for the test to judge."""
    return daemon.add_destination(name, sshd, remote, *extra, pin=trust, stdin=stdin, check=False)


def test_seed_steps_key_add_pin_and_test(env):
    daemon, sshd, remote = env
    shown = daemon.ctl("key", "show")
    assert shown.returncode == 0
    pub_line = (daemon.data_dir / "certs" / "rclone_key.pub").read_text().strip()
    assert shown.stdout.splitlines()[0] == pub_line
    assert (daemon.data_dir / "certs" / "rclone_key").stat().st_mode & 0o777 == 0o600
    assert (daemon.data_dir / "certs").stat().st_mode & 0o777 == 0o700

    # Without a fingerprint or explicit trust nothing is saved, and the
    # operator is shown the fingerprint to check.
    res = add(daemon, sshd, "Backup Server FR2", remote, trust=False)
    assert res.returncode == 2 and sshd.host_key_fingerprint() in res.stderr
    wrong = add(daemon, sshd, "Backup Server FR2", remote, "--host-key-fingerprint", "SHA256:" + "A" * 43, trust=False)
    assert wrong.returncode == 1 and "host key mismatch" in wrong.stderr
    assert daemon.ctl_json("dest", "list") == []

    assert add(daemon, sshd, "Backup Server FR2", remote).returncode == 0
    dest = daemon.ctl_json("dest", "show", "Backup Server FR2")
    assert {k: dest[k] for k in ("name", "host", "port", "user", "auth", "key_file", "remote_path", "enabled",
                                 "host_key_fingerprint")} == {
        "name": "Backup Server FR2", "host": "127.0.0.1", "port": sshd.port, "user": sshd.user, "auth": "key",
        "key_file": "certs/rclone_key", "remote_path": str(remote), "enabled": True,
        "host_key_fingerprint": sshd.host_key_fingerprint()}
    assert dest["schedule"] == {"kind": "off"} and dest["last_sync"] is None and "next_run" in dest
    known = (daemon.data_dir / "certs" / "known_hosts").read_text()
    assert known == f"[127.0.0.1]:{sshd.port} " + " ".join(sshd.host_key.with_suffix(".pub").read_text().split()[:2]) + "\n"

    test = daemon.ctl("dest", "test", "Backup Server FR2")
    assert (test.returncode, test.stdout.strip()) == (0, "Connection successful")
    assert daemon.ctl_json("dest", "show", "Backup Server FR2")["last_test"]["ok"] is True
    assert list(remote.iterdir()) == []  # the probe file was removed

    dup = add(daemon, sshd, "Backup Server FR2", remote)
    assert dup.returncode == 2 and "already exists" in dup.stderr
    assert daemon.ctl("dest", "show", "nope").returncode == 4


def _test(daemon: DaemonProcess, name: str, *extra: str) -> tuple[int, list[str]]:
    res = daemon.ctl("dest", "test", name, *extra)
    return res.returncode, res.stdout.strip().splitlines()


def test_failure_classes_produced_for_real(env, tmp_path):
    daemon, sshd, remote = env
    assert add(daemon, sshd, "d", remote).returncode == 0

    # remote path missing, then created on request
    daemon.ctl_json("dest", "edit", "d", "--remote-path", str(remote / "sub" / "dir"))
    code, lines = _test(daemon, "d")
    assert code == 1 and lines[0].startswith("remote path missing:") and any("--create-path" in l for l in lines[1:])
    assert _test(daemon, "d", "--create-path") == (0, ["Connection successful"])
    assert (remote / "sub" / "dir").is_dir()

    # remote path not writable
    ro = sshd.remote_dir("readonly", writable=False)
    daemon.ctl_json("dest", "edit", "d", "--remote-path", str(ro))
    code, lines = _test(daemon, "d")
    assert code == 1 and lines[0].startswith("remote path not writable:")
    daemon.ctl_json("dest", "edit", "d", "--remote-path", str(remote))

    # key not in authorized_keys
    saved = sshd.authorized_keys.read_text()
    sshd.authorized_keys.write_text("")
    code, lines = _test(daemon, "d")
    assert code == 1 and lines[0].startswith("authentication failed:") and any("authorized_keys" in l for l in lines)
    sshd.authorized_keys.write_text(saved)

    # the wrong key (a valid private key the server does not know)
    other = daemon.data_dir / "certs/other_key"  # the daemon's, where its keys live
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    os.chown(other, daemon.uid, daemon.gid)
    daemon.ctl_json("dest", "edit", "d", "--key-file", str(other))
    code, lines = _test(daemon, "d")
    assert code == 1 and lines[0].startswith("authentication failed:")
    daemon.ctl_json("dest", "edit", "d", "--key-file", "certs/rclone_key")
    assert _test(daemon, "d")[0] == 0

    # host key unknown: the pinned-keys file lost behind the daemon's back
    known = daemon.data_dir / "certs" / "known_hosts"
    pinned = known.read_text()
    known.write_text("")
    code, lines = _test(daemon, "d")
    assert code == 1 and lines[0].startswith("host key unknown:") and any("dest trust" in l for l in lines)
    known.write_text(pinned)

    # host key changed on the server: mismatch until re-pinned
    old_fp = sshd.host_key_fingerprint()
    sshd.stop()
    sshd.new_host_key()
    sshd.start()
    code, lines = _test(daemon, "d")
    assert code == 1 and lines[0].startswith("host key mismatch:")
    bad = daemon.ctl("dest", "trust", "d", "--host-key-fingerprint", old_fp)
    assert bad.returncode == 1 and "host key mismatch" in bad.stderr
    assert daemon.ctl_json("dest", "trust", "d", "--host-key-fingerprint", sshd.host_key_fingerprint())["host_key_fingerprint"] == sshd.host_key_fingerprint()
    assert _test(daemon, "d")[0] == 0

    # server stopped
    sshd.stop()
    code, lines = _test(daemon, "d")
    assert code == 1 and lines[0].startswith("unreachable:") and any("firewall" in l.lower() for l in lines)
    last = daemon.ctl_json("dest", "show", "d")["last_test"]
    assert last["ok"] is False and last["class"] == "unreachable"


def test_silent_server_is_a_timeout_within_the_bound(env):
    daemon, sshd, remote = env
    assert add(daemon, sshd, "d", remote).returncode == 0
    # A listener that accepts and never says a word, on the pinned port.
    sshd.stop()
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind(("127.0.0.1", sshd.port))
    silent.listen(16)
    try:
        started = time.monotonic()
        code, lines = _test(daemon, "d")
        assert code == 1 and lines[0].startswith("timeout:")
        assert time.monotonic() - started < 30
    finally:
        silent.close()


def test_password_destination_add_test_sync_and_the_password_never_shows(env):
    daemon, sshd, remote = env
    if sshd.password is None:
        pytest.skip("password logins need root to create the SFTP account")
    seen_in_cmdlines: list[str] = []
    stop = threading.Event()

    def watch_cmdlines() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        seen_in_cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
                    except OSError:
                        pass
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_cmdlines)
    watcher.start()
    try:
        res = add(daemon, sshd, "pw", remote, "--password-stdin", stdin=sshd.password + "\n")
        assert res.returncode == 0, res.stderr
        dest = daemon.ctl_json("dest", "show", "pw")
        assert dest["auth"] == "password" and dest["key_file"] is None
        assert _test(daemon, "pw") == (0, ["Connection successful"])
        (daemon.users_dir / "alice/backup").mkdir(parents=True)
        (daemon.users_dir / "alice/backup/a.txt").write_text("secret-free content")
        synced = daemon.ctl_json("sync", "pw", "--wait")
        assert synced["state"] == "succeeded" and (remote / "backup/alice/a.txt").exists()
        wrong = daemon.ctl("dest", "edit", "pw", "--password-stdin", stdin="not-the-password\n")
        assert wrong.returncode == 0
        code, lines = _test(daemon, "pw")
        assert code == 1 and lines[0].startswith("authentication failed:")
        # certs/secrets.key replaced (say, restored from another machine): the
        # operator is told what to do, by dest test and by a sync job alike.
        (daemon.data_dir / "certs/secrets.key").write_bytes(Fernet.generate_key())
        res = daemon.ctl("dest", "test", "pw")
        assert res.returncode == 1 and "cannot be decrypted" in res.stderr, res.stderr
        failed = daemon.ctl_json("sync", "pw", "--wait", expect=1)
        assert failed["state"] == "failed" and "cannot be decrypted" in failed["error"], failed
    finally:
        stop.set()
        watcher.join()
    rclone_seen = [c for c in seen_in_cmdlines if "rclone" in c]
    assert rclone_seen, "the watcher never saw rclone run"
    assert not any(sshd.password in c for c in seen_in_cmdlines)
    assert sshd.password not in daemon.log_text()
    for stored in [daemon.data_dir / "state.db", *daemon.data_dir.glob("state.db-*"), *(daemon.data_dir / "job-logs").iterdir()]:
        assert sshd.password.encode() not in stored.read_bytes(), stored
    assert sshd.password not in json.dumps(daemon.ctl_json("dest", "list"))
    assert sshd.password not in json.dumps(daemon.ctl_json("job", "list"))


HOSTILE = ["x,key_file=/etc/shadow", "a:b", 'q"uote', "e=q", "new\nline", "sp ace,", "'single'"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_are_refused_or_inert_in_every_field(env, value):
    daemon, sshd, remote = env
    base = ["--host", sshd.host, "--port", str(sshd.port), "--user", sshd.user, "--remote-path", str(remote),
            "--trust-host-key"]

    def with_field(flag: str) -> list[str]:
        args = list(base)
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
        return args

    for flag, field in (("--host", "host"), ("--user", "user"), ("--key-file", "key_file")):
        res = daemon.ctl("dest", "add", "d", *with_field(flag))
        assert res.returncode == 2 and field in res.stderr, (flag, res.stderr)
    if value.strip() != value or "\n" in value or any(c in value for c in ",:\"='"):
        res = daemon.ctl("dest", "add", value, *base)
        assert res.returncode == 2 and "name" in res.stderr
    # In remote_path the value is a legal (if odd) directory name: it must
    # stay exactly that, a directory on the server, and nothing more.
    path = f"{remote}/{value}"
    res = daemon.ctl("dest", "add", "d", *with_field("--remote-path")[:-1], "--remote-path", path, "--trust-host-key")
    if "\n" in value:
        assert res.returncode == 2 and "remote_path" in res.stderr
        return
    assert res.returncode == 0, res.stderr
    assert _test(daemon, "d", "--create-path") == (0, ["Connection successful"])
    assert Path(path).is_dir()
    assert [p.name for p in remote.iterdir()] == [value.split("/")[0]]
