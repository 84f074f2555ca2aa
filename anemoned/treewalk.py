"""The scanner: lists users' trees, each with exactly its owner's rights,
in one process forked by the spawner (spawner.py) for a batch of trees.

Starting a program per user (find) cost about a fork and an exec each,
which was most of a sync in which nothing changed. The scanner is one
fork for many trees. For each tree it takes the owner's file-system
identity (setfsuid/setfsgid and the owner's supplementary groups: the
kernel checks every path lookup and directory read against these, and the
process holds no capability that overrides a file permission), lists the
tree, and goes back to its own identity before the next one. Its real and
saved uids stay the daemon's, so no user can signal, stop or trace it.

The walk opens every directory relative to its parent with O_NOFOLLOW
and O_DIRECTORY: a directory swapped for a symbolic link at any moment is
never followed (find only checks at listing time). Nothing but
directories is opened, so a FIFO cannot stall it. Directories on another
file system are listed as entries but not entered (find -xdev).

Output, per tree, on the scanner's stdout:
    b"<index> <records length> <complaints length>\\n" records complaints
where records are exactly what `find -P DIR -xdev -printf
'%d %U %y %s %T@ %i %D %P\\0'` prints (usertree.parse reads them) and
complaints are find-style lines for what could not be read.
"""
from __future__ import annotations

import ctypes
import os
import stat
from typing import Any

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_TYPES = {stat.S_IFREG: b"f", stat.S_IFDIR: b"d", stat.S_IFLNK: b"l", stat.S_IFIFO: b"p", stat.S_IFSOCK: b"s",
          stat.S_IFCHR: b"c", stat.S_IFBLK: b"b"}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _record(depth: int, st: os.stat_result, rel: bytes) -> bytes:
    ns = st.st_mtime_ns
    return b"%d %d %s %d %d.%09d0 %d %d %s\0" % (depth, st.st_uid, _TYPES.get(stat.S_IFMT(st.st_mode), b"U"),
                                                  st.st_size, ns // 1_000_000_000, ns % 1_000_000_000,
                                                  st.st_ino, st.st_dev, rel)


def walk(top: str) -> tuple[bytes, bytes]:
    """(records, complaints) of the tree at top, not following any link."""
    out: list[bytes] = []
    complaints: list[bytes] = []
    top_b = os.fsencode(top)

    def complain(rel: bytes, err: OSError) -> None:
        complaints.append(b"find: '%s%s': %s\n" % (top_b, b"/" + rel if rel else b"", (err.strerror or "error").encode()))

    try:
        root_fd = os.open(top, _DIR_FLAGS)
    except OSError as err:
        complain(b"", err)
        return b"", b"".join(complaints)
    root = os.fstat(root_fd)
    out.append(_record(0, root, b""))
    # Depth first, one open directory per level (never one per pending
    # sibling): each frame is a directory's fd, its path and the
    # sub-directories still to enter.
    stack: list[tuple[int, bytes, int, list[bytes]]] = []

    def enter(fd: int, rel: bytes, depth: int) -> None:
        subdirs = []
        for name, st in _list(fd, rel, complain):
            out.append(_record(depth, st, rel + name))
            if stat.S_ISDIR(st.st_mode) and st.st_dev == root.st_dev:
                subdirs.append(name)
        subdirs.reverse()
        stack.append((fd, rel, depth, subdirs))

    try:
        enter(root_fd, b"", 1)
        while stack:
            fd, rel, depth, subdirs = stack[-1]
            if not subdirs:
                os.close(stack.pop()[0])
                continue
            name = subdirs.pop()
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:  # gone, swapped for a link, or unreadable
                if not isinstance(err, FileNotFoundError):
                    complain(rel + name, err)
                continue
            enter(child, rel + name + b"/", depth + 1)
    finally:
        for fd, *_ in stack:
            os.close(fd)
    return b"".join(out), b"".join(complaints)


def _list(fd: int, rel: bytes, complain: Any) -> list[tuple[bytes, os.stat_result]]:
    try:
        with os.scandir(fd) as it:
            names = [os.fsencode(e.name) for e in it]
    except OSError as err:
        complain(rel.rstrip(b"/"), err)
        return []
    entries = []
    for name in names:
        try:
            entries.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
        except FileNotFoundError:
            continue  # removed since it was listed
        except OSError as err:
            complain(rel + name, err)
    return entries


def _set_fs_identity(uid: int, gid: int, groups: list[int]) -> None:
    os.setgroups(groups)
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    # setfsuid/setfsgid report no error; asking again returns the value in force.
    if _libc.setfsuid(-1 & 0xFFFFFFFF) != uid or _libc.setfsgid(-1 & 0xFFFFFFFF) != gid:
        raise PermissionError("could not take the tree owner's file-system identity")


def scan_trees(trees: list[dict[str, Any]], out_fd: int) -> None:
    """In the scanner process: each tree listed as its owner, framed on out_fd."""
    own = (os.getuid(), os.getgid(), os.getgroups())
    for index, tree in enumerate(trees):
        try:
            _set_fs_identity(int(tree["uid"]), int(tree["gid"]), [int(g) for g in tree["groups"]])
            records, complaints = walk(str(tree["path"]))
        except OSError as err:
            records, complaints = b"", b"find: %s\n" % (err.strerror or str(err)).encode()
        finally:
            _set_fs_identity(*own)
        frame = b"%d %d %d\n" % (index, len(records), len(complaints)) + records + complaints
        view = memoryview(frame)
        while view:
            view = view[os.write(out_fd, view):]
