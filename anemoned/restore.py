"""Getting files back: restore jobs, and listing what can be restored.

A restore copies (never syncs: nothing local is ever deleted) the user's
remote backup, a sub-path of it, or the state kept in a versions folder,
into a target directory (restore_job.py runs it). Modification times come
back with the files. Here: checking what a restore asks for, and the
listings of what can be restored.
"""
from __future__ import annotations

import asyncio
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from . import rclone
from .identity import NotAUser, UserIdentity, account_identity, tree_identity
from .errors import Conflict, InvalidField, NotFound, OperationFailed
from .users import safe_user_name
from .versions import parse_version_folder

LIST_LIMIT = 10_000
#: Whole-run bounds of the listings, each under the time anemonectl waits
#: for the answer (300 s for restore --list, 120 s for dest versions).
LIST_TIMEOUT_S = 240.0
VERSIONS_TIMEOUT_S = 90.0


def check_subpath(value: str) -> list[str]:
    """A path inside a user's tree as its parts; raises naming `path`."""
    if any(ord(c) < 32 for c in value) or "\x7f" in value:
        raise InvalidField("path", "must not contain control characters")
    parts = [p for p in PurePosixPath(value).parts if p not in ("/",)]
    if any(p in ("..", ".") for p in parts):
        raise InvalidField("path", "must stay inside the user's tree (no '.' or '..')")
    return parts


def check_user(value: str) -> str:
    if not safe_user_name(value):
        raise InvalidField("user", "must be a user name as in users_dir")
    return value


def check_version(value: str) -> str:
    if parse_version_folder(value) is None:
        raise InvalidField("version", "must be a versions folder name as `dest versions` lists (2026-11-27T083015Z)")
    return value


@dataclass(frozen=True)
class RestoreTarget:
    path: Path
    #: who writes it: the user who owns the place, or None for the daemon
    #: (a place no user owns: the daemon creates the directory itself)
    identity: UserIdentity | None
    exists: bool


def _conflict(message: str) -> Conflict:
    return Conflict(f"to: {message}", field="to")


def check_target(value: str, overwrite: bool, owner: UserIdentity | None, user_dir: Path, restore_root: Path,
                 daemon_uid: int | None = None) -> RestoreTarget:
    """The restore target, and with whose rights it is written. Blocking
    (lstat, account look-ups): call from a thread.

    Two kinds of places, nothing else:
    - inside the restored user's own directory (`user_dir`, that is
      users_dir/<user>), belonging to that user (`owner`, the owner of
      their tree): written as that user. Restoring alice's files into a
      place of bob's would hand them to bob; into another account's place
      (a system account's, say) would write as it.
    - inside `restore_root` (data_dir/restore): a new directory the daemon
      creates itself, mode 0700, so nobody can plant a symbolic link in
      it; with --overwrite, one an earlier restore made there. Never the
      daemon's own files (certs/...).
    Empty or absent unless overwrite."""
    if not value.startswith("/") or any(ord(c) < 32 for c in value):
        raise InvalidField("to", "must be an absolute directory path")
    daemon_uid = os.getuid() if daemon_uid is None else daemon_uid
    target = Path(os.path.normpath(value))
    in_user_dir = target.is_relative_to(user_dir) and target != user_dir
    if not in_user_dir and not (target.is_relative_to(restore_root) and target != restore_root):
        raise InvalidField("to", f"must be inside the user's own directory ({user_dir}) or inside {restore_root} "
                             "(the daemon then creates it, mode 0700)")
    place = target
    while True:
        try:
            st = place.lstat()
            break
        except FileNotFoundError:
            place = place.parent
        except OSError as err:
            raise InvalidField("to", f"{place} cannot be examined: {err.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise InvalidField("to", f"{place} is a symbolic link; name the real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidField("to", f"{place} exists and is not a directory")
    exists = place == target
    try:
        identity: UserIdentity | None = account_identity(st.st_uid, daemon_uid)
    except NotAUser:
        identity = None
    if in_user_dir:
        if identity is None or owner is None or owner.uid != identity.uid:
            who = owner.account if owner else "the user"
            raise _conflict(f"{place} does not belong to {who}; restoring there would give these files to someone "
                            "else. Restore into a directory the user owns, or into a new directory inside "
                            f"{restore_root}")
    else:
        if identity is not None:
            raise _conflict(f"{place} belongs to {identity.account}; restores inside {restore_root} go into "
                            "directories the daemon makes")
        _check_daemon_place(place, daemon_uid)
        if exists and (st.st_uid != daemon_uid or st.st_mode & 0o077):
            raise _conflict(f"{target} exists and was not made by the daemon; name a new directory (the daemon "
                            "creates it, mode 0700, so that nobody else can plant anything in it)")
        if not exists and place != target.parent:
            raise InvalidField("to", f"{target.parent} does not exist; the daemon creates only the last directory")
    if exists and not overwrite and any(target.iterdir()):
        raise _conflict(f"{target} is not empty; choose an empty directory, or pass "
                        "--overwrite to write into it (files there with the same names are replaced)")
    return RestoreTarget(target, identity, exists)


def _check_daemon_place(place: Path, daemon_uid: int) -> None:
    """Every directory from / down to place is root's or the daemon's, and
    nobody else may rename things in it (not writable by others, or
    sticky like /tmp)."""
    for directory in [place, *place.parents]:
        st = directory.lstat()
        if st.st_uid not in (0, daemon_uid) or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            raise _conflict(f"{directory} may be changed by other users; restore somewhere only root or the "
                            "daemon can write")


def restorer_identity(users_dir: Path, user: str, daemon_uid: int) -> UserIdentity | None:
    """The account whose files a restore of `user` brings back: the owner
    of their tree; None when there is none (then only a place of the
    daemon's can be restored into). Never any other account of that name:
    a system account has no tree to get back."""
    try:
        return tree_identity(users_dir / user, user, daemon_uid)
    except (NotAUser, OSError):
        return None


def remote_source(remote_path: str, user: str, parts: list[str], version: str | None) -> str:
    base = ("versions", version, user) if version else ("backup", user)
    return rclone.dest_path(remote_path, *base, *parts)


async def _listing(binary: str, args: list[str], env: dict[str, str], timeout_s: float, what: str,
                   on_record: Callable[[dict[str, Any]], None] | None = None) -> rclone.RcloneResult:
    """A listing run an operator waits on: a silent server is given up on
    after rclone.QUICK_IDLE_TIMEOUT_S, and the whole run after timeout_s
    (under anemonectl's own wait for the answer)."""
    try:
        return await rclone.run(binary, [*args, *rclone.global_args("NOTICE"), *rclone.quick_args()], env,
                                capture_stdout=True, timeout_s=timeout_s, on_record=on_record)
    except asyncio.TimeoutError:
        raise OperationFailed(f"{rclone.TIMEOUT}: {what} did not finish within {timeout_s:.0f} s",
                              details={"class": rclone.TIMEOUT}) from None


async def list_restorable(binary: str, dest_env: dict[str, str], remote_path: str, user: str, parts: list[str],
                          version: str | None) -> dict[str, Any]:
    source = remote_source(remote_path, user, parts, version)
    result = await _listing(binary, ["lsjson", "-R", "--no-mimetype", source], dest_env, LIST_TIMEOUT_S,
                            "the listing (try a sub-path with --path)")
    if not result.ok:
        messages = rclone.messages_of(result)
        cls = rclone.classify(messages)
        if cls == rclone.PATH_MISSING or result.returncode == 3:
            raise NotFound(f"nothing to restore at {source.split(':', 1)[1]}", field="path")
        raise OperationFailed(rclone.failure_message(cls or "error", messages, "rclone failed"), details={"class": cls})
    entries = json.loads(result.stdout or b"[]")
    files = [{"path": e["Path"], "size": e["Size"], "modified": e["ModTime"], "is_dir": e["IsDir"]}
             for e in entries[:LIST_LIMIT]]
    return {"source": source.split(":", 1)[1], "entries": files, "truncated": len(entries) > LIST_LIMIT}


async def list_versions(binary: str, dest_env: dict[str, str], remote_path: str,
                        on_record: Callable[[dict[str, Any]], None] | None = None) -> list[str]:
    """The versions folders on the server, oldest first ([] if none)."""
    result = await _listing(binary, ["lsf", "--dirs-only", rclone.dest_path(remote_path, "versions")], dest_env,
                            VERSIONS_TIMEOUT_S, "listing versions/", on_record)
    if not result.ok:
        messages = rclone.messages_of(result)
        cls = rclone.classify(messages)
        if result.returncode == 3 or cls == rclone.PATH_MISSING:
            return []
        raise OperationFailed(f"cannot list versions: {rclone.failure_message(cls, messages, 'rclone failed')}",
                              details={"class": cls})
    names = [n.rstrip("/") for n in result.stdout.decode(errors="replace").split()]
    return sorted(n for n in names if parse_version_folder(n) is not None)
