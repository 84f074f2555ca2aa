"""OpenSSH with ChrootDirectory + ForceCommand internal-sftp: the mistakes
an operator makes with it are told as what they are (issue 12, findings
4 and 5)."""
from __future__ import annotations

import os
from typing import Iterator

import pytest

from _servers import add, conn_test, job
from testbed.chroot_sshd import ChrootSshServer
from testbed.daemon import QUICK_FAILURES, DaemonProcess
from testbed.files import write

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="an sshd ChrootDirectory needs root")


@pytest.fixture(scope="module")
def chrooted(tmp_path_factory) -> Iterator[tuple[DaemonProcess, ChrootSshServer]]:
    server = ChrootSshServer(tmp_path_factory.mktemp("chroot-sshd"))
    server.start()
    daemon = DaemonProcess(tmp_path_factory.mktemp("daemon"))
    daemon.start(env=QUICK_FAILURES)
    server.authorize(daemon.ctl_json("key", "generate")["public_key"])
    write(daemon.users_dir / "alice/backup/a.txt", "a")
    yield daemon, server
    daemon.stop()
    daemon.cleanup()
    server.cleanup()


def test_a_chroot_not_owned_by_root_is_not_called_a_network_problem(chrooted):
    daemon, server = chrooted
    add(daemon, server, "broken", server.remote_dir("broken"))
    server.break_chroot()
    try:
        tested = conn_test(daemon, "broken")
        assert tested["class"] == "session refused", tested
        hints = " ".join(tested["hints"])
        assert "bad ownership or modes for chroot directory" in hints and "firewall" not in hints
        synced = job(daemon, "sync", "broken")
        assert synced["state"] == "failed" and synced["error"].startswith("session refused:"), synced
        usage = daemon.ctl_json("dest", "usage", "broken", expect=1)
        assert usage["state"] == "failed" and usage["error"].startswith("session refused:"), usage
    finally:
        server.fix_chroot()
    assert conn_test(daemon, "broken")["ok"]


def test_the_chroot_root_is_never_to_be_chowned(chrooted):
    daemon, server = chrooted
    add(daemon, server, "top", "/")
    tested = conn_test(daemon, "top")
    assert tested["class"] == "remote path not writable", tested
    hints = " ".join(tested["hints"])
    assert f"chown {server.user} /" not in hints.replace(f"chown {server.user} CHROOT/backups", "")
    assert "root" in hints and "inside" in hints and "/backups" in hints


def test_a_path_given_as_the_host_sees_it_is_said_to_be_inside_the_chroot(chrooted):
    daemon, server = chrooted
    on_host = server.remote_dir("hostview")
    add(daemon, server, "hostview", str(on_host))
    tested = conn_test(daemon, "hostview")
    assert tested["class"] == "remote path missing", tested
    hints = " ".join(tested["hints"])
    assert "--remote-path /backups/hostview" in hints and "mkdir -p" not in hints
    # and the suggestion is right
    daemon.ctl_json("dest", "edit", "hostview", "--remote-path", "/backups/hostview")
    assert conn_test(daemon, "hostview")["ok"]
