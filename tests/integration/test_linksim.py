"""The link simulator itself (testbed/linksim.py): what it adds is measured
through it, against a local echo server, a sink and the real sshd with the
real rclone. Bounds are tolerant: they check the simulator, not our
product's speed."""
from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from testbed.linksim import LinkSim
from testbed.sshd import SshServer

RCLONE = str(Path(sys.executable).parent / "rclone")


class Server:
    """A threaded TCP server on 127.0.0.1: "echo" answers every byte,
    "sink" counts what it receives and answers with the count on EOF,
    "source" sends `size` bytes as soon as a client connects. Each byte
    "echo" receives has its arrival time kept (`arrivals`)."""

    def __init__(self, mode: str, size: int = 0) -> None:
        self.size = size
        self.arrivals: list[float] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        received = 0
        with conn:
            if self.mode == "source":
                conn.sendall(b"\0" * self.size)
                return
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                received += len(data)
                if self.mode == "echo":
                    self.arrivals.append(time.monotonic())
                    conn.sendall(data)
            if self.mode == "sink":
                conn.sendall(str(received).encode())

    def close(self) -> None:
        self.sock.close()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def rtts(port: int, n: int = 15) -> list[float]:
    """Round trips of a 1-byte request and its answer."""
    out = []
    with connect(port) as s:
        for _ in range(n):
            started = time.monotonic()
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            out.append(time.monotonic() - started)
    return out


def send_bulk(port: int, size: int, result: list[tuple[int, float]]) -> None:
    chunk = b"\0" * 65536
    with connect(port) as s:
        started = time.monotonic()
        sent = 0
        while sent < size:
            s.sendall(chunk[: min(len(chunk), size - sent)])
            sent += min(len(chunk), size - sent)
        s.shutdown(socket.SHUT_WR)
        answer = s.recv(64)  # the sink's count, once everything arrived
        result.append((int(answer), time.monotonic() - started))


def test_round_trip_is_twice_the_delay():
    echo = Server("echo")
    try:
        with LinkSim("127.0.0.1", echo.port) as direct:
            base = statistics.median(rtts(direct.port))
        with LinkSim("127.0.0.1", echo.port, delay_s=0.05) as link:
            measured = statistics.median(rtts(link.port))
        assert 0.1 <= measured <= 0.1 + base + 0.05, (measured, base)
    finally:
        echo.close()


def test_each_direction_has_its_own_one_way_delay():
    """Timed at both ends (one clock: the same machine): a byte takes
    delay_s to the server, and its answer return_delay_s back."""
    echo = Server("echo")
    try:
        with LinkSim("127.0.0.1", echo.port) as direct:
            base = statistics.median(rtts(direct.port))  # this machine's own latency, both ways
        with LinkSim("127.0.0.1", echo.port, delay_s=0.03, return_delay_s=0.07) as link, connect(link.port) as s:
            ups, downs = [], []
            for _ in range(10):
                sent = time.monotonic()
                s.sendall(b"x")
                assert s.recv(1) == b"x"
                back = time.monotonic()
                ups.append(echo.arrivals[-1] - sent)
                downs.append(back - echo.arrivals[-1])
        up, down = statistics.median(ups), statistics.median(downs)
        assert 0.03 <= up <= 0.03 + base + 0.03 and 0.07 <= down <= 0.07 + base + 0.03, (up, down, base)
    finally:
        echo.close()


def test_the_cap_holds_from_the_server_back_too():
    cap = 2_000_000  # bytes per second
    source = Server("source", size=2 * cap)
    try:
        with LinkSim("127.0.0.1", source.port, delay_s=0.01, bytes_per_s=cap) as link, connect(link.port) as s:
            started, received = time.monotonic(), 0
            while received < 2 * cap:
                data = s.recv(65536)
                assert data, received
                received += len(data)
            rate = received / (time.monotonic() - started)
            assert 0.75 * cap <= rate <= 1.1 * cap, rate
            deadline = time.monotonic() + 5  # counted in the simulator's thread, just after it wrote
            while link.down.bytes_forwarded < 2 * cap and time.monotonic() < deadline:
                time.sleep(0.01)
            assert link.down.bytes_forwarded == 2 * cap and link.up.bytes_forwarded == 0
    finally:
        source.close()


def test_throughput_is_the_cap_shared_by_all_connections():
    sink = Server("sink")
    cap = 2_000_000  # bytes per second
    try:
        with LinkSim("127.0.0.1", sink.port, delay_s=0.01, bytes_per_s=cap) as link:
            one: list[tuple[int, float]] = []
            send_bulk(link.port, 3 * cap, one)
            (received, took), = one
            assert received == 3 * cap
            assert 0.75 * cap <= received / took <= 1.1 * cap, received / took
            # Two connections at once share the one link.
            deadline = time.monotonic() + 5
            while link.open_connections and time.monotonic() < deadline:  # the first one's proxy side ends
                time.sleep(0.05)
            link.reset_peak()
            two: list[tuple[int, float]] = []
            threads = [threading.Thread(target=send_bulk, args=(link.port, cap, two)) for _ in range(2)]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            took = time.monotonic() - started
            assert sum(r for r, _ in two) == 2 * cap
            assert 0.75 * cap <= 2 * cap / took <= 1.1 * cap, 2 * cap / took
            assert link.up.bytes_forwarded == 5 * cap
            assert link.peak_connections == 2  # what the bench reports
    finally:
        sink.close()


def test_a_paused_link_forwards_nothing_until_resumed():
    echo = Server("echo")
    try:
        with LinkSim("127.0.0.1", echo.port, delay_s=0.01) as link, connect(link.port) as s:
            s.sendall(b"a")
            assert s.recv(1) == b"a"
            link.pause()
            s.sendall(b"b")
            s.settimeout(1.0)
            try:
                got = s.recv(1)
            except socket.timeout:
                got = b""
            assert got == b"" and link.up.bytes_forwarded == 1  # not even the request went through
            link.resume()
            s.settimeout(10)
            assert s.recv(1) == b"b"
    finally:
        echo.close()


def test_rclone_lists_over_sftp_through_the_link(sshd: SshServer, tmp_path: Path):
    key = sshd.client_key(tmp_path / "key")
    remote = sshd.remote_dir("listed")
    (remote / "inside").mkdir()
    with LinkSim(sshd.host, sshd.port, delay_s=0.02, bytes_per_s=1_000_000) as link:
        known = sshd.known_hosts(tmp_path / "known_hosts", link.port)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
               "RCLONE_CONFIG_DEST_TYPE": "sftp", "RCLONE_CONFIG_DEST_HOST": "127.0.0.1",
               "RCLONE_CONFIG_DEST_PORT": str(link.port), "RCLONE_CONFIG_DEST_USER": sshd.user,
               "RCLONE_CONFIG_DEST_KEY_FILE": str(key), "RCLONE_CONFIG_DEST_KNOWN_HOSTS_FILE": str(known),
               "RCLONE_CONFIG_DEST_SHELL_TYPE": "unix"}
        res = subprocess.run([RCLONE, "lsd", f"dest:{remote}", "--config", ""], env=env, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split()[-1] == "inside"
        assert link.connections >= 1 and link.down.bytes_forwarded > 0
