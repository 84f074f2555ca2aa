"""Fixtures for the real-server tests (issue 12): one server of each kind
per test module, and one daemon per server, shared by the module's tests
(each test uses its own destination and remote directory); and the real
spawner, for the tests of what it starts."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from anemoned import spawner, userproc
from testbed.chroot_sshd import ChrootSshServer
from testbed.daemon import QUICK_FAILURES, DaemonProcess
from testbed.proftpd import ProftpdServer, unavailable as proftpd_unavailable
from testbed.rclone_sftp import RcloneSftpServer
from testbed.sshd import SshServer

KINDS = ("openssh", "openssh-chroot", "proftpd", "rclone-serve")


@pytest.fixture
def spawned() -> Iterator[tuple[userproc.Spawner, int]]:
    """The daemon's side of the spawner, installed as the daemon installs
    it, and the spawner process's pid (forked as the daemon forks it)."""
    sock, pid = spawner.launch()
    client = userproc.Spawner(sock)
    userproc.install(client)
    yield client, pid
    client.close()
    os.waitpid(pid, 0)


def make_server(kind: str, workdir: Path) -> Any:
    if kind == "openssh":
        return SshServer(workdir)
    if kind == "openssh-chroot":
        if os.getuid() != 0:
            pytest.skip("an sshd ChrootDirectory needs root")
        return ChrootSshServer(workdir)
    if kind == "proftpd":
        why = proftpd_unavailable()
        if why:
            pytest.skip(why)
        return ProftpdServer(workdir)
    return RcloneSftpServer(workdir)


@pytest.fixture(scope="module", params=KINDS)
def real_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = make_server(request.param, tmp_path_factory.mktemp(request.param))
    server.kind = request.param
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def served(real_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Any]]:
    """A daemon whose key the server accepts, in the form the server reads:
    ProFTPD gets `key show --format rfc4716`, as the README tells operators."""
    daemon = DaemonProcess(tmp_path_factory.mktemp("daemon"))
    daemon.start(env=QUICK_FAILURES)
    daemon.ctl_json("key", "generate")
    if real_server.kind == "proftpd":
        shown = daemon.ctl("key", "show", "--format", "rfc4716")
        assert shown.returncode == 0, shown.stderr
        real_server.authorize(shown.stdout)
    else:
        real_server.authorize(daemon.ctl_json("key", "show")["public_key"])
    yield daemon, real_server
    daemon.stop()
    daemon.cleanup()
