"""What is in a user's tree, seen with that user's rights.

A scanner lists the tree with the user's rights (treewalk.py, scans.py)
and gives one record per entry, exactly as `find -P -xdev -printf` would:
depth, owner, type, size, modification time, inode, device and relative
path. From it the daemon learns whether the tree is empty,
whether `backup/` really belongs to the user it ran as, and a fingerprint
of every path, size, mtime and inode: when the fingerprint equals the one
recorded after the user's last successful sync to a destination, nothing
changed and the sync starts nothing for that user. The same output, read
again by listing(), is the local side of an incremental sync
(remote_index.py).

The scanner never follows symlinks or crosses into another file system,
and only reads directories; it cannot be stalled by a FIFO. One scanner
lists many trees, so scanning 2,000 users costs no process per user.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .identity import UserIdentity
from . import scans

#: depth, uid, type, size, mtime, inode, device, path; NUL-terminated
#: because a file name may hold any byte but NUL and "/".
_FORMAT = r"%d %U %y %s %T@ %i %D %P\0"


@dataclass(frozen=True)
class TreeScan:
    fingerprint: str
    files: int  # regular files
    bytes: int
    problem: str | None  # why the tree is not backed up, or None
    unreadable: str | None = None  # the scan's first complaint, if any
    #: directories inside the tree where another file system is mounted
    #: (relative paths): not crossed, so left out of the sync
    mounts: tuple[str, ...] = ()
    #: the scanner's records as they came, for listing() (an incremental sync's
    #: local side); dropped for users with nothing to do
    raw: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True)
class Listing:
    """The regular files of a tree (relative path -> size, whole seconds of
    mtime: what an SFTP server keeps) and its directories, as the owner's
    scan saw them."""

    files: dict[str, tuple[int, int]]
    dirs: frozenset[str]
    #: why this tree cannot be named in an rclone --files-from list (one
    #: path per line, UTF-8), or None
    unlistable: str | None = None


def listing(scan: TreeScan) -> Listing:
    """The files and directories in a scan's raw output. Pure. A name with a
    line break (or a carriage return, which rclone's line reader drops) or
    one that is not UTF-8 cannot be written one per line in a files-from
    list, nor matched against rclone's JSON log: such a tree is only ever
    synced in full. So is one the scanner could not wholly read: what it
    left out would look deleted (a full sync's rclone meets the same error
    and deletes nothing)."""
    files: dict[str, tuple[int, int]] = {}
    dirs: set[str] = set()
    unlistable = f"part of backup/ could not be read ({scan.unreadable})" if scan.unreadable else None
    records = scan.raw.split(b"\0")
    for rec in records[1:]:  # the first is backup/ itself
        parts = rec.split(b" ", 7)
        if len(parts) < 8:
            continue
        _, _, kind, size, mtime, _, _, raw_path = parts
        try:
            path = raw_path.decode("utf-8")
        except UnicodeDecodeError:
            unlistable = unlistable or "a name in backup/ is not UTF-8"
            continue
        if "\n" in path or "\r" in path:
            unlistable = unlistable or "a name in backup/ holds a line break"
            continue
        if kind == b"f":
            files[path] = (int(size), int(mtime.split(b".", 1)[0]))
        elif kind == b"d":
            dirs.add(path)
    return Listing(files, frozenset(dirs), unlistable)


async def scan_many(trees: list[tuple[UserIdentity, Path]], users_dev: int, timeout_s: float,
                    ) -> list[TreeScan | Exception]:
    """Each tree, seen by its owner (scans.py); scans.ScanStalled for one
    that said nothing for timeout_s, scans.ScannerFailed when the scanner
    could not list it."""
    listed = await scans.scan_trees([(identity, str(backup)) for identity, backup in trees], timeout_s)
    return [result if isinstance(result, Exception) else parse(result[0], result[1], identity.uid, users_dev)
            for (identity, _), result in zip(trees, listed)]


def parse(out: bytes, err: bytes, uid: int, users_dev: int) -> TreeScan:
    """A TreeScan from the scanner's records (find -printf's format). Pure."""
    records = out.split(b"\0")
    if records and records[-1] == b"":
        records.pop()
    complaint = err.decode(errors="replace").strip().splitlines()[0][:300] if err.strip() else None
    if not records:
        return TreeScan("", 0, 0, f"backup/ cannot be read: {complaint or 'no output'}")
    root = records[0].split(b" ", 7)
    if len(root) < 8 or root[0] != b"0":
        return TreeScan("", 0, 0, "backup/ could not be scanned")
    if root[2] != b"d":
        return TreeScan("", 0, 0, "backup/ is not a directory")
    if int(root[1]) != uid:
        return TreeScan("", 0, 0, f"backup/ belongs to uid {int(root[1])}, not to the owner of its user directory")
    if int(root[6]) != users_dev:
        return TreeScan("", 0, 0, "backup/ is on another file system; it is not crossed")
    if len(records) == 1 and complaint is None:
        return TreeScan("", 0, 0, "backup/ is empty")
    digest = hashlib.sha256()
    files = size = 0
    mounts = tuple(sorted(r.split(b" ", 7)[7].decode("utf-8", "surrogateescape") for r in records[1:]
                          if r.split(b" ", 3)[2] == b"d" and r.split(b" ", 7)[6] != root[6]))
    # Entries minus depth and owner (a chown alone changes nothing remote),
    # sorted so that directory order does not matter.
    for rec in sorted(r.split(b" ", 2)[2] for r in records[1:]):
        digest.update(rec)
        digest.update(b"\0")
        if rec.startswith(b"f "):
            files += 1
            size += int(rec.split(b" ", 2)[1])
    if complaint:
        digest.update(b"!" + complaint.encode())
    if any("\n" in m or "\r" in m for m in mounts):
        return TreeScan("", 0, 0, "a mount point inside backup/ has a line break in its name; it cannot be left out")
    return TreeScan(digest.hexdigest(), files, size, None, complaint, mounts, raw=out)
