"""Pure builders of rclone invocations: backend options, environments,
argv flags and remote paths (the safety rules are in the package's
docstring, anemoned/rclone/__init__.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEST_REMOTE = "dest"
SRC_REMOTE = "src"


def space_list(values: list[str]) -> str:
    """A value of rclone's SpaceSepList type (combine upstreams, the sftp
    ssh command): CSV with spaces, every item quoted, quotes doubled, so a
    space or quote inside an item keeps it one item."""
    return " ".join('"' + v.replace('"', '""') + '"' for v in values)


def option_env(remote: str, options: dict[str, str]) -> dict[str, str]:
    """RCLONE_CONFIG_<REMOTE>_<OPTION>=value for each backend option."""
    prefix = f"RCLONE_CONFIG_{remote.upper()}_"
    return {prefix + key.upper(): value for key, value in options.items()}


@dataclass(frozen=True)
class SftpAccess:
    """What rclone needs to reach one destination (all already validated)."""

    host: str
    port: int
    user: str
    known_hosts_file: Path
    host_key_algorithms: str | None
    key_file: Path | None = None
    obscured_password: str | None = field(default=None, repr=False)


#: SFTP write size for uploads to OpenSSH servers. OpenSSH's sftp-server
#: takes messages up to 256 KiB (SFTP_MAX_MSG_LENGTH, unchanged for many
#: releases); 255 KiB leaves room for the header. rclone's default is the
#: RFC's 32 KiB. Measured: a 1 GiB upload takes 0.8x the time (8 paired
#: runs on loopback). Only for uploads: older OpenSSH servers answer reads
#: with at most 64 KiB, and rclone's documentation warns against larger
#: chunks for downloads from servers that send less.
OPENSSH_UPLOAD_CHUNK = "255k"


def upload_chunk_size(server_version: str | None) -> str | None:
    """The chunk_size for uploads to a server with this SSH identification;
    None (rclone's default) unless it says it is OpenSSH."""
    if server_version and server_version.startswith("SSH-2.0-OpenSSH_"):
        return OPENSSH_UPLOAD_CHUNK
    return None


def sftp_options(access: SftpAccess, hashcheck: bool = False, chunk_size: str | None = None) -> dict[str, str]:
    """The SFTP backend options for a destination.

    hashcheck=False is the sync default (NOTES-performance): size and
    modification time decide what changed, SSH protects the bytes in
    transit, and content is proven separately by a verify job. With it on,
    rclone runs md5sum/sha1sum on the server for every file. chunk_size is
    given for uploads only (upload_chunk_size).
    """
    options = {
        "type": "sftp",
        "host": access.host,
        "port": str(access.port),
        "user": access.user,
        "known_hosts_file": str(access.known_hosts_file),
        "shell_type": "unix",
        "disable_hashcheck": "false" if hashcheck else "true",
        "key_use_agent": "false",
        "ask_password": "false",
        # File names arrive exactly as they are (rclone's default would
        # turn control characters into look-alike symbols on the server);
        # POSIX SFTP servers take any name but "/" and NUL. Not "Dot":
        # set explicitly, it makes `touch` leave a file named "．" behind.
        "encoding": "Slash",
    }
    if access.host_key_algorithms:
        options["host_key_algorithms"] = access.host_key_algorithms
    if access.key_file is not None:
        options["key_file"] = str(access.key_file)
    if access.obscured_password is not None:
        options["pass"] = access.obscured_password
    if chunk_size is not None:
        options["chunk_size"] = chunk_size
    return options


def base_env(data_dir: Path) -> dict[str, str]:
    """The whole environment of an rclone process, minus backend options."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(data_dir),
        "LANG": "C.UTF-8",
        "RCLONE_CACHE_DIR": str(data_dir / "rclone-cache"),
    }


def global_args(log_level: str = "INFO") -> list[str]:
    """Flags every rclone run gets: no config file, JSON logs we can parse,
    bounded connection waits.

    Low-level retries: rclone's default of 10 makes a refused connection
    take 11 s per command (its pacer sleeps between attempts), and a server
    that accepts TCP but never answers (--timeout, which also bounds the SSH
    handshake) 10 minutes; 3 keeps a flaky moment survivable and a dead
    server quick (0.4 s refused). A job first checks that the server
    answers at all (reach.preflight), so a silent server fails in seconds
    without shortening --timeout, which a long server-side operation (an
    md5sum of a large file during verify) needs.
    """
    return [
        "--config", "",
        "--use-json-log", "--log-level", log_level,
        "--contimeout", "10s", "--timeout", "60s", "--low-level-retries", "3",
        "--ask-password=false",
    ]


#: rclone's --timeout is an idle timeout per connection, and it is what
#: bounds a server that accepts the connection and then says nothing (the
#: SSH handshake waits for it; --contimeout covers only the TCP connect).
#: Each attempt waits that long, so the bound is timeout x low-level
#: retries x retries. Measured against such a server: 20 s per attempt.
QUICK_IDLE_TIMEOUT_S = 20


def quick_args() -> list[str]:
    """Flags, after global_args, for a short run an operator waits on (a
    listing): one attempt, given up after QUICK_IDLE_TIMEOUT_S of silence,
    so a silent server is reported in about that long, not after retries
    of 60 s each (global_args' default: 3 x 10 attempts, half an hour)."""
    return ["--timeout", f"{QUICK_IDLE_TIMEOUT_S}s", "--retries", "1", "--low-level-retries", "1"]


def job_retry_args() -> list[str]:
    """Flags, after global_args, for a job's side runs (usage's listing, a
    sync's pruning of old versions): a flaky moment is retried, a silent
    server is given up on after 3 attempts of QUICK_IDLE_TIMEOUT_S (no
    request to a server that works waits that long)."""
    return ["--timeout", f"{QUICK_IDLE_TIMEOUT_S}s", "--retries", "1", "--low-level-retries", "3"]


def dest_path(remote_path: str, *parts: str) -> str:
    """`dest:/remote/path/part...`. Parts are names we produced or validated;
    after the fixed remote name they are only ever a path."""
    path = remote_path.rstrip("/") or "/"
    for part in parts:
        path = f"{path.rstrip('/')}/{part}"
    return f"{DEST_REMOTE}:{path}"
