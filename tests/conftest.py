"""Shared fixtures: the real daemon process and a real loopback sshd."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from testbed import accounts
from testbed.daemon import QUICK_FAILURES, DaemonProcess
from testbed.sshd import SshServer


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Factory: make_daemon(**config) -> a started DaemonProcess."""
    started: list[DaemonProcess] = []

    def make(start: bool = True, name: str = "daemon", **config: Any) -> DaemonProcess:
        d = DaemonProcess(tmp_path / name, **config)
        started.append(d)
        if start:
            d.start(env=QUICK_FAILURES)
        return d

    yield make
    for d in started:
        d.stop()
        d.cleanup()


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return make_daemon()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    server = SshServer(tmp_path / "sshd")
    server.start()
    yield server
    server.cleanup()


def pytest_configure(config: pytest.Config) -> None:
    """The process that runs the session (with pytest-xdist, the controller,
    before it starts the workers) opens the run's registry of accounts."""
    if not hasattr(config, "workerinput"):
        accounts.share_registry()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Accounts made for the tests go when the tests end: every worker's,
    removed once, by the controller, after all the workers are done (a
    worker that finishes first must not remove an account another still
    uses)."""
    if not hasattr(session.config, "workerinput"):
        accounts.remove_all()
