import stat
import subprocess

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
    assert keys.check_private_key(private) is None


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
    assert "not a private key" in keys.check_private_key(tmp_path / "pub")
    assert "does not exist" in keys.check_private_key(tmp_path / "absent")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(tmp_path / "locked")], check=True)
    assert "passphrase" in keys.check_private_key(tmp_path / "locked")


def test_secrets_round_trip_and_never_store_plain_text(tmp_path):
    s = keys.Secrets(tmp_path)
    token = s.encrypt("hunter2")
    assert b"hunter2" not in token
    assert s.decrypt(token) == "hunter2"
    assert stat.S_IMODE((tmp_path / "secrets.key").stat().st_mode) == 0o600
