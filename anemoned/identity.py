"""Who a user's tree belongs to, and the rights the daemon uses for it.

The identity of `users_dir/<name>` is the owner of its `backup/` directory
(or, when the daemon may not look inside `<name>/`, of `<name>/` itself; the
scan run as that owner then checks that `backup/` is really theirs). Every
process that reads the tree, or writes a restore into a place that user
owns, runs with that account's uid, primary gid and supplementary groups,
and no capabilities.

Refused, so that nobody can borrow rights or pose as somebody else:
- an owner that is root or the daemon's own user;
- an owner uid with no account (its groups would be unknown, and the
  user's sftp-server needs an account to run);
- a tree named after an existing account that belongs to a different uid
  (bob's tree in `users_dir/alice/` would land in alice's remote copy).
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class UserIdentity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    account: str  # the passwd name of uid

    def popen_args(self) -> dict[str, Any]:
        """subprocess/asyncio keyword arguments that start a process with
        exactly these rights (setgroups, setregid, setreuid in the child,
        before exec; no Python code runs between fork and exec)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


class NotAUser(Exception):
    """The path is not backed up (or restored into) as a user; says why."""


class Accounts:
    """The account databases as one discovery run sees them.

    Each getpwuid/getpwnam/getgrouplist call on the local files reads
    /etc/passwd or /etc/group from the top: once per user, that is
    quadratic in the number of accounts (2,000 users: seconds per sync).
    When passwd and group come from local sources only (nsswitch.conf:
    files, systemd), both are read once here and looked up in memory, with
    the same answers (a test compares them for every account). Other
    sources (LDAP, SSSD) may not list everything they know, so then every
    lookup is asked of the system as before."""

    def __init__(self, nsswitch: Path | None = Path("/etc/nsswitch.conf")) -> None:
        """nsswitch None: ask the system every time (single lookups)."""
        self.local = nsswitch is not None and all(set(_sources(nsswitch, db)) <= {"files", "systemd"} for db in ("passwd", "group"))
        self.by_uid: dict[int, pwd.struct_passwd] = {}
        self.by_name: dict[str, pwd.struct_passwd] = {}
        self.member_of: dict[str, set[int]] = {}
        if self.local:
            for pw in pwd.getpwall():
                self.by_uid.setdefault(pw.pw_uid, pw)
                self.by_name.setdefault(pw.pw_name, pw)
            for gr in grp.getgrall():
                for member in gr.gr_mem:
                    self.member_of.setdefault(member, set()).add(gr.gr_gid)

    def getpwuid(self, uid: int) -> pwd.struct_passwd:
        return self.by_uid[uid] if self.local else pwd.getpwuid(uid)

    def getpwnam(self, name: str) -> pwd.struct_passwd:
        return self.by_name[name] if self.local else pwd.getpwnam(name)

    def groups(self, pw: pwd.struct_passwd) -> tuple[int, ...]:
        if self.local:
            return tuple(sorted(self.member_of.get(pw.pw_name, set()) | {pw.pw_gid}))
        return tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))


def _sources(nsswitch: Path, database: str) -> list[str]:
    """The sources of a database in nsswitch.conf (["unknown"] when it
    cannot be read: then nothing is assumed local)."""
    try:
        text = nsswitch.read_text()
    except OSError:
        return ["unknown"]
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == database:
            return [w for w in value.split("#")[0].split() if not w.startswith("[")] or ["unknown"]
    return ["files"]  # glibc's default for a database not named


def account_identity(uid: int, daemon_uid: int, accounts: Accounts | None = None) -> UserIdentity:
    """The identity of an owner uid; raises NotAUser when it may not be used."""
    if uid == 0:
        raise NotAUser("it belongs to root; only users' own files are backed up as a user")
    if uid == daemon_uid:
        raise NotAUser("it belongs to the daemon's own user")
    accounts = accounts or Accounts(nsswitch=None)
    try:
        pw = accounts.getpwuid(uid)
    except KeyError:
        raise NotAUser(f"its owner uid {uid} has no account") from None
    return UserIdentity(uid, pw.pw_gid, accounts.groups(pw), pw.pw_name)


def tree_identity(user_dir: Path, name: str, daemon_uid: int, accounts: Accounts | None = None) -> UserIdentity:
    """The identity that backs up `user_dir/backup` (user_dir is
    users_dir/name, already known to be a real directory)."""
    backup = user_dir / "backup"
    try:
        st = backup.lstat()
    except FileNotFoundError:
        raise NotAUser("no backup/ directory") from None
    except PermissionError:
        st = user_dir.lstat()  # the scan, run as this owner, checks backup/ itself
    else:
        if stat.S_ISLNK(st.st_mode):
            raise NotAUser("backup/ is a symbolic link; it is not followed")
        if not stat.S_ISDIR(st.st_mode):
            raise NotAUser("backup/ is not a directory")
    accounts = accounts or Accounts(nsswitch=None)
    identity = account_identity(st.st_uid, daemon_uid, accounts)
    try:
        named = accounts.getpwnam(name)
    except KeyError:
        return identity
    if named.pw_uid != st.st_uid:
        raise NotAUser(f"an account named {name} exists (uid {named.pw_uid}) but backup/ belongs to uid "
                       f"{st.st_uid} ({identity.account}); skipped so that nobody can pose as another user")
    return identity
