"""Operator input that would overstep (issue 11, findings 4 and 8): which key
files a destination may use, a key_file that would block or fill memory,
and host key pins that only the right command may change. Real daemon,
real sshd, real anemonectl."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from testbed.daemon import ANEMONECTL, DaemonProcess
from testbed.sshd import SshServer


def daemon_uid(daemon: DaemonProcess) -> int:
    """The uid the daemon really runs as (not assumed to be root)."""
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective
    raise AssertionError("no Uid line")


def key_dir(daemon: DaemonProcess) -> Path:
    """A directory outside data_dir/certs that the daemon can reach."""
    path = daemon.dir / "keys"
    path.mkdir(mode=0o755, exist_ok=True)
    path.chmod(0o755)
    return path


def make_key(path: Path, uid: int, mode: int = 0o600) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "k", "-f", str(path)], check=True)
    os.chown(path, uid, -1)
    path.chmod(mode)
    return path


@pytest.fixture
def env(daemon: DaemonProcess, sshd: SshServer):
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    return daemon, sshd, sshd.remote_dir("r")


def add(daemon: DaemonProcess, sshd: SshServer, name: str, remote: Path, *extra: str,
        pin: bool = True) -> subprocess.CompletedProcess[str]:
    return daemon.add_destination(name, sshd, remote, *extra, pin=pin, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file owned by another user needs root")
def test_a_key_file_owned_by_another_user_is_refused(env):
    daemon, sshd, remote = env
    uid = daemon_uid(daemon)
    someone = 65534 if uid != 65534 else 65533
    home = daemon.dir / "home-someone" / ".ssh"
    home.mkdir(parents=True)
    for p in (home, home.parent):
        p.chmod(0o755)
    key = make_key(home / "id_ed25519", someone)
    sshd.authorize((home / "id_ed25519.pub").read_text())  # the server would let its owner in
    res = add(daemon, sshd, "d", remote, "--key-file", str(key))
    assert res.returncode == 2 and "key_file" in res.stderr and f"owned by uid {someone}" in res.stderr, res.stderr
    assert daemon.ctl_json("dest", "list") == []
    # dest edit is held to the same rule
    assert add(daemon, sshd, "d", remote).returncode == 0
    res = daemon.ctl("dest", "edit", "d", "--key-file", str(key))
    assert res.returncode == 2 and "key_file" in res.stderr
    assert daemon.ctl_json("dest", "show", "d")["key_file"] == "certs/rclone_key"


def test_a_key_file_of_the_daemons_own_works_until_it_is_opened_to_others(env):
    daemon, sshd, remote = env
    key = make_key(key_dir(daemon) / "own", daemon_uid(daemon))
    sshd.authorize(key.with_suffix(".pub").read_text())
    assert add(daemon, sshd, "d", remote, "--key-file", str(key)).returncode == 0
    assert daemon.ctl("dest", "test", "d").stdout.strip() == "Connection successful"
    # Checked again before every run, not only when it was set.
    key.chmod(0o644)
    res = daemon.ctl("dest", "test", "d")
    assert res.returncode == 1 and "key_file" in res.stderr and "0644" in res.stderr, res.stderr
    res = daemon.ctl("dest", "edit", "d", "--key-file", str(key))
    assert res.returncode == 2 and "key_file" in res.stderr and "chmod 600" in res.stderr


def test_key_files_that_would_block_or_fill_memory_are_refused_and_the_daemon_keeps_answering(env):
    daemon, sshd, remote = env
    keys = key_dir(daemon)
    fifo = keys / "fifo"
    os.mkfifo(fifo, 0o600)
    huge = keys / "huge"
    with huge.open("wb") as f:
        f.truncate(1024 ** 3)  # sparse
    os.chown(huge, daemon_uid(daemon), -1)
    huge.chmod(0o600)
    (keys / "link").symlink_to(huge)
    pending = subprocess.Popen([ANEMONECTL, "--socket", str(daemon.socket), "dest", "add", "f",
                                "--host", sshd.host, "--port", str(sshd.port), "--user", sshd.user,
                                "--remote-path", str(remote), "--trust-host-key", "--key-file", str(fifo)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # the daemon is now handling the add
        answered: list[dict] = []
        asker = threading.Thread(target=lambda: answered.append(daemon.rpc("status")), daemon=True)
        asker.start()
        asker.join(10)
        assert answered and "result" in answered[0], "status got no answer while dest add read a FIFO"
        _, err = pending.communicate(timeout=30)
        assert pending.returncode == 2 and "key_file" in err and "not a regular file" in err, err
    finally:
        if pending.poll() is None:  # old code: release the reader, then reap
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
            pending.communicate(timeout=30)
    for path, why in (("/dev/zero", "not a regular file"), (str(huge), "too large"),
                      (str(keys / "link"), "symbolic link")):
        started = time.monotonic()
        res = add(daemon, sshd, "z", remote, "--key-file", path)
        assert res.returncode == 2 and "key_file" in res.stderr and why in res.stderr, (path, res.stderr)
        assert time.monotonic() - started < 30
    assert daemon.ctl_json("dest", "list") == []
    assert "result" in daemon.rpc("status")


def test_trust_host_key_never_replaces_another_destinations_pin(env):
    daemon, sshd, remote = env
    old = sshd.host_key_fingerprint()
    assert add(daemon, sshd, "first", remote).returncode == 0
    known = (daemon.data_dir / "certs/known_hosts").read_text()
    # Same key, blind trust: nothing changes, nothing to refuse.
    assert add(daemon, sshd, "same", remote, "--trust-host-key", pin=False).returncode == 0
    # The server now shows another key (rebuilt, or someone in the middle).
    sshd.new_host_key()
    sshd.restart()
    new = sshd.host_key_fingerprint()
    assert new != old
    res = add(daemon, sshd, "other", remote, "--trust-host-key", pin=False)
    assert res.returncode == 2 and "trust_host_key" in res.stderr and "first" in res.stderr, res.stderr
    assert new in res.stderr and "dest trust" in res.stderr
    assert [d["name"] for d in daemon.ctl_json("dest", "list")] == ["first", "same"]
    assert {d["host_key_fingerprint"] for d in daemon.ctl_json("dest", "list")} == {old}
    assert (daemon.data_dir / "certs/known_hosts").read_text() == known
    # dest edit --trust-host-key on the other destination is no way round it.
    res = daemon.ctl("dest", "edit", "same", "--trust-host-key")
    assert res.returncode == 2 and "trust_host_key" in res.stderr
    assert daemon.ctl_json("dest", "show", "first")["host_key_fingerprint"] == old
    # The fingerprint checked on the server is: the server's one pin moves.
    assert add(daemon, sshd, "other", remote, "--host-key-fingerprint", new, pin=False).returncode == 0
    assert {d["host_key_fingerprint"] for d in daemon.ctl_json("dest", "list")} == {new}
    assert "host key pin replaced" in daemon.log_text()
    # and so does dest trust on a destination of that server.
    sshd.new_host_key()
    sshd.restart()
    assert daemon.ctl("dest", "trust", "first").returncode == 0
    assert {d["host_key_fingerprint"] for d in daemon.ctl_json("dest", "list")} == {sshd.host_key_fingerprint()}
