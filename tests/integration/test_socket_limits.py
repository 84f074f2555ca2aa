"""Hostile and broken clients get errors or are dropped; others keep being served."""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from testbed.daemon import DaemonProcess, read_reply


def _connect(daemon: DaemonProcess) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(daemon.socket))
    return s


def _ctl_as_nobody(daemon: DaemonProcess) -> subprocess.CompletedProcess[str]:
    """The real anemonectl, run as uid/gid 65534. The interpreter may live
    where nobody cannot read (/root/.pyenv), so the client is imported as
    root and privileges are dropped before it connects."""
    code = (
        "import os, sys; from anemonectl.cli import main, build_parser; build_parser(); "
        "os.setgroups([]); os.setgid(65534); os.setuid(65534); "
        f"sys.exit(main(['--socket', {str(daemon.socket)!r}, 'status']))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)


def _status_time(daemon: DaemonProcess) -> float:
    t = time.monotonic()
    reply = daemon.rpc("status")
    assert "result" in reply
    return time.monotonic() - t


@pytest.mark.parametrize("payload, code", [
    (b"{{{{\n", -32700),
    (b'"just a string"\n', -32600),
    (b'{"jsonrpc":"2.0","id":5,"method":"no.such"}\n', -32601),
    (b'{"jsonrpc":"2.0","id":6,"method":"status","params":{"surprise":1}}\n', -32602),
    (b'{"jsonrpc":"2.0","id":7,"method":"dest.show","params":{"name":42}}\n', -32602),
])
def test_malformed_requests_get_json_rpc_errors(daemon, payload, code):
    with _connect(daemon) as s:
        s.sendall(payload)
        reply = read_reply(s)
        assert reply["error"]["code"] == code
        # the connection stays usable after an error
        s.sendall(b'{"jsonrpc":"2.0","id":8,"method":"status"}\n')
        assert read_reply(s)["id"] == 8


def test_oversized_request_is_refused_and_closed(daemon):
    with _connect(daemon) as s:
        try:
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status","params":{"x":"' + b"a" * (2 * 1024 * 1024))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may close before we finish sending
        reply = read_reply(s)
        assert reply["error"]["code"] == -32002
        try:
            end = s.recv(1)
        except ConnectionResetError:  # closed with the rest of our request unread: Linux says reset, not EOF
            end = b""
        assert end == b""  # closed
    assert _status_time(daemon) < 1.0


def test_silent_and_non_reading_clients_do_not_stall_others(daemon):
    silent = [_connect(daemon) for _ in range(50)]
    # A client that sends many requests and never reads its replies.
    hog = _connect(daemon)
    hog.setblocking(False)
    request = b'{"jsonrpc":"2.0","id":1,"method":"status"}\n'
    try:
        for _ in range(20000):
            hog.send(request)
    except BlockingIOError:
        pass
    for _ in range(5):
        assert _status_time(daemon) < 1.0
    assert daemon.ctl("status").returncode == 0
    for s in silent + [hog]:
        s.close()


@pytest.fixture
def open_daemon(make_daemon, tmp_path_factory):
    """A daemon whose socket directory other users can traverse."""
    if os.getuid() != 0:
        pytest.skip("needs root to run a client as another uid")
    public = Path(tempfile.mkdtemp(prefix="anemone-sock-"))
    public.chmod(0o755)
    yield make_daemon(socket=str(public / "anemoned.sock"))
    shutil.rmtree(public, ignore_errors=True)


def test_unauthorised_uid_is_refused_even_when_the_file_mode_lets_it_in(open_daemon):
    daemon = open_daemon
    # Simulate a too-permissive socket file: SO_PEERCRED is the real gate.
    os.chmod(daemon.socket, 0o666)
    res = _ctl_as_nobody(daemon)
    assert res.returncode == 3, res.stderr
    assert "permission denied" in res.stderr
    assert "refused control connection" in daemon.log_text()
    assert _status_time(daemon) < 1.0


def test_socket_file_mode_keeps_other_users_out(open_daemon):
    res = _ctl_as_nobody(open_daemon)
    assert res.returncode == 3 and "permission denied" in res.stderr


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_ten_mebibyte_request_and_500_clients_at_once_stay_bounded(daemon):
    assert daemon.proc is not None
    pid = daemon.proc.pid
    rss_before = _rss_kib(pid)

    # A 10 MiB request: refused with REQUEST_TOO_LARGE, the connection closed.
    with _connect(daemon) as s:
        chunk = b"x" * (1024 * 1024)
        try:
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status","params":{"x":"')
            for _ in range(10):
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert read_reply(s)["error"]["code"] == -32002

    # 500 clients connected at once, each asking for status, while a good
    # client keeps getting answers in under a second.
    clients = [_connect(daemon) for _ in range(500)]
    for i, c in enumerate(clients):
        c.sendall(json.dumps({"jsonrpc": "2.0", "id": i, "method": "status"}).encode() + b"\n")
    assert _status_time(daemon) < 1.0
    answered = 0
    for i, c in enumerate(clients):
        reply = read_reply(c)
        assert reply["id"] == i and "result" in reply
        answered += 1
        c.close()
    assert answered == 500
    assert _status_time(daemon) < 1.0
    # Memory stays bounded: a few MiB of buffers, not the 10 MiB sent.
    assert _rss_kib(pid) - rss_before < 40 * 1024
