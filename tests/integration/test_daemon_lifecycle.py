"""The real anemoned process: readiness, status, signals, start-up refusals."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import time


from testbed import accounts
from testbed.daemon import ANEMONED, DaemonProcess


def test_ready_status_and_stop(daemon: DaemonProcess):
    assert any(n.startswith("READY=1") or "\nREADY=1" in n for n in daemon.notifications)
    assert daemon.wait_notification("STATUS=")
    st = daemon.ctl_json("status")
    assert set(st) >= {"version", "rclone_version", "uptime_s", "jobs_running", "jobs_queued", "destinations", "next_run"}
    assert st["destinations"] == 0 and st["jobs_running"] == 0
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o660
    human = daemon.ctl("status")
    assert human.returncode == 0 and "rclone" in human.stdout

    daemon.signal(signal.SIGTERM)
    daemon.wait_notification("STOPPING=1")
    assert daemon.stop() == 0
    assert not daemon.socket.exists()
    gone = daemon.ctl("status")
    assert gone.returncode == 3
    assert gone.stderr.strip().count("\n") == 0 and "not running" in gone.stderr


def test_state_database_is_wal_with_a_schema_version(daemon: DaemonProcess):
    import sqlite3
    db = sqlite3.connect(daemon.data_dir / "state.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] >= 1


def test_sighup_reloads_and_a_bad_file_keeps_the_running_config(daemon: DaemonProcess):
    daemon.write_config(max_concurrent_syncs=3)
    daemon.signal(signal.SIGHUP)
    _wait_for_log(daemon, "config reloaded")
    daemon.write_config(max_concurrent_syncs="lots")
    daemon.signal(signal.SIGHUP)
    _wait_for_log(daemon, "config reload refused")
    assert "max_concurrent_syncs" in daemon.log_text().split("config reload refused")[1].splitlines()[0]
    assert daemon.ctl("status").returncode == 0  # still serving


def test_invalid_config_at_start_names_the_key(tmp_path):
    d = DaemonProcess(tmp_path / "d")
    d.write_config(max_concurrent_syncs=0, surprise=1)
    res = subprocess.run([ANEMONED, "--config", str(d.config_path)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert "max_concurrent_syncs" in res.stderr and "surprise: unknown key" in res.stderr


def test_refuses_rclone_older_than_1_63(tmp_path):
    old = tmp_path / "rclone"
    old.write_text("#!/bin/sh\necho 'rclone v1.60.1'\n")
    old.chmod(0o755)
    d = DaemonProcess(tmp_path / "d", rclone=str(old))
    d.write_config()
    res = subprocess.run([ANEMONED, "--config", str(d.config_path)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "1.60.1" in res.stderr and "1.63" in res.stderr


def test_stale_socket_is_replaced_and_a_live_one_is_not(make_daemon, tmp_path):
    first = make_daemon(name="one")
    first.kill()  # SIGKILL leaves the socket file behind
    assert first.socket.exists()
    first.start()  # replaces the stale socket
    assert first.ctl("status").returncode == 0

    second = DaemonProcess(first.dir)  # same socket, same data dir
    second.config_path = first.dir / "second.yaml"
    second.write_config()
    as_unit = accounts.setpriv_prefix(accounts.DAEMON_ACCOUNT) if second.as_root else []
    res = subprocess.run([*as_unit, ANEMONED, "--config", str(second.config_path)], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1 and "already listening" in res.stderr
    assert first.ctl("status").returncode == 0  # the live daemon was not disturbed


def test_watchdog_pings_when_systemd_asks(tmp_path):
    d = DaemonProcess(tmp_path / "d")
    try:
        d.start(env={"WATCHDOG_USEC": "1000000"})
        d.wait_notification("WATCHDOG=1", timeout_s=5)
    finally:
        d.stop()


def _wait_for_log(daemon: DaemonProcess, text: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in daemon.log_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in daemon log:\n{daemon.log_text()[-2000:]}")


def test_a_corrupt_state_database_or_unusable_data_dir_is_one_line_and_exit_1(tmp_path):
    """Start-up failures are told in one line, never as a traceback."""
    d = DaemonProcess(tmp_path / "d")
    d.write_config()
    d.data_dir.mkdir(parents=True, exist_ok=True)
    (d.data_dir / "state.db").write_bytes(b"this is not a database, just bytes " * 200)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    e = DaemonProcess(tmp_path / "e", data_dir=str(blocker / "data"))
    e.write_config()
    try:
        for proc in (d, e):
            res = subprocess.run([ANEMONED, "--config", str(proc.config_path)], capture_output=True, text=True,
                                 timeout=30)
            assert res.returncode == 1, res.stderr
            assert "Traceback" not in res.stderr and res.stderr.count("cannot start") == 1, res.stderr
    finally:
        d.cleanup()
        e.cleanup()
