"""Real local accounts for the tests and the benchmark: the daemon's own
user (run as the unit runs it) and one account per user tree.

Accounts made here are system accounts without a home or a shell, named
with the `anemt-` prefix, and removed by remove_all() (the test session
and the bench call it when they end)."""
from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

DAEMON_ACCOUNT = "anemone-test"
PREFIX = "anemt-"
#: The unit's capabilities (systemd/anemoned.service), for setpriv.
UNIT_CAPS = "setuid,setgid,kill,setpcap"
_made: set[str] = set()
_groups: set[str] = set()


def ensure(name: str) -> pwd.struct_passwd:
    """The account `name`, created if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    _made.add(name)
    return pwd.getpwnam(name)


def ensure_group(name: str) -> grp.struct_group:
    """The group `name`, created if missing (removed by remove_all)."""
    try:
        return grp.getgrnam(name)
    except KeyError:
        pass
    subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
    _groups.add(name)
    return grp.getgrnam(name)


def for_tree(tree_name: str) -> pwd.struct_passwd:
    """The account that owns users_dir/<tree_name> in the tests: not named
    like the tree (an account named like the tree with another uid would
    make the daemon skip it, by design)."""
    safe = re.fullmatch(r"[a-z0-9_-]{1,20}", tree_name)
    suffix = tree_name if safe else hashlib.sha1(tree_name.encode()).hexdigest()[:12]
    return ensure(PREFIX + suffix)


def remove_all() -> None:
    for name in sorted(_made):
        # what a test left running as the account (a user's stopped reader)
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", name], capture_output=True)
    _made.clear()
    for name in sorted(_groups):
        subprocess.run(["groupdel", name], capture_output=True)
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
