"""Pure builders of rclone invocations and the interpretation of its errors."""
import json
from pathlib import Path

import pytest

from anemoned import rclone
from anemoned.hostkeys import HostKey, known_hosts_name, parse_banner, parse_keyscan, render_known_hosts


def access(**kw):
    base = dict(host="h.example", port=2222, user="u", known_hosts_file=Path("/d/certs/known_hosts"),
                host_key_algorithms="ssh-ed25519", key_file=Path("/d/certs/rclone_key"))
    base.update(kw)
    return rclone.SftpAccess(**base)


def test_sftp_options_are_env_vars_of_the_fixed_remote():
    env = rclone.option_env(rclone.DEST_REMOTE, rclone.sftp_options(access()))
    assert env["RCLONE_CONFIG_DEST_TYPE"] == "sftp"
    assert env["RCLONE_CONFIG_DEST_SHELL_TYPE"] == "unix"
    assert env["RCLONE_CONFIG_DEST_KNOWN_HOSTS_FILE"] == "/d/certs/known_hosts"
    assert env["RCLONE_CONFIG_DEST_HOST_KEY_ALGORITHMS"] == "ssh-ed25519"
    assert env["RCLONE_CONFIG_DEST_DISABLE_HASHCHECK"] == "true"
    assert env["RCLONE_CONFIG_DEST_KEY_USE_AGENT"] == "false"
    assert "RCLONE_CONFIG_DEST_PASS" not in env


def test_hostile_values_stay_inside_their_own_option():
    evil = "x,key_file=/etc/shadow:"
    opts = rclone.sftp_options(access(user=evil, host=evil))
    assert opts["user"] == evil and opts["host"] == evil
    assert set(opts) == {"type", "host", "port", "user", "known_hosts_file", "shell_type", "disable_hashcheck",
                         "key_use_agent", "ask_password", "host_key_algorithms", "key_file", "encoding"}


def test_password_access_has_no_key_file():
    opts = rclone.sftp_options(access(key_file=None, obscured_password="OBSCURED"))
    assert opts["pass"] == "OBSCURED" and "key_file" not in opts


def test_base_env_inherits_nothing(monkeypatch):
    monkeypatch.setenv("RCLONE_CONFIG_DEST_KEY_FILE", "/etc/shadow")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent")
    env = rclone.base_env(Path("/d"))
    assert not any(k.startswith("RCLONE_CONFIG") or k == "SSH_AUTH_SOCK" for k in env)


def test_dest_path_puts_everything_after_the_fixed_remote():
    assert rclone.dest_path("/srv/b/", "backup", "alice") == "dest:/srv/b/backup/alice"
    assert rclone.dest_path("/") == "dest:/"


@pytest.mark.parametrize("message, cls", [
    ('Failed to create file system for "dest:/x": NewFs: couldn\'t connect SSH: ssh: handshake failed: knownhosts: key mismatch', rclone.HOST_KEY_MISMATCH),
    ("NewFs: couldn't connect SSH: ssh: handshake failed: knownhosts: key is unknown", rclone.HOST_KEY_UNKNOWN),
    ("ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain", rclone.AUTH_FAILED),
    ("couldn't connect SSH: dial tcp 127.0.0.1:1: connect: connection refused", rclone.UNREACHABLE),
    ("dial tcp 10.0.0.1:22: i/o timeout", rclone.TIMEOUT),
    ("error listing: directory not found", rclone.PATH_MISSING),
    ("failed to touch (create): Update Create failed: permission denied", rclone.PATH_NOT_WRITABLE),
    ("Failed to copy: Update ReadFrom failed: sftp: \"No space left on device\"", rclone.DISK_FULL),
    ("something else entirely", None),
])
def test_classify(message, cls):
    assert rclone.classify([message]) == cls


def test_parse_log_line_keeps_non_json_as_an_error():
    assert rclone.parse_log_line(b'{"level":"info","msg":"x"}\n') == {"level": "info", "msg": "x"}
    assert rclone.parse_log_line(b"panic: boom\n") == {"level": "error", "msg": "panic: boom"}


def test_keyscan_parsing_prefers_ed25519_and_ignores_junk():
    out = ("# 127.0.0.1:22 SSH-2.0-OpenSSH_9.2\n"
           "[127.0.0.1]:2222 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\n"
           "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1vLmPyRDsXstRHRLzdB8zhxN1QKoQb00krdMeAmWpk\n"
           "[127.0.0.1]:2222 ssh-dss AAAA\n"
           "garbage\n")
    keys = parse_keyscan(out)
    assert [k.key_type for k in keys] == ["ssh-ed25519", "ssh-rsa"]
    assert keys[0].fingerprint.startswith("SHA256:") and len(keys[0].fingerprint) == 50
    assert keys[1].algorithms == "rsa-sha2-512 rsa-sha2-256"


def test_server_identification_from_keyscan_comments_and_the_upload_chunk_it_allows():
    err = "# 127.0.0.1:2222 SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\n# 127.0.0.1:2222 SSH-2.0-OpenSSH_9.2p1 Debian\n"
    version = parse_banner(err)
    assert version == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"
    assert rclone.upload_chunk_size(version) == "255k"
    # other servers, no identification, or a hostile one: rclone's default
    for banner in ("# h:22 SSH-2.0-mod_sftp\n", "", "# h:22 SSH-2.0-\x1b[31mOpenSSH_9\n", "# h:22 SSH-1.99-OpenSSH_3\n"):
        assert rclone.upload_chunk_size(parse_banner(banner)) is None
    assert "chunk_size" not in rclone.sftp_options(access())
    assert rclone.sftp_options(access(), chunk_size="255k")["chunk_size"] == "255k"


def test_known_hosts_names_match_go_knownhosts():
    assert known_hosts_name("h", 22) == "h"
    assert known_hosts_name("h", 2222) == "[h]:2222"
    assert known_hosts_name("::1", 22) == "[::1]"
    assert known_hosts_name("::1", 2222) == "[::1]:2222"
    key = HostKey("ssh-ed25519", "AAAA")
    assert render_known_hosts([("h", 2222, key), ("h", 2222, key)]) == "[h]:2222 ssh-ed25519 AAAA\n"


def test_failure_message_names_the_class_and_strips_retry_prefixes():
    msgs = ["Attempt 2/2 failed with 3 errors and: couldn't connect SSH: dial tcp 127.0.0.1:9: connect: connection refused"]
    assert rclone.failure_message(rclone.classify(msgs), msgs, "x") == \
        "unreachable: couldn't connect SSH: dial tcp 127.0.0.1:9: connect: connection refused"
    assert rclone.failure_message(None, [], "rclone exited with status 7") == "rclone exited with status 7"


def test_failure_classes_are_the_strings_the_wire_carries():
    # job errors ("class: message"), `dest test`'s `class` and stats carry
    # these exact strings (CONTRACT.md); the enum must not change one
    assert {c.value for c in rclone.FailureClass} == {
        "unreachable", "timeout", "host key unknown", "host key mismatch", "authentication failed",
        "session refused", "remote path missing", "remote path not writable", "remote disk full", "unknown"}
    cls = rclone.classify(["ssh: handshake failed: knownhosts: key mismatch"])
    assert cls is rclone.FailureClass.HOST_KEY_MISMATCH and cls == "host key mismatch"
    # written as its value everywhere a string goes: f-strings, JSON, the store
    assert f"{cls}: x" == "host key mismatch: x" and json.dumps({"class": cls}) == '{"class": "host key mismatch"}'


def test_secrets_in_the_environment_are_redacted_from_what_rclone_says():
    env = {**rclone.option_env("dest", {"type": "sftp", "user": "u", "pass": "OBSCURED-abc", "key_pem": "-----PEM-----"}),
           "PATH": "/usr/bin:/bin"}
    secrets = rclone.secret_values(env)
    assert set(secrets) == {b"OBSCURED-abc", b"-----PEM-----"}
    line = b'{"level":"debug","msg":"Setting pass=\\"OBSCURED-abc\\" for \\"dest\\"; key -----PEM-----"}\n'
    record = rclone.parse_log_line(rclone.redact(line, secrets))
    assert "OBSCURED-abc" not in record["msg"] and "PEM-----" not in record["msg"]
    assert record["msg"].count("[redacted]") == 2
    assert rclone.redact(b"user=u sftp", secrets) == b"user=u sftp"  # only secrets


def _mark(**kw):
    return {"level": "debug", "msg": "12 go routines active\n", "source": "cmd/cmd.go:298", **kw}


def _report(**stats):
    return {"level": "notice", "msg": "...", "stats": {"errors": 0, "fatalError": False, "transfers": 3, **stats}}


def test_a_run_settles_early_only_on_rclones_own_mark_right_after_a_clean_report():
    assert rclone.settles_clean(_mark(), _report())
    # The last report counted an error, or the mark does not follow a
    # report: the exit status is rclone's to tell.
    assert not rclone.settles_clean(_mark(), _report(errors=1))
    assert not rclone.settles_clean(_mark(), _report(fatalError=True))
    assert not rclone.settles_clean(_mark(), {"level": "error", "msg": "Failed to copy: x"})
    assert not rclone.settles_clean(_mark(), None)
    # The same words elsewhere (a file's name in a message of the copy,
    # another level) are not the mark.
    assert not rclone.settles_clean(_mark(source="operations/copy.go:382"), _report())
    assert not rclone.settles_clean(_mark(level="info"), _report())
    assert not rclone.settles_clean(_mark(msg="x/12 go routines active\n"), _report())


def test_a_run_never_settles_early_when_a_line_it_could_not_read_came_after_the_report():
    def settles(*steps, args=()):
        s = rclone.Settlement(list(args))
        for step in steps:
            if step == "lost":
                s.unreadable()
            else:
                record, parsed = step
                if s.feed(record, parsed):
                    return True
        return False
    clean = [(_report(), True), (_mark(), True)]
    assert settles(*clean)
    # rclone's plain lines before its JSON logging starts are no report.
    assert settles(({"level": "error", "msg": "DEBUG : Setting --cache-dir"}, False), "lost", *clean)
    # A clean periodic report, then the final one lost (longer than the
    # line limit: a server's huge error message it quotes) or garbled.
    assert not settles((_report(), True), "lost", *clean[1:])
    assert not settles((_report(), True), ({"level": "error", "msg": "garbage"}, False), *clean[1:])
    # A clean report does not mean status 0 when no transfer is an error.
    assert not settles(*clean, args=["copy", "--error-on-no-transfer"])
    assert not settles(*clean, args=["copy", "--error-on-no-transfer=true"])
