"""A sync run is over when rclone says so: the real rclone, uploading to a
real sshd through testbed/linksim.py, is not waited for while it closes its
SFTP connections (one round trip each) once its last report counted no
error; a run whose report counted one keeps rclone's own exit status, also
when a hostile server makes that report too long to read."""
from __future__ import annotations

import asyncio
from pathlib import Path

from anemoned import rclone
from testbed.files import snapshot, write
from testbed.hostile_sftp import subsystem_command
from testbed.linksim import LinkSim
from testbed.rclone_sftp import RCLONE
from testbed.sshd import SshServer

#: Bounds a run that hangs (a failure), not how fast one goes.
HANG_S = 40


def upload(sshd: SshServer, port: int, key: Path, source: Path, remote: Path, on_record,
           stats: str = "1s") -> rclone.RcloneResult:
    """The real rclone's copy as a sync's runs are made: DEBUG, JSON log,
    settled early."""
    known = sshd.known_hosts(key.parent / "known_hosts", port)
    access = rclone.SftpAccess(sshd.host, port, sshd.user, known, None, key_file=key)
    env = {**rclone.base_env(key.parent), **rclone.option_env(rclone.DEST_REMOTE, rclone.sftp_options(access))}
    args = ["copy", str(source), rclone.dest_path(str(remote)), *rclone.global_args("DEBUG"),
            "--stats", stats, "--stats-log-level", "NOTICE", "--transfers", "4", "--retries", "1"]
    return asyncio.run(asyncio.wait_for(rclone.run(RCLONE, args, env, on_record=on_record, settle_early=True), HANG_S))


def client_key(sshd: SshServer, tmp_path: Path) -> Path:
    (tmp_path / "client").mkdir()
    return sshd.client_key(tmp_path / "client" / "key")


def test_a_clean_run_is_done_at_its_last_report_not_after_closing_its_connections(sshd: SshServer, tmp_path: Path):
    key = client_key(sshd, tmp_path)
    source = tmp_path / "src"
    for i in range(6):
        write(source / f"d{i % 2}/f{i}.txt", f"file {i}\n" * 100)
    remote = sshd.remote_dir("dest")
    with LinkSim(sshd.host, sshd.port, delay_s=0.01) as link:
        def silence_at_the_mark(record):
            # From rclone's shutdown mark on, the link carries nothing: a
            # run waited for until rclone has closed its connections would
            # hang here (each close waits for the server's answer).
            if "go routines active" in str(record.get("msg")):
                link.pause()
        result = upload(sshd, link.port, key, source, remote, silence_at_the_mark)
        link.resume()
    assert result.returncode == 0
    assert snapshot(remote) == snapshot(source)


def reports(records: list[dict]) -> list[int]:
    """The errors each of rclone's reports counted, in order."""
    return [r["stats"]["errors"] for r in records if isinstance(r.get("stats"), dict)]


def test_a_run_whose_report_counts_an_error_keeps_rclones_exit_status(sshd: SshServer, tmp_path: Path):
    key = client_key(sshd, tmp_path)
    source = tmp_path / "src"
    write(source / "open/a.txt", "a\n")
    write(source / "locked/b.txt", "b\n")
    remote = sshd.remote_dir("dest")
    (remote / "locked").mkdir()  # root's: the login user cannot write there
    # 30 ms each way: the handshake alone outlasts the first 100 ms report.
    with LinkSim(sshd.host, sshd.port, delay_s=0.03) as link:
        records: list[dict] = []
        result = upload(sshd, link.port, key, source, remote, records.append, stats="100ms")
    assert result.returncode not in (0, -1)
    # Clean reports came first, and the mark after the last (failing) one.
    assert reports(records)[0] == 0 and reports(records)[-1] > 0
    assert any("go routines active" in str(r.get("msg")) for r in records)
    assert (remote / "open/a.txt").read_text() == "a\n" and not (remote / "locked/b.txt").exists()


class HostileSshServer(SshServer):
    """A real sshd whose sftp subsystem is testbed/hostile_sftp.py."""

    def write_config(self, password_auth: bool = True) -> None:
        super().write_config(password_auth)
        config = self.config.read_text()
        assert "Subsystem sftp internal-sftp" in config
        self.config.write_text(config.replace("Subsystem sftp internal-sftp", f"Subsystem sftp {subsystem_command()}"))


def test_a_report_too_long_to_read_is_not_taken_for_a_clean_one(tmp_path: Path):
    """The server refuses the upload with a huge message: rclone's reports
    after it are too long for the runner to read, and the last one it can
    read is clean. rclone exits 1, and so must the run (it said 0)."""
    server = HostileSshServer(tmp_path / "sshd")
    server.start()
    try:
        key = client_key(server, tmp_path)
        write(tmp_path / "src/alice/thesis.txt", "the only copy\n")
        records: list[dict] = []
        result = upload(server, server.port, key, tmp_path / "src", Path("/dest"), records.append)
    finally:
        server.cleanup()
    assert reports(records) and set(reports(records)) == {0}  # the failing reports were not read
    assert not any(str(r.get("msg")).startswith("Copied") for r in records)
    assert result.returncode not in (0, -1)
