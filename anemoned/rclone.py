"""How rclone is invoked: pure builders, failure interpretation, thin runner.

Safety rules, for every feature:
- No value a person typed is ever put into an rclone connection string or
  a shell command. The SFTP backend is configured only through
  RCLONE_CONFIG_DEST_<OPTION> environment variables, whose values rclone
  never parses for further options; the remote name is the constant
  DEST_REMOTE, so a path after `dest:` is always just a path.
- The environment is built from nothing: inherited RCLONE_* variables,
  SSH_AUTH_SOCK and the rest never reach rclone.
- shell_type is set explicitly (no detection commands run on the server).
- Passwords travel only in the environment, obscured as rclone requires.

The runner puts rclone in its own process group (so a cancel reaches every
thread and child) and asks the kernel to kill it if the daemon dies
(PR_SET_PDEATHSIG, set by util-linux's setpriv just before it execs rclone),
so no rclone outlives the daemon, even after SIGKILL. It is not done with
subprocess's preexec_fn: Python code between fork and exec can deadlock on a
lock held by another thread (asyncio's child watcher threads), and the
parent then blocks in fork_exec with the whole event loop.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

DEST_REMOTE = "dest"
SRC_REMOTE = "src"
_SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin")
#: argv prefix that makes the kernel SIGKILL the child when the daemon dies.
DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []


# -- pure builders --------------------------------------------------------------

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
    """Flags, after global_args, for the read-only runs of a job (usage):
    a flaky moment is retried, a silent server is given up on after 3
    attempts of QUICK_IDLE_TIMEOUT_S (a listing never waits that long for
    a server that works)."""
    return ["--timeout", f"{QUICK_IDLE_TIMEOUT_S}s", "--retries", "1", "--low-level-retries", "3"]


def dest_path(remote_path: str, *parts: str) -> str:
    """`dest:/remote/path/part...`. Parts are names we produced or validated;
    after the fixed remote name they are only ever a path."""
    path = remote_path.rstrip("/") or "/"
    for part in parts:
        path = f"{path.rstrip('/')}/{part}"
    return f"{DEST_REMOTE}:{path}"


# -- interpreting failures ---------------------------------------------------------

#: Failure classes, as `dest test` names them.
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

#: Ordered: the first class whose needle appears wins. Needles are exact
#: fragments of rclone's (Go's ssh and sftp packages') messages; a
#: fragment that could mean several things (Go's bare "EOF", a generic
#: "couldn't connect SSH:" prefix) is deliberately not here.
_PATTERNS: list[tuple[str, tuple[str, ...]]] = [
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


def classify(messages: list[str]) -> str | None:
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


def messages_of(result: "RcloneResult") -> list[str]:
    """What a failed run said: its error messages, else every message (a
    run that fails with nothing at error level still says why)."""
    return error_messages(result.records) or [str(r.get("msg")) for r in result.records]


def failure_message(cls: str | None, messages: list[str], fallback: str) -> str:
    """What a failed run records: "class: first error", the class left out
    when it is not known, the fallback when rclone said nothing."""
    first = _ATTEMPT_PREFIX.sub("", messages[0])[:300] if messages else fallback
    return f"{cls}: {first}" if cls else first


#: Backend options whose values are secrets (obscured is not hidden:
#: `rclone reveal` undoes it).
SECRET_OPTIONS = ("PASS", "KEY_PEM", "KEY_FILE_PASS")
REDACTED = b"[redacted]"


def secret_values(env: dict[str, str]) -> list[bytes]:
    """The secrets an rclone run's environment holds, longest first."""
    found = {value.encode() for key, value in env.items()
             if key.startswith("RCLONE_CONFIG_") and any(key.endswith("_" + o) for o in SECRET_OPTIONS)
             and len(value) >= 4}
    return sorted(found, key=len, reverse=True)


def redact(line: bytes, secrets: list[bytes]) -> bytes:
    """line with every secret replaced: whatever rclone says (a debug line
    that echoes its configuration, an error quoting an option) reaches job
    logs, job errors and the daemon log only without them."""
    for secret in secrets:
        if secret in line:
            line = line.replace(secret, REDACTED)
    return line


def parse_log_line(line: bytes) -> dict[str, Any]:
    """One line of rclone's --use-json-log output as a record; a line that
    is not JSON (a Go panic, say) becomes an error record."""
    text = line.decode("utf-8", errors="replace").rstrip("\n")
    try:
        record = json.loads(text)
        if isinstance(record, dict):
            return record
    except ValueError:
        pass
    return {"level": "error", "msg": text}


# -- running ---------------------------------------------------------------------

@dataclass
class RcloneResult:
    returncode: int
    records: list[dict[str, Any]]
    stdout: bytes = b""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


async def run(
    binary: str,
    args: list[str],
    env: dict[str, str],
    *,
    timeout_s: float | None = None,
    stdin: bytes | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    keep_records: bool = True,
    capture_stdout: bool = False,
) -> RcloneResult:
    """Run rclone to completion; raises asyncio.TimeoutError after timeout_s
    and CancelledError when cancelled, having stopped the process group.

    Every stderr line is parsed as a JSON log record and handed to
    on_record; records are kept in the result unless keep_records is off
    (a large sync would otherwise hold every line in memory).
    """
    proc = await asyncio.create_subprocess_exec(
        *DIE_WITH_PARENT, binary, *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if capture_stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env, start_new_session=True,
        limit=1024 * 1024,
    )
    records: list[dict[str, Any]] = []
    secrets = secret_values(env)

    async def read_stderr() -> None:
        assert proc.stderr is not None
        while True:
            try:
                line = await proc.stderr.readline()
            except ValueError:  # a line over the limit: skip what is buffered
                continue
            if not line:
                return
            record = parse_log_line(redact(line, secrets))
            if keep_records:
                records.append(record)
            if on_record is not None:
                on_record(record)

    async def communicate() -> bytes:
        out = b""
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            await proc.stdin.drain()
            proc.stdin.close()
        reader = asyncio.ensure_future(read_stderr())
        if capture_stdout:
            assert proc.stdout is not None
            out = await proc.stdout.read()
        await reader
        await proc.wait()
        return out

    try:
        stdout = await asyncio.wait_for(communicate(), timeout_s)
    except BaseException:
        await stop(proc)
        raise
    return RcloneResult(proc.returncode if proc.returncode is not None else -1, records, stdout)


async def stop(proc: asyncio.subprocess.Process, grace_s: float = 3.0) -> None:
    """SIGTERM the process group, SIGKILL it after grace_s."""
    if proc.returncode is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), wait_s)
            return
        except asyncio.TimeoutError:
            continue


async def obscure(binary: str, secret: str) -> str:
    """rclone's obscured form of a password, computed by rclone itself with
    the secret on stdin (never in argv)."""
    result = await run(binary, ["obscure", "-"], {"PATH": "/usr/bin:/bin"}, stdin=secret.encode(),
                       timeout_s=30, capture_stdout=True)
    if not result.ok:
        raise RuntimeError("rclone obscure failed")
    return result.stdout.decode().strip()
