import subprocess


def test_fixture_serves_its_own_host_key_on_loopback(sshd):
    out = subprocess.run(["ssh-keyscan", "-p", str(sshd.port), "-t", "ed25519", "127.0.0.1"],
                         capture_output=True, text=True, timeout=30).stdout
    assert out.split()[1:3] == sshd.host_key.with_suffix(".pub").read_text().split()[:2]
