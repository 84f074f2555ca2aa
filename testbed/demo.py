"""The README's demo: anemoned backing up demo users to a real OpenSSH
server on a loopback port, driven only through anemonectl, exactly as an
operator would follow the seed document's steps.

Everything lives in ./demo-run (recreated each time); nothing outside it is
touched, except that when run as root the SFTP server logs in as the
unprivileged account `anemone-sftp` (created if missing), like the seed's
dedicated backup user.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from testbed import accounts
from testbed.daemon import DaemonProcess
from testbed.sshd import SshServer

ROOT = Path(__file__).resolve().parent.parent / "demo-run"


def make_demo_users(users_dir: Path) -> None:
    files = {
        "alice": {"documents/report.txt": "Quarterly report\n" * 200, "photos/cat.jpg": "\xff" * 5000},
        "bob": {"projects/anemone/notes.md": "# notes\n" * 50, "todo list.txt": "buy milk\n"},
        "charlie": {"data/measurements.csv": "t,v\n" + "".join(f"{i},{i * i}\n" for i in range(2000))},
    }
    for user, tree in files.items():
        for rel, text in tree.items():
            path = users_dir / user / "backup" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run(daemon: DaemonProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    print(f"$ anemonectl {shlex.join(args)}", flush=True)
    res = daemon.ctl(*args, stdin=stdin, timeout_s=600)
    sys.stdout.write(res.stderr)
    sys.stdout.write(res.stdout)
    sys.stdout.flush()
    return res


def main() -> int:
    shutil.rmtree(ROOT, ignore_errors=True)
    sshd = SshServer(ROOT / "sftp-server")
    daemon = DaemonProcess(ROOT / "anemone", log_level="info")
    make_demo_users(daemon.users_dir)
    step(f"Starting OpenSSH sshd on 127.0.0.1:{sshd.port} as the SFTP destination (user {sshd.user})")
    sshd.start()
    remote = sshd.remote_dir("anemone-backups")
    try:
        step("Starting anemoned (its log follows on stderr)")
        daemon.start(log_to_terminal=True)
        run(daemon, "status")

        step("Step 1: generate the SSH key")
        key = run(daemon, "key", "generate")
        step("Step 2: on the server, the public key goes into authorized_keys")
        sshd.authorize(key.stdout.splitlines()[0])
        print(f"(appended to {sshd.authorized_keys})")

        step("Step 4: add the destination, pinning the server's host key")
        fingerprint = sshd.host_key_fingerprint()
        print(f"(the server's own fingerprint, as `ssh-keygen -lf` prints it on the server: {fingerprint})")
        run(daemon, "dest", "add", "Backup Server FR2", "--host", sshd.host, "--port", str(sshd.port),
            "--user", sshd.user, "--remote-path", str(remote), "--host-key-fingerprint", fingerprint)

        step("Step 5: test the connection")
        if run(daemon, "dest", "test", "Backup Server FR2").returncode != 0:
            return 1

        step("Sync now, with live progress")
        if run(daemon, "sync", "Backup Server FR2", "--wait").returncode != 0:
            return 1

        step("A file changes, one is deleted: the next sync is incremental")
        (daemon.users_dir / "bob/backup/todo list.txt").write_text("buy milk\nwater the plants\n")
        (daemon.users_dir / "alice/backup/photos/cat.jpg").unlink()
        run(daemon, "sync", "Backup Server FR2", "--wait")

        step("alice gets her photos back, into her own tree, written as her (never as the daemon)")
        run(daemon, "restore", "Backup Server FR2", "--user", "alice", "--path", "photos",
            "--to", str(daemon.users_dir / "alice/backup/photos-restored"), "--wait")

        step("The destination and its last sync")
        run(daemon, "dest", "show", "Backup Server FR2")
        run(daemon, "job", "list")
        run(daemon, "status")

        step(f"The remote tree ({remote})")
        for path in sorted(remote.rglob("*")):
            print(f"  {path.relative_to(remote)}{'/' if path.is_dir() else ''}")
        return 0
    finally:
        step("Stopping")
        daemon.stop()
        sshd.cleanup()
        accounts.remove_all()


if __name__ == "__main__":
    sys.exit(main())
