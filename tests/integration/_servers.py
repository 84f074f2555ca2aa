"""Helpers for the real-server tests (issue 12)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testbed.daemon import DaemonProcess


def add(daemon: DaemonProcess, server: Any, name: str, remote: Path | str) -> str:
    """`dest add NAME` for a directory of the server (a host Path, or the
    path as the client sees it), the host key pinned by its fingerprint;
    returns the remote path given."""
    path = server.client_path(remote) if isinstance(remote, Path) else remote
    daemon.add_destination(name, server, path)
    return path


def job(daemon: DaemonProcess, *args: str) -> dict[str, Any]:
    """Run a job command with --wait and return the finished job (0 or 1)."""
    wait = [] if args[:2] == ("dest", "usage") else ["--wait"]  # usage always waits
    res = daemon.ctl(*args, *wait, "--json", timeout_s=300)
    assert res.returncode in (0, 1), f"{args}: {res.returncode} {res.stderr}"
    return json.loads(res.stdout)


def conn_test(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    res = daemon.ctl("dest", "test", name, "--json", timeout_s=60)
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)
