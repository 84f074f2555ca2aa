"""Which users a sync backs up, skips, or leaves alone because nothing
changed: gathering the local facts (as each user) and planning (pure).

A user's tree is `users_dir/<name>/backup/`. The daemon lists users_dir
itself; everything inside a user's directory is listed with that user's
rights (usertree.scan_many), so nothing here reads a tree with rights its
owner does not have.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

from .destinations import USER_RE
from .identity import Accounts, NotAUser, UserIdentity, tree_identity
from . import scans, usertree
from .usertree import TreeScan

#: Scanners side by side (each lists its share of the trees one by one):
#: one per core of a small NAS.
SCANNERS = 2


@dataclass(frozen=True)
class LocalUser:
    name: str
    backup_dir: Path
    problem: str | None  # why it is not backed up this time, or None
    identity: UserIdentity | None = None
    scan: TreeScan | None = None
    #: the scan got no answer in time: the user may have stopped it
    stalled: bool = False


@dataclass(frozen=True)
class UserState:
    """What the last sync of a user to a destination left (store.user_state)."""

    remote_path: str
    fingerprint: str | None  # None: the last attempt failed
    files: int
    full_at: str | None


@dataclass
class SyncPlan:
    #: users whose tree changed (or whose full sync is due): rclone runs for them
    included: list[LocalUser]
    #: users with nothing to do: same fingerprint as after their last success
    unchanged: list[LocalUser]
    #: users not backed up this time, with the reason (shown per user)
    skipped: dict[str, str]
    #: users whose scan stalled: not backed up, and the job fails
    stalled: dict[str, str]
    #: the remote user directories this sync may change: the included users
    #: and those the operator allowed to become empty or go
    synced: set[str]
    warnings: list[str] = field(default_factory=list)


def safe_user_name(name: str) -> bool:
    return bool(USER_RE.match(name)) and name not in (".", "..")


def discover(users_dir: Path, daemon_uid: int) -> tuple[list[LocalUser], list[str]]:
    """Every sub-directory of users_dir with its owner's identity (or the
    reason it has none), plus warnings for entries that never become remote
    paths. Blocking (directory reads, account look-ups): run in a thread."""
    users: list[LocalUser] = []
    warnings: list[str] = []
    try:
        entries = sorted(os.scandir(users_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return [], [f"users_dir {users_dir} does not exist"]
    accounts = Accounts()
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if not safe_user_name(entry.name):
            warnings.append(f"skipped a user directory with an unsafe name: {entry.name!r}")
            continue
        backup = Path(entry.path) / "backup"
        try:
            users.append(LocalUser(entry.name, backup, None,
                                   tree_identity(Path(entry.path), entry.name, daemon_uid, accounts)))
        except NotAUser as why:
            users.append(LocalUser(entry.name, backup, str(why)))
        except OSError as err:
            users.append(LocalUser(entry.name, backup, f"cannot be read: {err.strerror}"))
    return users, warnings


async def scan_all(users: list[LocalUser], users_dev: int, timeout_s: float) -> list[LocalUser]:
    """Each user with an identity scanned as that user, by SCANNERS scanners
    side by side. A scan that says nothing for timeout_s (the destination's
    stall_timeout) leaves that user out, stalled."""
    todo = [u for u in users if u.identity is not None]
    shares = [todo[i::SCANNERS] for i in range(SCANNERS)]
    results = await asyncio.gather(*(usertree.scan_many([(u.identity, u.backup_dir) for u in share if u.identity],
                                                         users_dev, timeout_s) for share in shares if share))
    scanned: dict[str, LocalUser] = {}
    for share, listed in zip([s for s in shares if s], results):
        for user, result in zip(share, listed):
            if isinstance(result, scans.ScanStalled):
                scanned[user.name] = replace(user, problem=f"backup/ could not be scanned: {result}", stalled=True)
            elif isinstance(result, Exception):
                scanned[user.name] = replace(user, problem=f"backup/ could not be scanned: {result}")
            else:
                scanned[user.name] = replace(user, scan=result, problem=result.problem)
    return [scanned.get(u.name, u) for u in users]


def full_due(state: UserState | None, remote_path: str, full_every: timedelta, now: datetime) -> str | None:
    """Why this user's sync must list the remote (issue 8's rules), or None
    when an incremental sync may do: the first sync to this place, the one
    after a failure, and every full_every."""
    if state is None or state.remote_path != remote_path:
        return "first sync to this place"
    if state.fingerprint is None or state.full_at is None:
        return "the last sync of this user failed"
    if now - datetime.fromisoformat(state.full_at) >= full_every:
        return "full_sync_every"
    return None


def unchanged(user: LocalUser, state: UserState | None, remote_path: str, full_every: timedelta,
              now: datetime) -> bool:
    """Nothing to do for this user: the tree is as it was after the last
    successful sync to this remote path, and no full sync is due."""
    if state is None or user.scan is None or state.fingerprint is None or state.full_at is None:
        return False
    if state.remote_path != remote_path or state.fingerprint != user.scan.fingerprint:
        return False
    return now - datetime.fromisoformat(state.full_at) < full_every


#: what an empty tree says of itself; --allow-empty mirrors only these
EMPTY_ON_PURPOSE = ("no backup/ directory", "backup/ is empty")


def make_plan(users: list[LocalUser], warnings: list[str], remote_users: Iterable[str],
              allow_empty: Iterable[str] = (), states: dict[str, UserState] | None = None, *,
              remote_path: str = "", full: bool = True, full_every: timedelta = timedelta(days=7),
              now: datetime | None = None, must_sync: Iterable[str] = ()) -> SyncPlan:
    """Which users to sync, which to leave alone and which to skip.

    remote_users are the user directories known to exist remotely; a user
    missing from it may still have a remote copy. So an empty backup/ is
    never mirrored unless the operator allows it: it looks like an accident
    when a copy exists, and there is nothing to send when none does. A skip
    is reported (with a warning) when a remote copy is known or the tree
    has a problem worth telling; a user with no backup/ or an empty one and
    no known copy simply has nothing to back up yet, and is not mentioned.
    With full off, a user whose tree is unchanged since their last
    successful sync (same fingerprint, full sync not yet due) is left out,
    unless it is in must_sync (a sync of it began and was never confirmed:
    the remote may differ from what its last success left).
    """
    must = set(must_sync)
    remote = set(remote_users)
    allowed = set(allow_empty)  # the operator said: an empty tree is what I mean
    states = states or {}
    included: list[LocalUser] = []
    same: list[LocalUser] = []
    skipped: dict[str, str] = {}
    stalled = {u.name: u.problem or "" for u in users if u.stalled}
    users = [u for u in users if not u.stalled]
    for user in users:
        if user.problem is None or (user.problem == "backup/ is empty" and user.name in allowed):
            if not full and user.problem is None and now is not None and user.name not in must and unchanged(
                    user, states.get(user.name), remote_path, full_every, now):
                same.append(user)
            else:
                included.append(user)
        elif user.name in allowed and user.problem in EMPTY_ON_PURPOSE:
            continue  # mirrored as empty: the sync removes the remote copy
        elif user.name in remote:
            skipped[user.name] = f"{user.problem}; the remote copy is kept as it is"
        elif user.problem not in EMPTY_ON_PURPOSE:
            skipped[user.name] = user.problem
    local_names = {u.name for u in users}
    for name in sorted(remote - local_names - allowed):
        if safe_user_name(name):
            skipped[name] = "no such user directory any more; the remote copy is kept as it is"
    # Allowed to become empty only when that is what the tree says: never a
    # tree that could not be read, has another owner or stalled its scan.
    unsure = set(stalled) | {u.name for u in users if u.problem is not None and u.problem not in EMPTY_ON_PURPOSE}
    synced = {u.name for u in included if u.problem is None} | {n for n in allowed if safe_user_name(n)
                                                                 and n not in unsure}
    included = [u for u in included if u.problem is None]
    return SyncPlan(included, same, skipped, stalled, synced, list(warnings))
