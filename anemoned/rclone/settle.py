"""When an rclone run's outcome is known before rclone exits.

Once its command is over, rclone (cmd/cmd.go) writes its last report
(for a run with a stats interval, as every sync run has: `--stats`),
logs a mark at DEBUG ("N go routines active"), then shuts its backends
down (for SFTP: closing its connections one after another, a round trip
each: 14 connections, 0.8 s at 50 ms), and exits with a status decided
from the command's error, which it has counted into that report, and
from any error the shutdown counts, which the sftp, combine and local
backends never do (sftp ignores errors closing a connection). So a last
report with no error, right before the mark, means status 0, unless the
run was asked to fail when nothing was transferred (status 9; the
daemon's runs never are, and a run given the flag is waited for).

Only a report read whole and right before the mark counts: a line that
could not be read (longer than runner.LINE_LIMIT: a server's error
message can make the report that quotes it that long) or that is not one
of rclone's JSON records may have been the last report, so a mark after
it is waited past. (rclone writes a few plain lines before its JSON
logging starts; they are no report either.)
"""
from __future__ import annotations

import re
from typing import Any

_SHUTDOWN_MARK = re.compile(r"\d+ go routines active\n?\Z")
#: Flags of the run's argv under which a clean report does not mean status
#: 0 (rclone's environment is the daemon's own: no RCLONE_* sets them).
_OTHER_STATUS_FLAGS = ("--error-on-no-transfer",)


def settles_clean(record: dict[str, Any], previous: dict[str, Any] | None) -> bool:
    """Whether record is rclone's shutdown mark (logged at DEBUG by its
    command runner: no file name can forge its source) and the record
    right before it a report that counted no error."""
    stats = previous.get("stats") if previous is not None else None
    return (record.get("level") == "debug" and str(record.get("source", "")).startswith("cmd/cmd.go:")
            and _SHUTDOWN_MARK.match(str(record.get("msg", ""))) is not None
            and isinstance(stats, dict) and stats.get("errors") == 0 and stats.get("fatalError") is False)


class Settlement:
    """Follows one run's records; `feed` says when the run may be stopped
    and counted as status 0."""

    def __init__(self, args: list[str]) -> None:
        self.can_settle = not any(arg == flag or arg.startswith(flag + "=") for arg in args
                                  for flag in _OTHER_STATUS_FLAGS)
        self.previous: dict[str, Any] | None = None
        self.settled = False

    def unreadable(self) -> None:
        """A line was lost: it may have been the last report."""
        self.previous = None

    def feed(self, record: dict[str, Any], parsed: bool) -> bool:
        settles = self.can_settle and not self.settled and settles_clean(record, self.previous)
        self.previous = record if parsed else None
        self.settled = self.settled or settles
        return settles
