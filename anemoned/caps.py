"""Linux capabilities of the daemon process, trimmed at start-up.

The unit gives the daemon CAP_SETUID and CAP_SETGID (to start each user's
processes as that user), CAP_KILL (to stop them: they belong to another
uid) and CAP_SETPCAP (only to empty the bounding set here). At start-up the
daemon keeps just the first three in its permitted and effective sets and
clears everything that a child could inherit:

- the ambient and inheritable sets are emptied, so every program the
  daemon starts (rclone, ssh-keyscan, a user's sftp-server) begins with no
  capability at all: none of them has file capabilities;
- the bounding set is emptied, so not even a file-capability binary run
  later by a user's process could gain one (NoNewPrivileges already stops
  that; this holds without it too).

Python has no binding for capset(2) or these prctl(2) calls; they go
through ctypes. Everything here is a no-op where the process lacks the
capability to change a set (a daemon started by hand, unprivileged).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
#: What the daemon keeps: starting processes as a user, and stopping them.
KEPT = (CAP_KILL, CAP_SETGID, CAP_SETUID)

_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def sets(pid: int | str = "self") -> dict[str, int]:
    """The capability sets of a process as bit masks, from /proc
    (CapInh, CapPrm, CapEff, CapBnd, CapAmb)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cap"):
            key, value = line.split(":", 1)
            out[key] = int(value.strip(), 16)
    return out


def has(cap: int) -> bool:
    return bool(sets()["CapEff"] >> cap & 1)


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


def _capset(permitted: int, effective: int, inheritable: int) -> None:
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in range(2):
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def trim(keep: tuple[int, ...] = KEPT) -> None:
    """Keep only `keep` (of what the process has) in the permitted and
    effective sets; empty the inheritable, ambient and bounding sets."""
    current = sets()
    if current["CapEff"] >> CAP_SETPCAP & 1:
        for cap in range(_last_cap() + 1):
            _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL for unknown caps: fine
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    kept = sum(1 << c for c in keep) & current["CapPrm"]
    _capset(kept, kept, 0)
