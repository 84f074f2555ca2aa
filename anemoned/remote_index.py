"""The remote index: per destination and user, what the last successful
sync left on the server (path, size, whole seconds of mtime), so that the
next sync of a changed tree sends only new and changed files and moves
away only deleted ones, without listing a single remote directory.

What goes in comes from rclone's own per-file records of a run that
succeeded for that user (Copied, Unchanged skipping, Moved), never from
the local tree alone: a file rclone did not confirm is not in the index
(the next sync then treats it as new, which costs one remote stat).

Crash safety: before a sync touches a user's remote directory, the user's
index is marked dirty (one transaction); it is made clean again, with its
rows and a digest of them, in one transaction after rclone confirmed the
result. A dirty, missing, corrupt (digest mismatch) or stale (another
remote_path) index means a full sync for that user, which rebuilds it.

The index lives in the daemon's SQLite database, in tables of its own,
read and written through a connection of its own from a worker thread
(a large index is 100,000 rows: never on the event loop).
"""
from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

#: path -> (size, mtime in whole seconds, or None when rclone wrote a file
#: whose size differed from the scan's: such an entry never matches)
Entries = dict[str, tuple[int, int | None]]


@dataclass(frozen=True)
class Changes:
    """What an incremental sync does for one user (paths relative to the
    user's backup/)."""

    copy: list[str]
    delete: list[str]


def digest(entries: Entries) -> str:
    h = hashlib.sha256()
    for path in sorted(entries):
        size, mtime = entries[path]
        h.update(f"{path}\0{size}\0{mtime}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _ancestors(path: str) -> Iterable[str]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def diff(files: dict[str, tuple[int, int]], dirs: frozenset[str], index: Entries) -> Changes | str:
    """The changes that bring the server from `index` to the local tree, or
    why only a full sync can (a file became a directory or the other way
    round: the server's copy stands in the way of a plain copy). Pure."""
    if dirs & index.keys():
        return "a file became a directory"
    remote_dirs = {a for path in index for a in _ancestors(path)}
    if remote_dirs & files.keys():
        return "a directory became a file"
    copy = sorted(p for p, (size, mtime) in files.items() if index.get(p) != (size, mtime))
    delete = sorted(index.keys() - files.keys())
    return Changes(copy, delete)


def confirmed_entries(files: dict[str, tuple[int, int]], confirmed: dict[str, int | None]) -> Entries:
    """Index entries for the files rclone confirmed: the size rclone wrote
    (or the scan's, for a file rclone found identical), the scan's mtime
    when the sizes agree (rclone sets the remote mtime from the source).
    A confirmed path the scan did not see (created after it) is left out."""
    out: Entries = {}
    for path, size in confirmed.items():
        local = files.get(path)
        if local is None:
            continue
        if size is None or size == local[0]:
            out[path] = local
        else:  # changed between the scan and the copy: never matches
            out[path] = (size, None)
    return out


class IndexDb:
    """The index tables, through a connection of its own. Every method is
    blocking: call it with asyncio.to_thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def load(self, destination: str, users: Iterable[str], remote_path: str) -> dict[str, Entries | str]:
        """Each user's index, or why it cannot be used."""
        out: dict[str, Entries | str] = {}
        db = self._connect()
        try:
            for user in users:
                try:
                    out[user] = self._load_one(db, destination, user, remote_path)
                except (sqlite3.DatabaseError, ValueError, TypeError) as err:
                    out[user] = f"the index cannot be read ({err})"
        finally:
            db.close()
        return out

    @staticmethod
    def _load_one(db: sqlite3.Connection, destination: str, user: str, remote_path: str) -> Entries | str:
        row = db.execute("SELECT remote_path, state, files, digest FROM index_state WHERE destination = ? AND user = ?",
                         (destination, user)).fetchone()
        if row is None:
            return "no index yet"
        if row[1] != "clean":
            return "the last sync did not finish (index dirty)"
        if row[0] != remote_path:
            return "the index is of another remote path"
        entries: Entries = {}
        for path, size, mtime in db.execute(
                "SELECT path, size, mtime FROM remote_index WHERE destination = ? AND user = ?", (destination, user)):
            if not isinstance(path, str) or not isinstance(size, int) or not (mtime is None or isinstance(mtime, int)):
                return "the index is corrupt (a row of the wrong type)"
            entries[path] = (size, mtime)
        if len(entries) != row[2] or digest(entries) != row[3]:
            return "the index is corrupt (its digest does not match)"
        return entries

    def dirty_users(self, destination: str) -> set[str]:
        """Users a sync began for and never confirmed (a crash, a failure):
        they are synced, in full, whatever their fingerprint says."""
        db = self._connect()
        try:
            return {r[0] for r in db.execute("SELECT user FROM index_state WHERE destination = ? AND state != 'clean'",
                                             (destination,))}
        finally:
            db.close()

    def mark_dirty(self, destination: str, users: Iterable[str], remote_path: str) -> None:
        """Before a sync touches these users' remote directories: from now
        until save(), their index is not trusted."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            for user in users:
                db.execute("INSERT INTO index_state (destination, user, remote_path, state) VALUES (?, ?, ?, 'dirty') "
                           "ON CONFLICT (destination, user) DO UPDATE SET state = 'dirty'",
                           (destination, user, remote_path))
            db.execute("COMMIT")
        finally:
            db.close()

    def save(self, destination: str, user: str, remote_path: str, entries: Entries,
             changed: Entries | None = None, removed: Iterable[str] = ()) -> None:
        """The user's index after a confirmed sync, clean, in one
        transaction. With `changed` (an incremental sync), only those rows
        and the removed ones are written; else all rows are replaced."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            if changed is None:
                db.execute("DELETE FROM remote_index WHERE destination = ? AND user = ?", (destination, user))
                rows = entries
            else:
                db.executemany("DELETE FROM remote_index WHERE destination = ? AND user = ? AND path = ?",
                               ((destination, user, p) for p in removed))
                rows = changed
            db.executemany("INSERT OR REPLACE INTO remote_index (destination, user, path, size, mtime) "
                           "VALUES (?, ?, ?, ?, ?)", ((destination, user, p, s, m) for p, (s, m) in rows.items()))
            db.execute("INSERT INTO index_state (destination, user, remote_path, state, files, digest) "
                       "VALUES (?, ?, ?, 'clean', ?, ?) ON CONFLICT (destination, user) DO UPDATE SET "
                       "remote_path = excluded.remote_path, state = 'clean', files = excluded.files, "
                       "digest = excluded.digest", (destination, user, remote_path, len(entries), digest(entries)))
            db.execute("COMMIT")
        finally:
            db.close()

    def drop(self, destination: str, users: Iterable[str]) -> None:
        """Forget these users' index (a tree mirrored as empty, or one that
        cannot be indexed)."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            for user in users:
                db.execute("DELETE FROM remote_index WHERE destination = ? AND user = ?", (destination, user))
                db.execute("DELETE FROM index_state WHERE destination = ? AND user = ?", (destination, user))
            db.execute("COMMIT")
        finally:
            db.close()
