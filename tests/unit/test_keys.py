import os
import stat
import subprocess
import time
from pathlib import Path

from anemoned import keys


def test_generate_writes_an_openssh_ed25519_pair_with_tight_modes(tmp_path):
    key = keys.generate_key(tmp_path, force=False)
    private = tmp_path / "rclone_key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert key.line.startswith("ssh-ed25519 ") and key.line.endswith(" anemone-rclone")
    # ssh-keygen agrees on the fingerprint
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "rclone_key.pub")],
                         capture_output=True, text=True, check=True).stdout
    assert out.split()[1] == key.fingerprint
    assert keys.check_private_key(private, tmp_path) is None


def test_force_keeps_the_old_pair(tmp_path):
    first = keys.generate_key(tmp_path, force=False)
    try:
        keys.generate_key(tmp_path, force=False)
        raise AssertionError("a second key must be refused without force")
    except FileExistsError:
        pass
    second = keys.generate_key(tmp_path, force=True)
    assert second.fingerprint != first.fingerprint
    assert (tmp_path / "rclone_key.old.pub").read_text().strip() == first.line
    assert keys.show_key(tmp_path) == second


def test_check_private_key_explains_what_is_wrong(tmp_path):
    (tmp_path / "pub").write_text("ssh-ed25519 AAAA x\n")
    (tmp_path / "pub").chmod(0o600)
    assert "not a private key" in keys.check_private_key(tmp_path / "pub", tmp_path)
    assert "does not exist" in keys.check_private_key(tmp_path / "absent", tmp_path)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(tmp_path / "locked")], check=True)
    assert "passphrase" in keys.check_private_key(tmp_path / "locked", tmp_path)


def test_secrets_round_trip_and_never_store_plain_text(tmp_path):
    s = keys.Secrets(tmp_path)
    token = s.encrypt("hunter2")
    assert b"hunter2" not in token
    assert s.decrypt(token) == "hunter2"
    assert stat.S_IMODE((tmp_path / "secrets.key").stat().st_mode) == 0o600


# -- which key files the daemon may use (finding 4 of issue 11) -------------------

def _key(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_a_key_under_certs_or_owned_by_the_daemon_with_0600_is_usable(tmp_path):
    certs, elsewhere = tmp_path / "certs", tmp_path / "keys"
    certs.mkdir()
    elsewhere.mkdir()
    assert keys.check_private_key(_key(certs / "k"), certs) is None
    assert keys.check_private_key(_key(elsewhere / "k"), certs) is None  # ours, 0600 (ssh-keygen's mode)


def test_a_key_owned_by_someone_else_is_refused(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    key = _key(tmp_path / "id_ed25519")
    # As if the daemon ran as another uid than the file's owner: a user's
    # own ~/.ssh/id_ed25519 must never log the daemon in as that user.
    problem = keys.check_private_key(key, certs, uid=os.geteuid() + 1)
    assert problem and "owned by uid" in problem and "0600" in problem
    # Under certs/ (the daemon's own 0700 directory) ownership is not asked.
    os.replace(key, certs / "k")
    assert keys.check_private_key(certs / "k", certs, uid=os.geteuid() + 1) is None


def test_group_or_other_permission_bits_are_refused_outside_certs(tmp_path):
    key = _key(tmp_path / "k")
    for mode in (0o640, 0o604, 0o644):
        key.chmod(mode)
        problem = keys.check_private_key(key, tmp_path / "certs")
        assert problem and f"{mode:04o}" in problem and "chmod 600" in problem
    key.chmod(0o400)
    assert keys.check_private_key(key, tmp_path / "certs") is None


def test_fifo_device_symlink_and_huge_files_are_refused_without_blocking_or_reading(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    fifo = certs / "fifo"
    os.mkfifo(fifo, 0o600)
    started = time.monotonic()
    assert "not a regular file" in keys.check_private_key(fifo, certs)  # a blocking open would hang here
    assert "not a regular file" in keys.check_private_key(Path("/dev/zero"), certs)
    assert time.monotonic() - started < 5
    target = _key(certs / "real")
    (certs / "link").symlink_to(target)
    assert "symbolic link" in keys.check_private_key(certs / "link", certs)
    huge = certs / "huge"
    with huge.open("wb") as f:
        f.truncate(1024 ** 3)  # sparse: 1 GiB that costs nothing
    assert "too large" in keys.check_private_key(huge, certs)


def test_under_certs_is_judged_on_the_file_really_opened(tmp_path):
    certs, outside = tmp_path / "certs", tmp_path / "home"
    certs.mkdir()
    outside.mkdir()
    key = _key(outside / "id")
    # certs/.. and a directory symlink inside certs/ lead outside it: the
    # ownership rule applies there.
    (certs / "sub").symlink_to(outside)
    for path in (certs / ".." / "home" / "id", certs / "sub" / "id"):
        problem = keys.check_private_key(path, certs, uid=os.geteuid() + 1)
        assert problem and "owned by uid" in problem, path
