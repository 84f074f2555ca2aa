"""Under systemd, the daemon's events reach a real systemd-journald with
native fields, read back with journalctl -o json."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from anemoned.logs import message_id
from testbed import journald as jd
from testbed import accounts
from testbed.daemon import ANEMONED, DaemonProcess
from testbed.files import write
from testbed.sshd import SshServer

pytestmark = pytest.mark.skipif(jd.available() is not None, reason=str(jd.available()))


@pytest.fixture
def journal(tmp_path: Path):
    j = jd.Journald(tmp_path / "journald")
    j.start()
    yield j
    j.stop()


def start_under_journald(daemon: DaemonProcess, journal: jd.Journald) -> None:
    """Start anemoned as systemd would with LogNamespace=: stderr is a
    journal stream named by JOURNAL_STREAM, the native socket is at
    /run/systemd/journal/socket."""
    daemon.write_config()
    stream, journal_stream = journal.stream("anemoned")
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    daemon.proc = subprocess.Popen(journal.wrap_command([*as_unit(daemon), ANEMONED, "--config", str(daemon.config_path)]),
                                   stdout=subprocess.DEVNULL, stderr=stream.fileno(),
                                   env={**env, "JOURNAL_STREAM": journal_stream})
    stream.close()
    deadline = time.monotonic() + 30
    while daemon.ctl("status").returncode != 0:
        assert daemon.proc.poll() is None, "anemoned exited"
        assert time.monotonic() < deadline, "anemoned did not answer"
        time.sleep(0.1)


def test_events_carry_native_fields(make_daemon, sshd: SshServer, journal: jd.Journald):
    daemon = make_daemon(start=False)
    start_under_journald(daemon, journal)
    ready = journal.wait_for("SYSLOG_IDENTIFIER=anemoned", f"MESSAGE_ID={message_id('anemoned ready')}")
    assert ready and ready[0]["_TRANSPORT"] == "journal" and ready[0]["PRIORITY"] == "6"
    assert ready[0]["MESSAGE"].startswith("anemoned ready version=")

    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    daemon.add_destination("off site", sshd, sshd.remote_dir("d"))
    write(daemon.users_dir / "alice/backup/a.txt", "a")
    sshd.stop()  # the server is down: the sync fails
    job = daemon.ctl_json("sync", "off site", "--wait", expect=1, timeout_s=120)

    failed = journal.wait_for("DEST=off site", "OUTCOME=failed")
    assert len(failed) == 1, failed
    record = failed[0]
    assert record["JOB"] == str(job["id"]) and record["JOB_KIND"] == "sync"
    assert record["PRIORITY"] == "4" and record["MESSAGE_ID"] == message_id("job failed")
    assert record["ANEMONE_ERROR"].startswith("unreachable")
    assert record["MESSAGE"].startswith(f'job failed job={job["id"]} dest="off site"')
    # every event went the native way; nothing fell back to the stream
    ours = journal.records("SYSLOG_IDENTIFIER=anemoned")
    assert ours and all(r["_TRANSPORT"] == "journal" for r in ours)
    assert len(journal.records(f"MESSAGE_ID={message_id('job started')}", f"JOB={job['id']}")) == 1
    assert daemon.stop() == 0


def as_unit(daemon: DaemonProcess) -> list[str]:
    return accounts.setpriv_prefix(accounts.DAEMON_ACCOUNT) if daemon.as_root else []
