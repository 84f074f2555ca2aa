"""Live progress: redrawn in place on a terminal, plain periodic lines
otherwise."""
import io

from anemonectl import render

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
