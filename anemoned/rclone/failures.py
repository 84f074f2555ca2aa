"""What a failed rclone run means: its failure class (an ordered table of
exact fragments of rclone's messages) and the one-line error a job records."""
from __future__ import annotations

import enum
import re
from typing import Any

from .runner import RcloneResult


class FailureClass(enum.StrEnum):
    """Failure classes, as `dest test` names them. A str enum: its values
    are what job errors ("class: message"), `dest test`'s `class` and
    stats carry, so a member is written and compared as that string."""

    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    HOST_KEY_UNKNOWN = "host key unknown"
    HOST_KEY_MISMATCH = "host key mismatch"
    AUTH_FAILED = "authentication failed"
    #: The server accepted the login, then closed the session before SFTP
    #: started: what OpenSSH does when a ChrootDirectory is not root-owned (or
    #: is writable by others), and when the account may not run the SFTP
    #: subsystem. Not a network problem: the network worked.
    SESSION_REFUSED = "session refused"
    PATH_MISSING = "remote path missing"
    PATH_NOT_WRITABLE = "remote path not writable"
    DISK_FULL = "remote disk full"
    #: What `dest test` says when none of the patterns matches: the raw
    #: message is shown as it is, never guessed into another class.
    UNKNOWN = "unknown"


# The members by their old module-level names (rclone.UNREACHABLE, ...).
UNREACHABLE = FailureClass.UNREACHABLE
TIMEOUT = FailureClass.TIMEOUT
HOST_KEY_UNKNOWN = FailureClass.HOST_KEY_UNKNOWN
HOST_KEY_MISMATCH = FailureClass.HOST_KEY_MISMATCH
AUTH_FAILED = FailureClass.AUTH_FAILED
SESSION_REFUSED = FailureClass.SESSION_REFUSED
PATH_MISSING = FailureClass.PATH_MISSING
PATH_NOT_WRITABLE = FailureClass.PATH_NOT_WRITABLE
DISK_FULL = FailureClass.DISK_FULL
UNKNOWN = FailureClass.UNKNOWN

#: Ordered: the first class whose needle appears wins. Needles are exact
#: fragments of rclone's (Go's ssh and sftp packages') messages; a
#: fragment that could mean several things (Go's bare "EOF", a generic
#: "couldn't connect SSH:" prefix) is deliberately not here.
_PATTERNS: list[tuple[FailureClass, tuple[str, ...]]] = [
    (HOST_KEY_MISMATCH, ("knownhosts: key mismatch",)),
    (HOST_KEY_UNKNOWN, ("knownhosts: key is unknown",)),
    (AUTH_FAILED, ("unable to authenticate", "no supported methods remain")),
    (SESSION_REFUSED, ("couldn't initialise sftp", "unexpected packet in response to channel open",
                       "subsystem request failed", "administratively prohibited")),
    (TIMEOUT, ("i/o timeout", "timed out", "deadline exceeded")),
    (UNREACHABLE, ("connection refused", "no route to host", "network is unreachable", "no such host",
                   "connection reset", "handshake failed: eof")),
    (DISK_FULL, ("no space left", "quota exceeded", "disk full")),
    (PATH_NOT_WRITABLE, ("permission denied",)),
    (PATH_MISSING, ("directory not found", "object not found", "file does not exist", "no such file")),
]


def classify(messages: list[str]) -> FailureClass | None:
    """The failure class that rclone's error messages point to, or None
    when none is recognised (the caller then says so, never guesses).
    The first pattern in _PATTERNS order wins: a host key problem explains
    everything after it."""
    text = "\n".join(messages).lower()
    for cls, needles in _PATTERNS:
        if any(n in text for n in needles):
            return cls
    return None


def error_messages(records: list[dict[str, Any]]) -> list[str]:
    """The messages of error-level (and worse) log records, in order."""
    return [str(r.get("msg", "")) for r in records if r.get("level") in ("error", "critical", "fatal")]


_ATTEMPT_PREFIX = re.compile(r"^Attempt \d+/\d+ failed with \d+ errors? and: ")


def messages_of(result: RcloneResult) -> list[str]:
    """What a failed run said: its error messages, else every message (a
    run that fails with nothing at error level still says why)."""
    return error_messages(result.records) or [str(r.get("msg")) for r in result.records]


def failure_message(cls: FailureClass | None, messages: list[str], fallback: str) -> str:
    """What a failed run records: "class: first error", the class left out
    when it is not known, the fallback when rclone said nothing."""
    first = _ATTEMPT_PREFIX.sub("", messages[0])[:300] if messages else fallback
    return f"{cls}: {first}" if cls else first
