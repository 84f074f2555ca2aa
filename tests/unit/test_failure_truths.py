"""Failure classes, hints and key formats that the real servers need
(issue 12): pure parts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from anemoned import conntest, rclone, space
from anemoned.destinations import Destination
from anemoned.keys import rfc4716

RCLONE = str(Path(sys.executable).parent / "rclone")


def dest(**kw) -> Destination:
    base = dict(name="d", host="h.example", port=22, user="backup", auth="key", key_file=None, remote_path="/",
                enabled=True, host_key=None)
    base.update(kw)
    return Destination(**base)


@pytest.mark.parametrize("message, cls", [
    # sshd accepted the key, then dropped the session (a ChrootDirectory not owned by root)
    ("NewFs: couldn't initialise SFTP: ssh: unexpected packet in response to channel open: <nil>",
     rclone.SESSION_REFUSED),
    ("ssh: subsystem request failed", rclone.SESSION_REFUSED),
    # a failure nobody recognises is not guessed into "unreachable"
    ("NewFs: couldn't connect SSH: ssh: something new happened", None),
    ('sftp: "Failure" (SSH_FX_FAILURE)', None),
])
def test_classify_tells_what_it_knows_and_nothing_else(message, cls):
    assert rclone.classify([message]) == cls


def test_global_args_bound_low_level_retries():
    args = rclone.global_args()
    assert args[args.index("--low-level-retries") + 1] == "3"


def test_hints_in_a_chroot_never_chown_the_root_and_say_paths_are_inside():
    confined = conntest.Confinement(frozenset({"backups"}))
    assert confined.confined and not conntest.Confinement(frozenset({"etc", "usr", "srv"})).confined
    for path in ("/", "/backups/x"):
        hints = " ".join(conntest.hints(rclone.PATH_NOT_WRITABLE, dest(remote_path=path), confined))
        assert "chown backup /" not in hints.replace("chown backup /backups", "") and "inside" in hints
    assert "chown backup /" not in " ".join(conntest.hints(rclone.PATH_NOT_WRITABLE, dest(remote_path="/")))
    # the path as the host names it: the part that exists inside the chroot is suggested
    missing = " ".join(conntest.hints(rclone.PATH_MISSING, dest(remote_path="/srv/sftp/backup/backups/x"), confined))
    assert "--remote-path /backups/x" in missing and "mkdir -p /srv" not in missing


def test_proftpd_gets_the_rfc4716_hint_others_the_authorized_keys_one():
    proftpd = " ".join(conntest.hints(rclone.AUTH_FAILED, dest(server_version="SSH-2.0-mod_sftp/1.1.1")))
    assert "--format rfc4716" in proftpd and "700 for ~/.ssh" not in proftpd
    openssh = " ".join(conntest.hints(rclone.AUTH_FAILED, dest(server_version="SSH-2.0-OpenSSH_9.2p1")))
    assert "rfc4716" not in openssh and ".ssh/authorized_keys" in openssh


def test_unknown_failures_are_said_as_such():
    assert "does not recognise" in conntest.hints(rclone.UNKNOWN, dest())[0]


def test_rfc4716_is_what_ssh_keygen_reads_back(tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "anemone-rclone", "-f", str(key)], check=True)
    line = key.with_suffix(".pub").read_text().strip()
    block = rfc4716(line)
    assert block.startswith("---- BEGIN SSH2 PUBLIC KEY ----\n") and all(len(x) <= 72 for x in block.splitlines())
    (tmp_path / "k.rfc").write_text(block)
    back = subprocess.run(["ssh-keygen", "-i", "-f", str(tmp_path / "k.rfc")], capture_output=True, text=True,
                          check=True).stdout
    assert back.split()[:2] == line.split()[:2]


def test_reveal_undoes_rclones_obscure():
    secret = "pässword, with = and \" quotes"
    obscured = subprocess.run([RCLONE, "obscure", "-"], input=secret, capture_output=True, text=True,
                              check=True).stdout.strip()
    assert space.reveal(obscured) == secret


def test_statvfs_connection_is_rclones_own_and_never_unpinned():
    env = rclone.option_env(rclone.DEST_REMOTE, {"host": "h", "port": "2222", "user": "u", "key_file": "/k",
                                                 "known_hosts_file": "/kh", "host_key_algorithms": "ssh-ed25519"})
    opts = space.connect_options(env)
    assert opts["known_hosts"] == "/kh" and opts["server_host_key_algs"] == ["ssh-ed25519"]
    assert opts["client_keys"] == ["/k"] and opts["agent_path"] is None and opts["config"] is None
    with pytest.raises(ValueError):
        space.connect_options({k: v for k, v in env.items() if "KNOWN_HOSTS" not in k})
