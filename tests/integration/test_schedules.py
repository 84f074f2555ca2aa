"""The running daemon starts scheduled syncs by itself and catches up after
downtime. ANEMONED_MIN_INTERVAL_S lowers the 5-minute floor so that this
takes seconds, not minutes."""
from __future__ import annotations

import sqlite3
import time
from datetime import datetime

import pytest

from testbed.daemon import DaemonProcess
from testbed.sshd import SshServer

FAST = {"ANEMONED_MIN_INTERVAL_S": "1"}


@pytest.fixture
def dest(make_daemon, sshd: SshServer) -> DaemonProcess:
    daemon = make_daemon(start=False)
    daemon.start(env=FAST)
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    (daemon.users_dir / "alice/backup").mkdir(parents=True)
    (daemon.users_dir / "alice/backup/f.txt").write_text("x")
    daemon.add_destination("d", sshd, sshd.remote_dir("r"))
    return daemon


def scheduled_jobs(daemon: DaemonProcess) -> list[dict]:
    return [j for j in daemon.ctl_json("job", "list", "--limit", "100") if j["trigger"] in ("schedule", "retry")]


def wait_until(predicate, timeout_s: float = 20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_interval_schedule_runs_by_itself_and_shows_next_run(dest: DaemonProcess):
    shown = dest.ctl_json("dest", "schedule", "d", "--interval", "3s")
    assert shown["schedule"] == {"kind": "interval", "every": "3s", "catch_up": True}
    nxt = datetime.fromisoformat(shown["next_run"])
    assert 0 < (nxt - datetime.fromisoformat(dest.ctl_json("status")["next_run"])).total_seconds() + 1 <= 4
    assert dest.ctl_json("status")["next_run_destination"] == "d"
    assert any("next: d at" in n for n in dest.notifications) or dest.wait_notification("next: d at")
    job = wait_until(lambda: scheduled_jobs(dest), timeout_s=15)[-1]
    assert dest.ctl_json("job", "wait", str(job["id"]))["state"] == "succeeded"
    # A manual sync does not move the schedule.
    before = dest.ctl_json("dest", "show", "d")["next_run"]
    dest.ctl_json("sync", "d", "--wait")
    assert dest.ctl_json("dest", "show", "d")["next_run"] == before
    # Disabled destinations never run.
    dest.ctl_json("dest", "disable", "d")
    assert dest.ctl_json("dest", "show", "d")["next_run"] is None
    count = len(scheduled_jobs(dest))
    time.sleep(4)
    assert len(scheduled_jobs(dest)) == count


# Catching up gets the longer interval: the daemon's restart (on a busy
# machine, seconds) must end well before the next moment for "right after
# start-up" and "at the next moment" to be told apart.
@pytest.mark.parametrize("catch_up, every", [(True, 10), (False, 6)])
def test_missed_moments_run_once_after_restart_or_are_skipped(dest: DaemonProcess, catch_up: bool, every: int):
    set_at = time.time()
    dest.ctl_json("dest", "schedule", "d", "--interval", f"{every}s", *([] if catch_up else ["--skip-missed"]))
    dest.stop()
    time.sleep(max(0.0, set_at + every + 1 - time.time()))  # the moment at set_at + every passes while down
    dest.start(env=FAST)
    jobs = wait_until(lambda: scheduled_jobs(dest), timeout_s=2 * every)
    first = datetime.fromisoformat(jobs[-1]["queued_at"]).timestamp()  # whole seconds
    next_moment = set_at + 2 * every
    if catch_up:
        assert first < next_moment - 1  # right after start-up, not at the next moment
        assert len(jobs) == 1  # once, not once per missed moment
    else:
        assert first >= next_moment - 1  # the missed moment was dropped; the next one on the grid ran
        assert "missed scheduled runs skipped dest=d" in dest.log_text()


def test_bad_schedule_is_refused_naming_the_field(dest: DaemonProcess):
    res = dest.ctl("dest", "schedule", "d", "--daily", "25:00")
    assert res.returncode == 2 and "schedule.time" in res.stderr
    res = dest.ctl("dest", "schedule", "d", "--cron", "not a cron")
    assert res.returncode == 2 and "schedule.expr" in res.stderr
    assert dest.ctl("dest", "schedule", "nope", "--off").returncode == 4


def test_verify_has_a_schedule_of_its_own(dest: DaemonProcess):
    assert dest.ctl_json("sync", "d", "--wait")["state"] == "succeeded"
    shown = dest.ctl_json("dest", "schedule", "d", "--verify", "--interval", "2s")
    assert shown["verify_schedule"]["kind"] == "interval" and shown["schedule"] == {"kind": "off"}
    assert shown["next_verify"] and shown["next_run"] is None
    job = wait_until(lambda: [j for j in scheduled_jobs(dest) if j["kind"] == "verify"], timeout_s=15)[-1]
    assert dest.ctl_json("job", "wait", str(job["id"]))["state"] == "succeeded"
    assert not [j for j in scheduled_jobs(dest) if j["kind"] == "sync"]


def test_a_date_that_never_comes_is_refused_and_nothing_is_stored(dest: DaemonProcess):
    res = dest.ctl("dest", "schedule", "d", "--cron", "0 3 31 2 *")  # 31 February
    assert res.returncode == 2 and "schedule.expr" in res.stderr, res.stderr
    assert dest.ctl_json("dest", "show", "d")["schedule"] == {"kind": "off"}
    assert dest.ctl("dest", "schedule", "d", "--cron", "0 0 29 2 *").returncode == 0  # rare, but it comes


def test_a_stored_schedule_that_cannot_be_computed_stops_only_itself(dest: DaemonProcess, sshd: SshServer):
    dest.add_destination("healthy", sshd, sshd.remote_dir("h"))
    dest.ctl_json("dest", "schedule", "healthy", "--interval", "3s")
    dest.ctl_json("dest", "schedule", "d", "--daily", "03:00")
    dest.stop()
    # As the old code stored it, and worse: what a damaged or hand-edited
    # database can hold.
    with sqlite3.connect(dest.data_dir / "state.db") as db:
        db.execute("""UPDATE destinations SET schedule = '{"kind": "cron", "expr": "0 3 31 2 *", "catch_up": true}',
                      verify_schedule = 'not json at all' WHERE name = 'd'""")
    dest.start(env=FAST)  # the daemon starts
    status = dest.ctl_json("status")
    assert any(w.startswith("d: sync schedule is off") for w in status["warnings"]), status
    assert any(w.startswith("d: verify schedule is off") for w in status["warnings"]), status["warnings"]
    shown = dest.ctl_json("dest", "show", "d")
    assert shown["next_run"] is None and shown["next_verify"] is None
    assert any("cannot be computed" in w and "dest schedule 'd'" in w for w in shown["warnings"])
    assert shown["schedule"]["expr"] == "0 3 31 2 *" and shown["verify_schedule"] == {"kind": "off"}
    assert [x["name"] for x in dest.ctl_json("dest", "list")] == ["d", "healthy"]
    assert dest.ctl("dest", "show", "d").returncode == 0  # the text view too
    assert "sync schedule cannot be computed" in dest.log_text()
    # The other destination's schedule still fires.
    job = wait_until(lambda: [j for j in scheduled_jobs(dest) if j["destination"] == "healthy"], timeout_s=20)[-1]
    assert dest.ctl_json("job", "wait", str(job["id"]))["state"] == "succeeded"
    assert not [j for j in scheduled_jobs(dest) if j["destination"] == "d"]
    # Setting it again puts it back.
    dest.ctl_json("dest", "schedule", "d", "--daily", "03:00")
    shown = dest.ctl_json("dest", "show", "d")
    assert shown["next_run"] and not any("sync schedule" in w for w in shown["warnings"])
    assert dest.log_text().count("sync schedule cannot be computed") == 1  # logged once, not per look
