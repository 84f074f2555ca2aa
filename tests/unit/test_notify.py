import pytest

from anemoned import notify
from anemoned.api.dispatch import to_rpc_error
from anemoned.errors import AnemoneError

JOB = {"id": 42, "destination": "off site", "kind": "sync", "trigger": "schedule", "state": "failed",
       "finished_at": "2026-11-28T02:31:00+00:00", "error": "unreachable: connection refused",
       "stats": {"files_transferred": 3, "bytes_transferred": 3 * 1024 * 1024, "files_deleted": 1, "duration_s": 2.5,
                 "users": {"alice": {"status": "succeeded", "warning": None},
                           "bob": {"status": "skipped", "warning": "backup/ is empty"},
                           "carol": {"status": "failed", "warning": None}}}}


@pytest.mark.parametrize("url,shown", [
    ("json://user:pw@127.0.0.1:9000/hook", "json://127.0.0.1:9000/…"),
    ("ntfys://user:pw@ntfy.sh/secret-topic", "ntfys://ntfy.sh/…"),
    ("mailto://user:pw@example.org?to=ops@example.org", "mailto://example.org/…"),
    # Telegram's bot token is the host part: Apprise's privacy form masks it
    ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/987654", "tgram://1...w/…"),
])
def test_targets_are_shown_without_their_secrets(url, shown):
    assert notify.check_target(url) == shown


@pytest.mark.parametrize("bad", ["", "nonsense://x", "json://host/a b", "json://x/\n", "x" * 3000, 7])
def test_bad_targets_name_the_url_field(bad):
    with pytest.raises(AnemoneError) as err:
        notify.check_target(bad)
    assert to_rpc_error(err.value).data == {"field": "url"}


def test_ping_urls_follow_healthchecks():
    base = "https://hc-ping.com/0b5d2f1e-uuid"
    assert notify.check_ping_url(base) == "https://hc-ping.com/…"
    assert notify.ping_url(base, "start") == base + "/start"
    assert notify.ping_url(base + "/", "1") == base + "/1"
    assert notify.ping_url("https://kuma.example/ping/key?x=1", "0") == "https://kuma.example/ping/key/0?x=1"
    for bad in ("ftp://x/y", "https:///nohost", "mailto://x"):
        with pytest.raises(AnemoneError):
            notify.check_ping_url(bad)


def test_policies_nest():
    got = {p: {e for e, receivers in notify.RECEIVED_BY.items() if p in receivers} for p in notify.POLICIES}
    assert got == {"failure": {"failure", "overdue"}, "recovery": {"failure", "overdue", "recovery"},
                   "always": {"failure", "overdue", "recovery", "success"}}


def test_failure_message_names_destination_job_users_and_next_command():
    m = notify.job_message("failure", JOB, "nas1")
    assert m.title == "[nas1] anemoned: sync of destination 'off site' failed" and m.notify_type == "failure"
    assert "Job: 42 (schedule)" in m.body and "Error: unreachable: connection refused" in m.body
    assert "user bob: skipped: backup/ is empty" in m.body and "user carol: failed" in m.body
    assert "alice" not in m.body
    assert m.body.endswith("See more: anemonectl job show 42")


def test_recovery_and_success_messages_carry_the_counts():
    ok = {**JOB, "state": "succeeded", "error": None, "stats": {**JOB["stats"], "users": {}}}
    m = notify.job_message("recovery", ok, "nas1")
    assert "succeeded again" in m.title and m.notify_type == "success"
    assert "3 files (3.0 MiB) transferred, 1 deleted" in m.body


def test_verify_failures_list_what_differs():
    job = {**JOB, "kind": "verify", "error": "2 files differ",
           "stats": {"users": {"alice": {"status": "failed", "differ": 2, "missing": 1, "errors": 0}}}}
    assert "user alice: 2 differ, 1 missing on the server, 0 errors" in notify.job_message("failure", job, "h").body


def test_many_users_are_counted_not_listed():
    users = {f"u{i:02d}": {"status": "failed"} for i in range(25)}
    body = notify.job_message("failure", {**JOB, "stats": {"users": users}}, "h").body
    assert body.count("  user ") == notify.USERS_LISTED and "... and 15 more users" in body


def test_ping_body_is_short_and_says_the_outcome():
    assert notify.ping_body(JOB) == "anemoned job 42 (sync of 'off site'): failed\nunreachable: connection refused"
    assert len(notify.ping_body({**JOB, "error": "x" * 50_000})) == 10_000
