"""Every remote operation ends in bounded time, even against a server that
accepts the connection and then says nothing (issue 11, finding 6)."""
from __future__ import annotations

import socket
import threading
import time
from typing import Any

from testbed.daemon import DaemonProcess
from testbed.sshd import SshServer


class SilentServer:
    """Accepts every connection on 127.0.0.1:port and never writes a byte."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # kept open, never answered

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_listings_and_usage_end_against_a_silent_server(daemon: DaemonProcess, sshd: SshServer):
    sshd.authorize(daemon.ctl_json("key", "generate")["public_key"])
    (daemon.users_dir / "alice/backup").mkdir(parents=True)
    (daemon.users_dir / "alice/backup/f.txt").write_text("x")
    daemon.add_destination("d", sshd, sshd.remote_dir("r"))
    assert daemon.ctl_json("sync", "d", "--wait")["state"] == "succeeded"
    sshd.stop()
    silent = SilentServer(sshd.port)
    results: dict[str, Any] = {}

    def timed(name: str, *args: str) -> None:
        started = time.monotonic()
        res = daemon.ctl(*args, timeout_s=400)
        results[name] = (res.returncode, res.stderr + res.stdout, time.monotonic() - started)

    try:
        usage_job = daemon.rpc("dest.usage", {"name": "d"})["result"]
        threads = [threading.Thread(target=timed, args=("list", "restore", "d", "--user", "alice", "--list")),
                   threading.Thread(target=timed, args=("versions", "dest", "versions", "d"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(400)
        usage = _wait(daemon, usage_job["id"])
        assert silent.accepted, "the daemon never reached the silent server"
    finally:
        silent.close()
    for name in ("list", "versions"):
        code, text, took = results[name]
        # Failed (exit 1), said why, well before anemonectl stopped waiting.
        assert code == 1 and "timeout" in text, (name, code, text)
        assert took < 100, (name, took)
    assert usage["state"] == "failed" and usage["error"].startswith("timeout"), usage
    assert "result" in daemon.rpc("status")


def _wait(daemon: DaemonProcess, job_id: int, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = daemon.rpc("job.show", {"id": job_id})["result"]
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout_s} s")
