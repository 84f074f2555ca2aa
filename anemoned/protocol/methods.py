"""Every RPC method, defined once: its params (a frozen dataclass whose
fields carry their constraints), the shape of its result, what it does and
who may call it. The daemon decodes requests into these classes, anemonectl
builds its requests from them, and the README's method table is rendered
from them (tests/unit/test_protocol_drift.py keeps all four in step).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .fields import Flag, Object, Text, TextList, Whole, param

#: Longest notification or ping URL (Apprise URLs can be long).
MAX_URL_LEN = 2048
POLICIES = ("failure", "recovery", "always")
SCHEDULE_KINDS = ("sync", "verify")
#: A destination name as dest.add and dest.edit take it; other methods
#: accept longer strings and answer "not found".
NAME = Text(64)
ANY_NAME = Text(256)
DEFAULT_KEY_FILE = "certs/rclone_key"

P = dict(frozen=True, kw_only=True)


# -- the destination's settable fields, each once, with its default -----------------

#: (name, spec, default when adding (REQUIRED: must be given), doc, alt)
DEST_FIELDS: tuple[tuple[str, Any, Any, str, bool], ...] = (
    ("host", Text(253), dataclasses.MISSING, "SFTP server: DNS name or IP address", False),
    ("port", Whole(1, 65535), 22, "SSH port", False),
    ("user", Text(64), dataclasses.MISSING, "user name on the SFTP server", False),
    ("remote_path", Text(1024), dataclasses.MISSING, "absolute directory on the server", False),
    ("key_file", Text(1024), None, f"private key, relative to data_dir (default {DEFAULT_KEY_FILE})", False),
    ("password", Text(1024), None, "SSH password (write-only)", True),
    ("enabled", Flag(), True, "whether schedules run", False),
    ("verify_download", Flag(), False, "verifies compare by downloading, not by the server's hashes", False),
    ("host_key_fingerprint", Text(100), None, "the server's expected host key fingerprint", False),
    ("trust_host_key", Flag(), False, "pin whatever host key the server shows now", True),
    ("max_delete", Whole(0, 10**9), 5000, "a sync may delete at most N remote files", False),
    ("max_delete_percent", Whole(0, 100), 20, "... and at most P% of the remote files", False),
    ("keep_versions_days", Whole(0, 36500), 30, "keep deleted and overwritten files D days in versions/ (0: off)",
     False),
    ("warn_free_percent", Whole(0, 100), 10, "warn when the server has less than P% free", False),
    ("stall_timeout", Whole(10, 86400), 300, "stop a user's transfer after this many seconds without progress",
     False),
    ("full_sync_every", Whole(0, 3650), 7, "sync unchanged users too every N days (0: every sync)", False),
    ("max_age", Text(20), None, "overdue when the last successful sync is older (36h, 2d; off: by the schedule)",
     False),
    # How the link is used. Only their type is checked here: their bounds
    # and the timetable's syntax are anemoned/link_options.py's (which also
    # re-checks stored values); absent, a destination takes the running
    # version's defaults (said in the docs; tests/unit/test_link_options.py
    # keeps them in step).
    ("transfers", Whole(-(2**31), 2**31), None, "files uploaded at once, at most connections (default 8)", False),
    ("checkers", Whole(-(2**31), 2**31), None,
     "directories listed and files compared at once, at most connections (default 8)", False),
    ("connections", Whole(-(2**31), 2**31), None, "SSH connections to the server, at most 10 (default 10)", False),
    ("processes", Whole(-(2**31), 2**31), None,
     "rclone runs at once, each for a share of the users with its own connections, at most 16; "
     "0: 4 on a LAN, 16 on a link (default 0)", False),
    ("bwlimit", Text(1024), None,
     'bandwidth of syncs: "2M", "off", or a timetable such as "08:00,2M 19:00,off" (default off)', False),
)
#: Fields stored as they come (the others are translated: auth, pins, max_age).
PLAIN_DEST_FIELDS = ("host", "port", "user", "remote_path", "enabled", "verify_download", "max_delete",
                     "max_delete_percent", "keep_versions_days", "warn_free_percent", "stall_timeout",
                     "full_sync_every")


def _dest_params(cls_name: str, adding: bool) -> type:
    specs: list[tuple[str, Any, Any]] = [("name", str, param(NAME, doc="destination name"))]
    for name, spec, default, doc, alt in DEST_FIELDS:
        if not adding and name != "trust_host_key":
            default = None  # dest.edit: absent means unchanged
        specs.append((name, Any, param(spec, default, doc, alt)))
    return dataclasses.make_dataclass(cls_name, specs, namespace={"__module__": __name__}, **P)


DestAdd = _dest_params("DestAdd", adding=True)
DestEdit = _dest_params("DestEdit", adding=False)


# -- params -------------------------------------------------------------------------

@dataclass(**P)
class NoParams:
    pass


@dataclass(**P)
class KeyGenerate:
    force: bool = param(Flag(), False, "replace an existing key (the old pair is kept as rclone_key.old)")


@dataclass(**P)
class DestName:
    name: str = param(ANY_NAME)


@dataclass(**P)
class DestTrust:
    name: str = param(ANY_NAME)
    host_key_fingerprint: str | None = param(Text(100), None)


@dataclass(**P)
class DestTest:
    name: str = param(ANY_NAME)
    create_path: bool = param(Flag(), False, "create the remote path when it is missing")


@dataclass(**P)
class DestSchedule:
    name: str = param(ANY_NAME)
    schedule: dict[str, Any] = param(Object(), doc="{kind, every? | time?, day?, expr?}")
    catch_up: bool | None = param(Flag(), None, "after downtime, run once soon after start-up (default)")
    kind: str = param(Text(10, SCHEDULE_KINDS), "sync", "which schedule: sync or verify")


@dataclass(**P)
class Sync:
    destination: str = param(ANY_NAME)
    dry_run: bool = param(Flag(), False)
    allow_deletes: bool = param(Flag(), False, "lift the delete guard for this sync")
    allow_empty: tuple[str, ...] = param(TextList(), (), "[user]: these users' empty trees are mirrored too")
    full: bool = param(Flag(), False, "sync unchanged users too")


@dataclass(**P)
class JobList:
    destination: str | None = param(ANY_NAME, None)
    limit: int = param(Whole(1, 1000), 20)


@dataclass(**P)
class JobId:
    id: int = param(Whole(1, 2**62))


@dataclass(**P)
class JobWait:
    id: int = param(Whole(1, 2**62))
    timeout_s: int = param(Whole(0, 60), 30, "seconds to wait at most (0-60, default 30)")


@dataclass(**P)
class Restore:
    destination: str = param(ANY_NAME)
    user: str = param(Text(64))
    to: str = param(Text(4096))
    path: str | None = param(Text(4096), None)
    version: str | None = param(Text(64), None)
    overwrite: bool = param(Flag(), False)


@dataclass(**P)
class RestoreList:
    destination: str = param(ANY_NAME)
    user: str = param(Text(64))
    path: str | None = param(Text(4096), None)
    version: str | None = param(Text(64), None)


@dataclass(**P)
class Verify:
    destination: str = param(ANY_NAME)
    user: str | None = param(Text(64), None)
    download: bool = param(Flag(), False)


@dataclass(**P)
class NotifyAdd:
    name: str = param(ANY_NAME)
    url: str = param(Text(MAX_URL_LEN))
    policy: str = param(Text(20, POLICIES), "failure")


@dataclass(**P)
class NotifyRemove:
    name: str = param(ANY_NAME)
    id: int = param(Whole(1, 2**31))


@dataclass(**P)
class PingUrlSet:
    name: str = param(ANY_NAME)
    url: str | None = param(Text(MAX_URL_LEN), None, "absent: remove it")


# -- results with a shape of their own ------------------------------------------------

@dataclass(frozen=True)
class StatusResult:
    version: str
    rclone_version: str
    uptime_s: float
    jobs_running: int
    jobs_queued: int
    destinations: int
    next_run: str | None
    next_run_destination: str | None
    warnings: list[str]
    #: names of the overdue destinations
    overdue: list[str]


@dataclass(frozen=True)
class KeyGenerated:
    public_key: str
    fingerprint: str
    path: str


@dataclass(frozen=True)
class KeyShown:
    public_key: str
    public_key_rfc4716: str
    fingerprint: str
    path: str


@dataclass(frozen=True)
class Removed:
    name: str
    removed: bool


@dataclass(frozen=True)
class NotifyTarget:
    destination: str
    id: int
    policy: str
    url: str  # redacted


@dataclass(frozen=True)
class NotifyRemoved:
    destination: str
    id: int
    removed: bool


@dataclass(frozen=True)
class NotifyTested:
    destination: str
    ok: bool
    results: list[dict[str, Any]]  # [{id, policy, url, ok}]


@dataclass(frozen=True)
class Method:
    name: str
    params: type
    #: a result class, or how the README names the result
    result: type | str
    doc: str
    admin: bool = False
    #: said after the params in the README table
    note: str = ""


DESTINATION, JOB = "destination", "job"

METHOD_LIST = (
    Method("status", NoParams, StatusResult, "Daemon summary: versions, uptime, job counts, destinations, next run.",
           note="`overdue`: names of the overdue destinations"),
    Method("key.generate", KeyGenerate, KeyGenerated, "Create the Ed25519 SSH key pair.", admin=True),
    Method("key.show", NoParams, KeyShown, "The public key line and its SHA256 fingerprint."),
    Method("dest.add", DestAdd, DESTINATION, "Add a destination.", admin=True),
    Method("dest.list", NoParams, "list of destinations", "All destinations."),
    Method("dest.show", DestName, DESTINATION, "One destination."),
    Method("dest.edit", DestEdit, DESTINATION, "Change fields of a destination (any field of dest.add).",
           admin=True),
    Method("dest.remove", DestName, Removed, "Remove a destination.", admin=True),
    Method("dest.enable", DestName, DESTINATION, "Enable a destination."),
    Method("dest.disable", DestName, DESTINATION, "Disable a destination."),
    Method("dest.trust", DestTrust, DESTINATION, "Re-pin the destination's host key.", admin=True),
    Method("dest.test", DestTest, "`{ok, class, message, hints, at, duration_s}`", "Connection test."),
    Method("dest.schedule", DestSchedule, DESTINATION, "Set the destination's sync or verify schedule.",
           note="`schedule`: `{kind, every? \\| time?, day?, expr?}`"),
    Method("sync", Sync, "job (the running/queued one if there is one)", "Queue a sync job.",
           note="`allow_empty`: a list of user names"),
    Method("job.list", JobList, "list of jobs, newest first", "Jobs, newest first."),
    Method("job.show", JobId, "job (with `progress` while it runs)", "One job."),
    Method("job.wait", JobWait, "the job once it has ended, or as it is at the timeout",
           "Wait until the job ends or timeout_s passes; returns the job with progress.",
           note="`timeout_s`: 0-60, default 30"),
    Method("job.cancel", JobId, JOB, "Cancel a queued or running job."),
    Method("restore", Restore, "job (kind `restore`)", "Queue a restore job."),
    Method("restore.list", RestoreList, "`{source, entries: [{path, size, modified, is_dir}], truncated}`",
           "What can be restored."),
    Method("dest.versions", DestName, "list of versions folder names", "The versions folders kept on the destination."),
    Method("verify", Verify, "job (kind `verify`)", "Queue a verify job."),
    Method("dest.usage", DestName, "job (kind `usage`); its `stats` hold the usage", "Queue a usage job."),
    Method("dest.notify.add", NotifyAdd, NotifyTarget, "Add a notification target: an Apprise URL and a policy.",
           admin=True, note="`url` comes back redacted"),
    Method("dest.notify.list", DestName, "list of `{destination, id, policy, url}`",
           "The destination's notification targets, URLs redacted."),
    Method("dest.notify.remove", NotifyRemove, NotifyRemoved, "Remove a notification target.", admin=True),
    Method("dest.notify.test", DestName, NotifyTested, "Send a test message to every notification target.",
           note="`results`: `[{id, policy, url, ok}]`"),
    Method("dest.ping_url.set", PingUrlSet, DESTINATION, "Set or clear the dead man's switch ping URL.", admin=True,
           note="`url` absent: remove it"),
)
METHODS: dict[str, Method] = {m.name: m for m in METHOD_LIST}
#: Methods that decide where data goes and as whom (which server, which
#: key, which password): root and the daemon's user only. A member of
#: socket_group could otherwise point a destination at a server of theirs
#: and restore "alice's files" from it into alice's tree, or have the
#: stored password sent to that server.
ADMIN_METHODS = frozenset(m.name for m in METHOD_LIST if m.admin)
