"""Real local accounts for the tests and the benchmark: the daemon's own
user (run as the unit runs it) and one account per user tree.

Accounts made here are system accounts without a home or a shell, named
with the `anemt-` prefix, and removed by remove_all() (the test session
and the bench call it when they end).

Several processes may make accounts at once (pytest-xdist's workers, see
tests/conftest.py): every change to the account databases made here is
done holding one lock (`locked`), and a worker writes down what it made in
the run's registry file (REGISTRY_ENV) for the process that ends the run to
remove, once every worker is done."""
from __future__ import annotations

import contextlib
import fcntl
import grp
import hashlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator

DAEMON_ACCOUNT = "anemone-test"
PREFIX = "anemt-"
#: The unit's capabilities (systemd/anemoned.service), for setpriv.
UNIT_CAPS = "setuid,setgid,kill,setpcap"
#: Names a file where each process of one test run writes down the accounts
#: and groups it made ("user NAME" / "group NAME" lines).
REGISTRY_ENV = "ANEMONE_TESTBED_ACCOUNTS"
_made: set[str] = set()
_groups: set[str] = set()
_lock = threading.RLock()
_lock_fd: int | None = None
_lock_depth = 0


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """No other process makes, changes or removes an account through this
    module while this is held. Two workers making the same account at once
    would both run useradd (the second fails), and a test that compares two
    reads of the account databases needs them unchanged in between.
    Re-entrant within a process."""
    global _lock_fd, _lock_depth
    with _lock:
        if _lock_depth == 0:
            where = Path("/run" if os.getuid() == 0 else tempfile.gettempdir())
            fd = os.open(where / f"anemone-testbed-accounts-{os.getuid()}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            _lock_fd = fd
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
            if _lock_depth == 0 and _lock_fd is not None:
                os.close(_lock_fd)  # releases the flock
                _lock_fd = None


def share_registry() -> None:
    """From now on this process and those it starts afterwards (test
    workers inherit the environment) write down what they make in one file,
    and remove_all() here removes what any of them made."""
    if not os.environ.get(REGISTRY_ENV):
        # made by the first account written down: a run that makes none
        # (not root, or `pytest --collect-only`) leaves nothing behind
        name = f"anemone-testbed-accounts-{os.getpid()}-{secrets.token_hex(8)}.made"
        os.environ[REGISTRY_ENV] = str(Path(tempfile.gettempdir()) / name)


def _record(kind: str, name: str) -> None:
    (_made if kind == "user" else _groups).add(name)
    registry = os.environ.get(REGISTRY_ENV)
    if registry:
        fd = os.open(registry, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"{kind} {name}\n")


def ensure(name: str) -> pwd.struct_passwd:
    """The account `name`, created if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    with locked():
        try:
            return pwd.getpwnam(name)  # another process made it meanwhile
        except KeyError:
            pass
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
        _record("user", name)
    return pwd.getpwnam(name)


def ensure_group(name: str) -> grp.struct_group:
    """The group `name`, created if missing (removed by remove_all)."""
    try:
        return grp.getgrnam(name)
    except KeyError:
        pass
    with locked():
        try:
            return grp.getgrnam(name)
        except KeyError:
            pass
        subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
        _record("group", name)
    return grp.getgrnam(name)


def add_to_group(account: str, group: str) -> None:
    """Make `account` a member of `group` (usermod -a -G), under the lock."""
    with locked():
        subprocess.run(["usermod", "-a", "-G", group, account], check=True, capture_output=True)


def for_tree(tree_name: str) -> pwd.struct_passwd:
    """The account that owns users_dir/<tree_name> in the tests: not named
    like the tree (an account named like the tree with another uid would
    make the daemon skip it, by design). Each pytest-xdist worker has its
    own (anemt-gw0-alice): a test in which a user signals every process of
    hers (kill(-1, ...)) must not reach another worker's readers."""
    safe = re.fullmatch(r"[a-z0-9_-]{1,20}", tree_name)
    suffix = tree_name if safe else hashlib.sha1(tree_name.encode()).hexdigest()[:12]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return ensure(PREFIX + (f"{worker}-" if re.fullmatch(r"gw\d{1,3}", worker) else "") + suffix)


def remove_all() -> None:
    """Remove the accounts and groups this process made, and those written
    down in the run's registry (which ends with this)."""
    with locked():
        users, groups = set(_made), set(_groups)
        registry = os.environ.pop(REGISTRY_ENV, None)
        if registry:
            with contextlib.suppress(OSError):
                for line in Path(registry).read_text().splitlines():
                    kind, _, name = line.partition(" ")
                    (users if kind == "user" else groups).add(name)
                os.unlink(registry)
        for name in sorted(users):
            # what a test left running as the account (a user's stopped reader)
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
            subprocess.run(["userdel", name], capture_output=True)
        for name in sorted(groups):
            subprocess.run(["groupdel", name], capture_output=True)
        _made.clear()
        _groups.clear()


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """root and everything under it to uid:gid, never following links."""
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def setpriv_prefix(account: str) -> list[str]:
    """argv prefix that starts a program the way the unit does: as account,
    with the unit's capabilities and nothing else, no new privileges."""
    caps = ",".join("+" + c for c in UNIT_CAPS.split(","))
    return [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={account}", f"--regid={account}", "--init-groups",
            f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}", f"--bounding-set=-all,{caps}", "--no-new-privs",
            "--"]
