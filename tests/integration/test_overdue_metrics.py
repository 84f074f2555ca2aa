"""Overdue detection and the Prometheus textfile, with the real daemon:
overdue shows in status, dest show, systemd's STATUS= and the metrics, is
notified once (even across a restart) and ends with a success."""
from __future__ import annotations

import os

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.daemon import DaemonProcess
from testbed.files import write
from testbed.receivers import HttpReceiver
from testbed.sshd import SshServer

FAST = {"ANEMONED_MIN_INTERVAL_S": "1"}  # lets max_age be seconds


def metrics(path: Path) -> dict[tuple[str, str], float]:
    """(metric name, destination) -> value, parsed with prometheus_client."""
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out[(sample.name, sample.labels["destination"])] = sample.value
    return out


def wait_until(predicate, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.fixture
def http():
    r = HttpReceiver()
    yield r
    r.close()


def textfile_in(daemon: DaemonProcess) -> Path:
    """A metrics textfile in a directory the daemon's account may write (as
    node_exporter's textfile directory would be, given to the daemon)."""
    prom = daemon.dir / "textfile" / "anemone.prom"
    prom.parent.mkdir()
    os.chown(prom.parent, daemon.uid, daemon.gid)
    daemon.config["metrics_textfile"] = str(prom)
    return prom


def test_overdue_is_shown_everywhere_notified_once_and_ends_with_a_success(make_daemon, sshd: SshServer,
                                                                           http: HttpReceiver, tmp_path: Path):
    daemon = make_daemon(start=False)
    prom = textfile_in(daemon)
    daemon.start(env=FAST)
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    write(daemon.users_dir / "alice/backup/a.txt", "a")
    daemon.add_destination("off site", sshd, sshd.remote_dir("r"), "--max-age", "6s")
    for url, policy in ((f"json://127.0.0.1:{http.port}/hook", "failure"),
                        (f"json://127.0.0.1:{http.port}/recovery", "recovery")):
        daemon.ctl_json("dest", "notify", "add", "off site", "--on", policy, stdin=url + "\n")
    shown = daemon.ctl_json("dest", "show", "off site")
    assert shown["max_age"] == "6s" and shown["overdue"] is None
    assert metrics(prom)[("anemone_destination_overdue", "off site")] == 0

    # never synced: overdue 6 s after it was added
    told = http.wait_for(lambda r: r.path == "/hook")
    assert len(told) == 1 and "is overdue" in told[0].json()["title"] and told[0].json()["type"] == "failure"
    assert "no successful sync yet" in told[0].json()["message"]
    status = daemon.ctl_json("status")
    assert status["overdue"] == ["off site"]
    assert any(w.startswith("off site: overdue since") for w in status["warnings"])
    assert daemon.ctl_json("dest", "show", "off site")["overdue"]["rule"] == "max_age"
    assert "warning: off site: overdue since" in daemon.ctl("status").stdout
    daemon.wait_notification("overdue: off site")
    assert metrics(prom)[("anemone_destination_overdue", "off site")] == 1

    # told once: not again later, nor after a restart
    time.sleep(2)
    daemon.stop()
    daemon.start(env=FAST)
    assert daemon.ctl_json("status")["overdue"] == ["off site"]
    time.sleep(2)
    assert len([r for r in http.requests if "overdue" in r.json()["title"]]) == 2  # /hook and /recovery, once

    job = daemon.ctl_json("sync", "off site", "--wait", timeout_s=120)
    assert job["state"] == "succeeded"
    assert daemon.ctl_json("status")["overdue"] == []
    back = http.wait_for(lambda r: r.path == "/recovery" and "succeeded again" in r.json()["title"])
    assert len(back) == 1 and not [r for r in http.requests if r.path == "/hook" and "succeeded" in r.json()["title"]]
    wait_until(lambda: "destination no longer overdue" in daemon.log_text())
    assert metrics(prom)[("anemone_destination_overdue", "off site")] == 0
    # a new episode after the success is told again
    assert len(http.wait_for(lambda r: r.path == "/hook" and "overdue" in r.json()["title"], count=2)) == 2


def test_metrics_textfile_follows_jobs(make_daemon, sshd: SshServer, tmp_path: Path):
    daemon = make_daemon(start=False)
    prom = textfile_in(daemon)
    daemon.start()
    assert prom.exists() and metrics(prom) == {}  # written at start, nothing to say yet
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    write(daemon.users_dir / "alice/backup/a.txt", "0123456789")
    daemon.add_destination("d0", sshd, sshd.remote_dir("r"))
    m = metrics(prom)
    assert m[("anemone_destination_enabled", "d0")] == 1 and ("anemone_last_sync_success", "d0") not in m

    sshd.stop()
    failed = daemon.ctl_json("sync", "d0", "--wait", expect=1, timeout_s=120)
    m = metrics(prom)
    assert m[("anemone_last_sync_success", "d0")] == 0
    assert ("anemone_last_success_timestamp_seconds", "d0") not in m
    assert m[("anemone_last_sync_duration_seconds", "d0")] >= 0
    assert abs(m[("anemone_last_sync_timestamp_seconds", "d0")] - _epoch(failed["finished_at"])) < 1

    sshd.start()
    ok = daemon.ctl_json("sync", "d0", "--wait", timeout_s=120)
    m = metrics(prom)
    assert m[("anemone_last_sync_success", "d0")] == 1
    assert abs(m[("anemone_last_success_timestamp_seconds", "d0")] - _epoch(ok["finished_at"])) < 1
    assert m[("anemone_last_sync_files_transferred", "d0")] == 1
    assert m[("anemone_last_sync_transferred_bytes", "d0")] == 10
    assert m[("anemone_last_sync_files_deleted", "d0")] == 0

    usage = daemon.ctl_json("dest", "usage", "d0", timeout_s=120)
    m = metrics(prom)
    assert m[("anemone_remote_free_bytes", "d0")] == usage["stats"]["free_bytes"] > 0
    assert m[("anemone_remote_size_bytes", "d0")] == usage["stats"]["total_bytes"]
    assert m[("anemone_remote_backup_bytes", "d0")] == 10
    # written atomically: nothing but the file itself is left beside it
    assert [p.name for p in prom.parent.iterdir()] == ["anemone.prom"]
    # a dry run is not a sync's outcome
    daemon.ctl_json("sync", "d0", "--dry-run", "--wait", timeout_s=120)
    assert metrics(prom)[("anemone_last_sync_timestamp_seconds", "d0")] == m[("anemone_last_sync_timestamp_seconds", "d0")]

    # an unwritable place is a warning, not a stop
    daemon.write_config(metrics_textfile=str(tmp_path / "missing" / "anemone.prom"))
    daemon.signal(1)  # SIGHUP: reload
    wait_until(lambda: "config reloaded" in daemon.log_text())
    daemon.ctl_json("sync", "d0", "--wait", timeout_s=120)
    assert "cannot write the metrics file" in daemon.log_text()


def _epoch(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text).timestamp()
