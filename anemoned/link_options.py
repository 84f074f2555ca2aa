"""How a destination's link is used: parallelism and bandwidth schedule.

Per destination, all optional (None: the default below):
- `transfers`: files uploaded at once (rclone --transfers);
- `checkers`: directories listed and files compared at once (--checkers);
- `connections`: SSH connections rclone may hold to the server (the sftp
  backend's `connections`);
- `processes`: rclone runs a sync starts at once, each for its share of
  the users, with its own transfers, checkers and connections; 0 (the
  default) chooses by the server's distance (processes_for);
- `bwlimit`: rclone's bandwidth timetable ("08:00,2M 19:00,off", "2M",
  "off"), parsed here into a normal form and never passed on unparsed.

Limits come from OpenSSH's defaults, which most servers keep:
`MaxStartups 10:30:100` drops new connections at random once 10 are
waiting for authentication, so `connections` is at most 10 whatever
rclone's dialling pattern (MaxSessions 10 bounds channels per connection;
rclone uses one per connection). `transfers` and `checkers` are each at
most `connections`: more would only queue for a connection.

rclone's help for `connections` (written for FTP's `concurrency` and
copied) warns of deadlocks unless connections > transfers + checkers.
Its sftp backend does not hold one connection while waiting for another
(an upload keeps its connection until the file is closed and gives it
back before setting the time; listings, renames and deletes take one and
give it back), and 8 transfers + 8 checkers over 10 connections ran at 0,
20 and 80 ms without a hang (bench/link_tuning.py); the suite runs 2
transfers + 3 checkers over 3 connections (tests/integration/test_links.py).
Requiring connections > transfers + checkers would have capped transfers
at 8 - checkers, and transfers are what bound an initial sync on a link.

One rclone's connections carry one request each at a time, so on a link
an initial sync of many small files is bound by round trips however many
transfers it has; several rclone processes, each with its own
connections, overlap many more (bench/link_tuning.py). MaxStartups counts
only connections still in their handshake, not those at work, so the
processes start in waves of at most 10 connections, `stagger` apart
(about ten preflight answers: an SSH handshake is some eight round trips;
sync_shares.start_times).

The defaults were chosen from measurements through testbed/linksim.py at
0, 20 and 80 ms round trips (README, "Links: parallelism and bandwidth").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import rclone
from .errors import InvalidField

#: OpenSSH's default MaxStartups start (10:30:100): beyond this many
#: connections in their handshake at once, sshd drops new ones at random.
MAX_CONNECTIONS = 10
DEFAULT_TRANSFERS = 8
DEFAULT_CHECKERS = 8
DEFAULT_CONNECTIONS = 10
#: 0: chosen per sync by processes_for (LAN_PROCESSES or MAX_PROCESSES)
DEFAULT_PROCESSES = 0
#: On a LAN the machine's CPU bounds a sync, not round trips: more runs
#: only add handshakes and Go runtimes (W1 on loopback, 200 users x 50
#: files: 4 runs 20.5-29 s, 16 runs 31.8 s, in this machine's noise).
LAN_PROCESSES = 4
MAX_PROCESSES = 16
#: An SSH round trip (reach.preflight_round_trip) longer than this is a
#: link. It includes the server's key exchange: 1-12 ms on loopback here
#: (by load), 26-35 ms at 20 ms round trips through testbed/linksim.py.
LINK_ROUND_TRIP_S = 0.015
FIELDS = ("transfers", "checkers", "connections", "processes", "bwlimit")
#: bounds of the pause between starting a sync's rclone processes (s)
STAGGER_MIN_S, STAGGER_MAX_S = 0.1, 2.0

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_RATE_RE = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,3}))?([BKMGTP])?\Z", re.IGNORECASE)
_SLOT_RE = re.compile(r"(?:(?P<day>[A-Za-z]{3})-)?(?P<hh>[0-9][0-9]):(?P<mm>[0-9][0-9]),(?P<rate>[^,]+)\Z")
MAX_SLOTS = 64
MAX_BWLIMIT_LEN = 1024


@dataclass(frozen=True)
class LinkOptions:
    """The effective values for one destination (defaults filled in)."""

    transfers: int = DEFAULT_TRANSFERS
    checkers: int = DEFAULT_CHECKERS
    connections: int = DEFAULT_CONNECTIONS
    processes: int = DEFAULT_PROCESSES
    bwlimit: str | None = None  # normal form; None: no limit

    @classmethod
    def of(cls, stored: dict[str, Any]) -> "LinkOptions":
        """From a destination's stored `link` (absent or None: default),
        validated again: what reaches rclone is always our own normal form,
        even from a hand-edited database. Raises InvalidField naming the field."""
        if not isinstance(stored, dict):  # a damaged cell reads as None
            stored = {}

        def pick(name: str, default: int) -> int:
            value = stored.get(name)
            return default if value is None else check_count(name, value)
        raw = stored.get("bwlimit")
        options = cls(pick("transfers", DEFAULT_TRANSFERS), pick("checkers", DEFAULT_CHECKERS),
                      pick("connections", DEFAULT_CONNECTIONS), pick("processes", DEFAULT_PROCESSES),
                      None if raw is None else parse_bwlimit(raw))
        check_combination(options)
        return options

    def sync_args(self) -> list[str]:
        """rclone flags for a sync to this destination. The timetable is
        one argv element of our own normal form: rclone parses it, no shell
        or connection string ever sees it."""
        args = ["--transfers", str(self.transfers), "--checkers", str(self.checkers)]
        if self.bwlimit is not None:
            args += ["--bwlimit", self.bwlimit]
        return args

    def processes_for(self, round_trip_s: float | None) -> int:
        """The most rclone runs a sync starts at once: the setting, or with
        0, LAN_PROCESSES on a LAN and MAX_PROCESSES on a link (one SSH round
        trip of round_trip_s, is_link), where round
        trips bound an initial sync of small files (W4, 200 users x 50
        files at 50 ms: 215.7 s with 4 runs, 76.6 s with 16)."""
        if self.processes:
            return self.processes
        return MAX_PROCESSES if is_link(round_trip_s) else LAN_PROCESSES

    def dest_env(self) -> dict[str, str]:
        """The sftp backend option for the destination remote only (the
        users' local readers are not an OpenSSH server's connections)."""
        return rclone.option_env(rclone.DEST_REMOTE, {"connections": str(self.connections)})


def is_link(round_trip_s: float | None) -> bool:
    """Is a server this SSH round trip away across a link, not on the LAN
    (None: not measured, taken as a LAN: the defaults of one rclone)?"""
    return round_trip_s is not None and round_trip_s >= LINK_ROUND_TRIP_S


#: Round trips one wave's SSH handshakes take before the next may begin:
#: some eight each (TCP, key exchange, keys, two for the public key, the
#: channel, the subsystem, SFTP's init), and the server signs for ten at
#: once. With 10 preflight answers alone, 16 runs at 50 ms had 2 of 135
#: connections dropped by MaxStartups.
HANDSHAKE_ROUND_TRIPS = 12


def stagger(preflight_s: float, round_trip_s: float | None = None) -> float:
    """Seconds between starting a sync's rclone processes, from how long
    the server took to answer the preflight (a round trip or two) and,
    when timed, one SSH round trip."""
    by_rtt = HANDSHAKE_ROUND_TRIPS * round_trip_s if round_trip_s is not None else 0.0
    return min(STAGGER_MAX_S, max(STAGGER_MIN_S, 10 * preflight_s, by_rtt))


def view(stored: dict[str, Any]) -> dict[str, Any]:
    """The fields as dest show prints them: the effective values, or, for
    a stored value that no longer validates, what is stored and why it is
    refused (syncs fail naming it until it is set again)."""
    try:
        o = LinkOptions.of(stored)
    except InvalidField as err:
        return {"transfers": stored.get("transfers"), "checkers": stored.get("checkers"),
                "connections": stored.get("connections"), "processes": stored.get("processes"),
                "bwlimit": stored.get("bwlimit"), "link_error": err.message}
    return {"transfers": o.transfers, "checkers": o.checkers, "connections": o.connections,
            "processes": o.processes, "bwlimit": o.bwlimit or "off"}


# -- validation ------------------------------------------------------------------

def check_count(name: str, value: int) -> int:
    hi = MAX_PROCESSES if name == "processes" else MAX_CONNECTIONS
    lo = 0 if name == "processes" else 1  # processes 0: chosen per sync
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidField(name, f"must be a whole number from {lo} to {hi}"
                             + (" (OpenSSH's default MaxStartups drops more connections opened at once)"
                                if name == "connections" else ""))
    return value


def check_combination(options: LinkOptions) -> None:
    """transfers and checkers at most connections (see the module docstring)."""
    for name in ("transfers", "checkers"):
        if getattr(options, name) > options.connections:
            raise InvalidField(
                name, f"must be at most connections ({options.connections}): more {name} would only wait for "
                f"a connection (transfers {options.transfers}, checkers {options.checkers}, connections "
                f"{options.connections}; connections is at most {MAX_CONNECTIONS})")


def _rate(text: str) -> str:
    """One bandwidth of rclone's SizeSuffix form, normalised ("2m" -> "2M");
    raises ValueError."""
    if text.lower() == "off":
        return "off"
    m = _RATE_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a rate (a number with an optional B, K, M, G, T or P suffix, or off)")
    whole, frac, unit = m.groups()
    if int(whole) == 0 and not (frac and int(frac)):
        raise ValueError(f"{text!r} is zero: write off for no limit")
    number = whole + (f".{frac}" if frac else "")
    return number + (unit.upper() if unit else "")


def _bandwidth(text: str) -> str:
    """A rate, or an UPLOAD:DOWNLOAD pair of rates."""
    parts = text.split(":")
    if len(parts) > 2:
        raise ValueError(f"{text!r}: at most one ':' (upload:download)")
    return ":".join(_rate(p) for p in parts)


def parse_bwlimit(value: str) -> str | None:
    """The timetable in normal form (single spaces, upper-case units), or
    None for "off". Raises InvalidField naming `bwlimit`.

    Accepted, a strict subset of rclone's syntax: a bandwidth ("2M", "off",
    "10M:1M" for upload:download), or space-separated slots "HH:MM,BW" or
    "Day-HH:MM,BW" (Day: Mon..Sun), each time at most once."""
    try:
        return _parse(value)
    except ValueError as err:
        raise InvalidField("bwlimit", f"{err}; expected rclone's form, e.g. \"2M\", \"off\" or "
                             f"\"08:00,2M 19:00,off\" (Day-HH:MM,RATE for one day of the week)") from None


def _parse(value: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("empty")
    if len(value) > MAX_BWLIMIT_LEN or not all(" " <= c <= "~" for c in value):
        raise ValueError(f"at most {MAX_BWLIMIT_LEN} printable ASCII characters, slots separated by spaces")
    tokens = value.split(" ")
    tokens = [t for t in tokens if t]
    if len(tokens) == 1 and "," not in tokens[0]:
        rate = _bandwidth(tokens[0])
        return None if rate == "off" else rate
    if len(tokens) > MAX_SLOTS:
        raise ValueError(f"at most {MAX_SLOTS} time slots")
    slots: list[str] = []
    seen: set[tuple[str, int]] = set()
    for token in tokens:
        m = _SLOT_RE.match(token)
        if not m:
            raise ValueError(f"{token!r} is not HH:MM,RATE or Day-HH:MM,RATE")
        day = m["day"]
        if day is not None and day.capitalize() not in _DAYS:
            raise ValueError(f"{token!r}: the day must be one of {', '.join(_DAYS)}")
        hh, mm = int(m["hh"]), int(m["mm"])
        if hh > 23 or mm > 59:
            raise ValueError(f"{token!r}: {m['hh']}:{m['mm']} is not a time of day")
        key = (day.capitalize() if day else "*", hh * 60 + mm)
        if key in seen:
            raise ValueError(f"{token!r}: that time is given twice")
        seen.add(key)
        prefix = f"{day.capitalize()}-" if day else ""
        slots.append(f"{prefix}{hh:02d}:{mm:02d},{_bandwidth(m['rate'])}")
    return " ".join(slots)


def read_fields(p: Any, fields: dict[str, Any]) -> None:
    """The link fields a decoded dest.add/dest.edit sets (attributes of `p`,
    None: not given), validated, into `fields` (bwlimit "off" is stored as
    None). The protocol only checks their type: the bounds are this
    module's, so stored values are checked by the same rules."""
    for name in ("transfers", "checkers", "connections", "processes"):
        value = getattr(p, name)
        if value is not None:
            fields[name] = check_count(name, value)
    if p.bwlimit is not None:
        fields["bwlimit"] = parse_bwlimit(p.bwlimit)


def merged(stored: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """A destination's stored `link` with the link fields among `fields`
    applied (an explicit bwlimit "off" is stored as None), checked as a
    whole: an edit of one field can break the combination."""
    link = {**(stored if isinstance(stored, dict) else {}), **{k: fields[k] for k in FIELDS if k in fields}}
    LinkOptions.of(link)
    return link
