"""Live progress: redrawn in place on a terminal, plain periodic lines
otherwise."""
import io

from anemonectl import render
from anemonectl.ctl import Ctl

JOB = {"id": 7, "state": "running", "progress": {"bytes": 512 * 1024, "total_bytes": 1024 * 1024, "files": 3,
                                                 "total_files": 10, "speed": 2048, "eta_s": 4, "current_user": "alice"}}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_has_bytes_files_speed_eta_and_user():
    line = render.progress_line(JOB)
    assert line == " 50% 512.0 KiB / 1.0 MiB, 3 files / 10, 2.0 KiB/s, ETA 4.0s, user alice"
    assert render.progress_line({"id": 7, "state": "queued"}) == "job 7: queued"


def test_terminal_redraws_one_line_in_place():
    out = Terminal()
    p = render.ProgressPrinter(out, enabled=True)
    p.show(JOB)
    p.show({**JOB, "progress": {**JOB["progress"], "bytes": 1024 * 1024, "current_user": "bob"}})
    p.finish()
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") >= 3 and "user bob" in text


def test_pipe_gets_plain_lines_at_most_every_ten_seconds(monkeypatch):
    out = io.StringIO()
    clock = iter([100.0, 100.0, 105.0, 111.0, 111.0])
    monkeypatch.setattr(render.time, "monotonic", lambda: next(clock))
    p = render.ProgressPrinter(out, enabled=True)
    for _ in range(3):
        p.show(JOB)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()


def test_destination_shows_monitoring_without_secrets():
    d = {"name": "d", "enabled": True, "user": "u", "host": "h", "port": 22, "auth": "key", "key_file": "k",
         "remote_path": "/r", "host_key_fingerprint": None, "schedule": {"kind": "off"}, "max_delete": 1,
         "max_delete_percent": 1, "keep_versions_days": 0, "max_age": "36h", "ping_url": "https://hc-ping.com/…",
         "notifications": [{"id": 1, "policy": "failure", "url": "ntfys://ntfy.sh/…"}],
         "warnings": ["overdue since 2026-11-28T02:30:00+00:00: no successful sync yet, allowed age 36h (max_age)"]}
    text = render.destination(d)
    assert "max age:     36h" in text and "notify:      1: ntfys://ntfy.sh/… (on failure)" in text
    assert "ping URL:    https://hc-ping.com/…" in text and "warning:     overdue since" in text
    assert render.notification_table([]).startswith("No notification targets")


def test_jobs_render_whatever_their_kind_recorded():
    base = {"id": 3, "destination": "d", "state": "failed", "dry_run": False, "queued_at": "t", "started_at": "t",
            "finished_at": "t", "trigger": "manual"}
    # a verify that could not reach the server, and one with a stalled user
    failed = render.job({**base, "kind": "verify", "error": "unreachable: x", "stats": {"method": None, "duration_s": 1}})
    assert "unreachable" in failed
    stalled = render.job({**base, "kind": "verify", "error": "mallory: ...", "stats": {
        "checks": 1, "method": "md5", "differ": 0, "missing": 0, "extra": 0,
        "users": {"mallory": {"status": "stalled", "error": "no answer within 10 s"}}}})
    assert "mallory: stalled: no answer within 10 s" in stalled
    # a restore's stats have no per-user part; a failed user's error shows in the sync table
    restore = render.job({**base, "kind": "restore", "state": "succeeded", "error": None, "stats": {
        "files_transferred": 2, "bytes_transferred": 10, "files_deleted": 0, "checks": 0, "errors": 0}})
    assert "2 files" in restore
    sync = render.job({**base, "kind": "sync", "error": "1 of 1 users not backed up", "stats": {
        "files_transferred": 0, "bytes_transferred": 0, "files_deleted": 0, "checks": 0, "errors": 1, "duration_s": 1,
        "users": {"alice": {"status": "failed", "files_transferred": 0, "bytes_transferred": 0, "files_deleted": 0,
                            "warning": None, "error": "x.txt: permission denied"}}}})
    assert "x.txt: permission denied" in sync


def test_names_and_messages_reach_a_terminal_without_their_control_characters(capsys):
    """A file name a user chose, or an error a server sent, printed as
    they are could clear the operator's screen, retitle the window or
    fake lines of output; every human answer is printed through
    terminal_safe (JSON escapes them itself)."""
    assert render.terminal_safe("a\x1b[2J\x07b\n\tc\x9bd\x7fé") == "a\\x1b[2J\\x07b\n\tc\\x9bd\\x7fé"
    Ctl(None, as_json=False).emit({}, lambda _: "missing: alice/x\x1b]0;owned\x07\nnext")  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out == "missing: alice/x\\x1b]0;owned\\x07\nnext\n"
