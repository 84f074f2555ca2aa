"""Destinations: the value type and the validation of every field.

Every check raises errors.InvalidField naming the field. The rules are strict on
purpose: these values end up in rclone's backend options and in paths on a
remote server, so anything that could be read as syntax is refused here,
before it gets anywhere near a process.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from . import link_options
from .hostkeys import HostKey
from .errors import InvalidField

NAME_RE = re.compile(r"^[A-Za-z0-9._-][A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-]\Z|^[A-Za-z0-9._-]\Z")
# POSIX portable user names (what useradd accepts), up to 32 characters.
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}\Z")
DNS_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
FINGERPRINT_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}\Z")
DEFAULT_KEY_FILE = "certs/rclone_key"


@dataclass(frozen=True)
class Destination:
    name: str
    host: str
    port: int
    user: str
    auth: str  # "key" | "password"
    key_file: str | None  # as the operator gave it (relative to data_dir or absolute)
    remote_path: str
    enabled: bool
    host_key: HostKey | None
    password_enc: bytes | None = field(default=None, repr=False)
    schedule: dict[str, Any] = field(default_factory=lambda: {"kind": "off"})
    schedule_state: dict[str, Any] = field(default_factory=dict)
    last_test: dict[str, Any] | None = None
    created_at: str = ""
    max_delete: int = 5000
    max_delete_percent: int = 20
    keep_versions_days: int = 30
    versions_pruned_at: str | None = None
    warn_free_percent: int = 10
    verify_schedule: dict[str, Any] = field(default_factory=lambda: {"kind": "off"})
    verify_schedule_state: dict[str, Any] = field(default_factory=dict)
    #: the server's SSH identification ("SSH-2.0-OpenSSH_9.2p1 ..."), as seen
    #: when its host key was fetched
    server_version: str | None = None
    #: seconds without progress after which a user's transfer is stopped
    stall_timeout: int = 300
    #: days between full syncs (unchanged users synced too); 0: every sync
    full_sync_every: int = 7
    #: verifies compare by downloading (not the server's hashes)
    verify_download: bool = False
    #: notification targets: [{"id", "policy", "url_enc", "shown"}]
    notifications: list[dict[str, Any]] = field(default_factory=list)
    #: the dead man's switch: {"url_enc", "shown"} or None
    ping: dict[str, Any] | None = None
    #: overdue past this many seconds without a successful sync (0: off)
    max_age_s: int = 0
    #: what the overdue check last told: {"overdue_since": ISO} or {}
    monitor_state: dict[str, Any] = field(default_factory=dict)
    #: the link options set for it (link_options.FIELDS; absent: default)
    link: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Destination":
        return cls(
            name=row["name"], host=row["host"], port=row["port"], user=row["user"], auth=row["auth"],
            key_file=row["key_file"], remote_path=row["remote_path"], enabled=bool(row["enabled"]),
            host_key=HostKey.from_text(row["host_key"]) if row.get("host_key") else None,
            password_enc=row["password_enc"], schedule=row["schedule"], schedule_state=row.get("schedule_state") or {},
            last_test=row["last_test"], created_at=row["created_at"], max_delete=row["max_delete"],
            max_delete_percent=row["max_delete_percent"], keep_versions_days=row["keep_versions_days"],
            versions_pruned_at=row["versions_pruned_at"], warn_free_percent=row["warn_free_percent"],
            verify_schedule=row["verify_schedule"], verify_schedule_state=row["verify_schedule_state"],
            server_version=row.get("server_version"), stall_timeout=row.get("stall_timeout", 300),
            full_sync_every=row.get("full_sync_every", 7), verify_download=bool(row.get("verify_download")),
            notifications=row.get("notifications") or [],
            ping=row.get("ping"), max_age_s=row.get("max_age_s") or 0, monitor_state=row.get("monitor_state") or {},
            link=row.get("link") or {},
        )

    def to_row(self) -> dict[str, Any]:
        return {
            "name": self.name, "host": self.host, "port": self.port, "user": self.user, "auth": self.auth,
            "key_file": self.key_file, "remote_path": self.remote_path, "enabled": self.enabled,
            "host_key": self.host_key.to_text() if self.host_key else None, "password_enc": self.password_enc,
            "schedule": self.schedule, "schedule_state": self.schedule_state, "last_test": self.last_test,
            "created_at": self.created_at, "max_delete": self.max_delete,
            "max_delete_percent": self.max_delete_percent, "keep_versions_days": self.keep_versions_days,
            "versions_pruned_at": self.versions_pruned_at, "warn_free_percent": self.warn_free_percent,
            "verify_schedule": self.verify_schedule, "verify_schedule_state": self.verify_schedule_state,
            "server_version": self.server_version, "stall_timeout": self.stall_timeout,
            "full_sync_every": self.full_sync_every, "verify_download": self.verify_download,
            "notifications": self.notifications, "ping": self.ping,
            "max_age_s": self.max_age_s, "monitor_state": self.monitor_state, "link": self.link,
        }

    def public(self) -> dict[str, Any]:
        """The fields every client may see (never the password)."""
        return {
            "name": self.name, "host": self.host, "port": self.port, "user": self.user, "auth": self.auth,
            "key_file": self.key_file if self.auth == "key" else None, "remote_path": self.remote_path,
            "enabled": self.enabled, "host_key_fingerprint": self.host_key.fingerprint if self.host_key else None,
            "host_key_type": self.host_key.key_type if self.host_key else None,
            "schedule": _schedule(self.schedule), "last_test": self.last_test, "max_delete": self.max_delete,
            "max_delete_percent": self.max_delete_percent, "keep_versions_days": self.keep_versions_days,
            "warn_free_percent": self.warn_free_percent, "verify_schedule": _schedule(self.verify_schedule),
            "server_version": self.server_version, "stall_timeout": self.stall_timeout,
            "full_sync_every": self.full_sync_every, "verify_download": self.verify_download,
            # URLs can hold tokens: only their redacted form is ever shown.
            "notifications": [{"id": n["id"], "policy": n["policy"], "url": n["shown"]} for n in self.notifications],
            "ping_url": self.ping["shown"] if self.ping else None,
            **link_options.view(self.link),
        }


def _schedule(stored: Any) -> dict[str, Any]:
    """A stored schedule as views show it: one that cannot be read (a
    damaged cell reads as None) is off in effect, and the scheduler says
    why in the destination's warnings. Only views: the scheduler works on
    what is stored."""
    return stored if isinstance(stored, dict) else {"kind": "off"}


def check_name(value: str) -> None:
    if not NAME_RE.match(value):
        raise InvalidField("name", "must be 1-64 letters, digits, spaces, '.', '_' or '-', not starting or ending with a space")


def check_host(value: str) -> str:
    """The host, normalised (IPv6 literals compressed); raises naming `host`."""
    text = value.strip("[]") if value.startswith("[") and value.endswith("]") else value
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if not name or len(name) > 253 or not all(DNS_LABEL_RE.match(label) for label in labels) or labels[-1].isdigit():
        raise InvalidField("host", "must be a DNS name or an IPv4/IPv6 address")
    return name.lower()


def check_user(value: str) -> None:
    if not USER_RE.match(value):
        raise InvalidField("user", "must be a POSIX user name: letters, digits, '.', '_', '-' (at most 32, not starting with '-' or '.')")


def check_remote_path(value: str) -> str:
    """The path normalised (no trailing or doubled slashes)."""
    if not value.startswith("/"):
        raise InvalidField("remote_path", "must be an absolute path (starting with /)")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidField("remote_path", "must not contain control characters")
    if len(value) > 1024:
        raise InvalidField("remote_path", "must be at most 1024 characters")
    parts = PurePosixPath(value).parts
    if ".." in parts or "." in value.split("/"):
        raise InvalidField("remote_path", "must not contain '.' or '..' components")
    return str(PurePosixPath(value))


def check_fingerprint(value: str) -> None:
    if not FINGERPRINT_RE.match(value):
        raise InvalidField("host_key_fingerprint", "must look like SHA256: followed by 43 base64 characters (as ssh-keygen -lf prints)")


def check_password(value: str) -> None:
    if not value or len(value) > 1024 or "\n" in value or "\x00" in value:
        raise InvalidField("password", "must be 1-1024 characters on one line")

