"""The README's demo: anemoned backing up demo users to a real OpenSSH
server on a loopback port, driven only through anemonectl.

Everything lives in a throwaway directory (./demo-run, recreated each time);
nothing outside it is touched.
"""
from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

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


def run(daemon: DaemonProcess, *args: str, stdin: str | None = None) -> int:
    print(f"$ anemonectl {shlex.join(args)}", flush=True)
    res = daemon.ctl(*args, stdin=stdin, timeout_s=600)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    return res.returncode


def main() -> int:
    shutil.rmtree(ROOT, ignore_errors=True)
    sshd = SshServer(ROOT / "sftp-server")
    daemon = DaemonProcess(ROOT / "anemone", log_level="info")
    make_demo_users(daemon.users_dir)
    remote = ROOT / "remote-backups"
    remote.mkdir()
    step(f"Starting OpenSSH sshd on 127.0.0.1:{sshd.port} (the SFTP destination)")
    sshd.start()
    try:
        step("Starting anemoned (its log follows on stderr)")
        daemon.start(log_to_terminal=True)
        step("Daemon status")
        code = run(daemon, "status")
        run(daemon, "status", "--json")
        return code
    finally:
        step("Stopping")
        daemon.stop()
        sshd.stop()


if __name__ == "__main__":
    sys.exit(main())
