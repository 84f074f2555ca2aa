"""Notifications and the dead man's switch, sent by the real daemon to real
receivers on 127.0.0.1: an HTTP server (Apprise json:// and ntfy://, and
healthchecks-style pings) and an SMTP server (mailto://)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from testbed.daemon import DaemonProcess
from testbed.files import write
from testbed.receivers import HttpReceiver, SmtpReceiver
from testbed.sshd import SshServer, free_port

SECRET = "s3cret-token-7c1f"


@pytest.fixture
def http():
    r = HttpReceiver()
    yield r
    r.close()


@pytest.fixture
def smtp():
    r = SmtpReceiver()
    yield r
    r.close()


@pytest.fixture
def dest(make_daemon, sshd: SshServer) -> DaemonProcess:
    daemon = make_daemon()
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    write(daemon.users_dir / "alice/backup/report.txt", "quarterly\n")
    daemon.add_destination("off site", sshd, sshd.remote_dir("r"))
    return daemon


def add_target(daemon: DaemonProcess, url: str, policy: str = "failure") -> dict:
    return daemon.ctl_json("dest", "notify", "add", "off site", "--on", policy, stdin=url + "\n")


def files_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.rglob("*") if p.is_file())


def test_failure_and_recovery_reach_webhook_ntfy_and_email(dest: DaemonProcess, sshd: SshServer,
                                                          http: HttpReceiver, smtp: SmtpReceiver):
    webhook = add_target(dest, f"json://hook:{SECRET}@127.0.0.1:{http.port}/hook")
    assert webhook == {"destination": "off site", "id": 1, "policy": "failure",
                       "url": f"json://127.0.0.1:{http.port}/…"}
    add_target(dest, f"ntfy://127.0.0.1:{http.port}/backups-{SECRET}", "recovery")
    add_target(dest, f"mailto://127.0.0.1:{smtp.port}?from=nas@example.org&to=ops@example.org", "always")
    listed = dest.ctl_json("dest", "notify", "list", "off site")
    assert [(t["id"], t["policy"]) for t in listed] == [(1, "failure"), (2, "recovery"), (3, "always")]
    assert dest.ctl_json("dest", "show", "off site")["notifications"][1]["url"] == f"ntfy://127.0.0.1:{http.port}/…"

    sshd.stop()  # the server is down: the sync fails
    failed = dest.ctl_json("sync", "off site", "--wait", expect=1, timeout_s=120)
    hook = http.wait_for(lambda r: r.path == "/hook")
    assert len(hook) == 1 and hook[0].json()["type"] == "failure"
    text = hook[0].json()["message"]
    assert "The sync of destination 'off site' failed" in text and f"Job: {failed['id']}" in text
    assert "Error: unreachable" in text and f"anemonectl job show {failed['id']}" in text
    ntfy = http.wait_for(lambda r: r.path == "/" and r.json().get("topic") == f"backups-{SECRET}")
    assert len(ntfy) == 1 and "failed" in ntfy[0].json()["title"]
    mail = smtp.wait_for(lambda m: "failed" in m["Subject"])
    assert len(mail) == 1 and mail[0]["To"] == "ops@example.org"
    assert f"anemonectl job show {failed['id']}" in mail[0].get_body().get_content()

    sshd.start()
    ok = dest.ctl_json("sync", "off site", "--wait", timeout_s=120)
    recovered = http.wait_for(lambda r: r.path == "/" and "succeeded again" in r.json()["title"])
    assert len(recovered) == 1 and f"Job: {ok['id']}" in recovered[0].json()["message"]
    assert smtp.wait_for(lambda m: "succeeded again" in m["Subject"])
    dest.ctl_json("sync", "off site", "--wait", timeout_s=120)
    # only `always` hears about an ordinary success; `failure` heard nothing after the failure
    assert smtp.wait_for(lambda m: m["Subject"].endswith("succeeded"))
    assert len(http.requests) == 3, [(r.path, r.body) for r in http.requests]

    # URLs are write-only: not in any answer, the log, nor readable state
    for args in (("dest", "show", "off site"), ("dest", "list"), ("dest", "notify", "list", "off site")):
        assert SECRET not in dest.ctl(*args, "--json").stdout
    assert SECRET not in dest.log_text()
    assert SECRET.encode() not in files_under(dest.data_dir)


def test_notify_test_reports_each_target_and_a_bad_url_is_refused(dest: DaemonProcess, http: HttpReceiver,
                                                                  smtp: SmtpReceiver):
    res = dest.ctl("dest", "notify-test", "off site")
    assert res.returncode == 2 and "no notification targets" in res.stderr
    add_target(dest, f"jsons://127.0.0.1:{http.port}/never-tls")  # https to a plain HTTP server: fails
    add_target(dest, f"mailto://127.0.0.1:{smtp.port}?from=nas@example.org&to=ops@example.org")
    add_target(dest, f"json://127.0.0.1:{free_port()}/nobody-listens")
    result = dest.ctl_json("dest", "notify-test", "off site", expect=1)
    assert [r["ok"] for r in result["results"]] == [False, True, False] and result["ok"] is False
    assert "test notification" in smtp.wait_for(lambda m: True)[0]["Subject"]
    human = dest.ctl("dest", "notify-test", "off site")
    assert human.returncode == 1 and f"2: mailto://127.0.0.1:{smtp.port}/…: sent" in human.stdout
    assert "notification failed" in dest.log_text() and "nobody-listens" not in dest.log_text()

    dest.ctl_json("dest", "notify", "remove", "off site", "1")
    dest.ctl_json("dest", "notify", "remove", "off site", "3")
    assert dest.ctl_json("dest", "notify-test", "off site")["ok"] is True
    assert dest.ctl("dest", "notify", "remove", "off site", "3").returncode == 4
    bad = dest.ctl("dest", "notify", "add", "off site", stdin="nonsense://x\n")
    assert bad.returncode == 2 and "url:" in bad.stderr
    assert dest.ctl("dest", "notify", "add", "off site", "--on", "sometimes", stdin="json://x\n").returncode == 2


def test_a_hanging_receiver_never_holds_up_jobs(dest: DaemonProcess, sshd: SshServer, http: HttpReceiver):
    add_target(dest, f"json://127.0.0.1:{http.port}/slow")
    http.hold()
    sshd.stop()
    first = dest.ctl_json("sync", "off site", "--wait", expect=1, timeout_s=120)
    # the job ended with its notification still on its way: nothing about
    # it is logged yet, and the receiver holds it
    assert "notification sent" not in dest.log_text() and "notification failed" not in dest.log_text()
    wait_until(lambda: http.waiting == 1)
    second = dest.ctl_json("sync", "off site", "--wait", expect=1, timeout_s=120)
    assert second["id"] > first["id"] and http.requests == [] and "notification sent" not in dest.log_text()
    assert dest.ctl_json("status")["jobs_running"] == 0
    http.release()
    assert len(http.wait_for(lambda r: r.path == "/slow", count=2)) == 2
    wait_until(lambda: dest.log_text().count("notification sent") == 2)


def wait_until(predicate, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_dead_mans_switch_pings_start_and_exit_status(dest: DaemonProcess, sshd: SshServer, http: HttpReceiver):
    url = f"http://127.0.0.1:{http.port}/ping/{SECRET}"
    shown = dest.ctl_json("dest", "ping-url", "off site", stdin=url + "\n")
    assert shown["ping_url"] == f"http://127.0.0.1:{http.port}/…"
    assert dest.ctl("dest", "ping-url", "off site", stdin="ftp://x/y\n").returncode == 2

    ok = dest.ctl_json("sync", "off site", "--wait", timeout_s=120)
    pings = http.wait_for(lambda r: r.path.startswith("/ping/"), count=2)
    assert [p.path for p in pings] == [f"/ping/{SECRET}/start", f"/ping/{SECRET}/0"]
    assert pings[1].method == "POST" and f"job {ok['id']}" in pings[1].body.decode()
    assert "1 files" in pings[1].body.decode()

    sshd.stop()  # (--full: with nothing changed, a sync would not need the server at all)
    failed = dest.ctl_json("sync", "off site", "--full", "--wait", expect=1, timeout_s=120)
    pings = http.wait_for(lambda r: r.path.startswith("/ping/"), count=4)
    assert [p.path for p in pings[2:]] == [f"/ping/{SECRET}/start", f"/ping/{SECRET}/1"]
    assert f"job {failed['id']}" in pings[3].body.decode() and "unreachable" in pings[3].body.decode()
    dest.ctl_json("sync", "off site", "--full", "--dry-run", "--wait", expect=1, timeout_s=120)  # dry runs do not ping
    dest.ctl_json("dest", "ping-url", "off site", "--off")
    dest.ctl_json("sync", "off site", "--full", "--wait", expect=1, timeout_s=120)
    assert len(http.requests) == 4
    assert SECRET not in dest.log_text() and SECRET.encode() not in files_under(dest.data_dir)
