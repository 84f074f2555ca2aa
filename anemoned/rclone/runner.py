"""Running rclone, and reading what it says.

The runner puts rclone in its own process group (so a cancel reaches every
thread and child) and asks the kernel to kill it if the daemon dies
(PR_SET_PDEATHSIG, set by util-linux's setpriv just before it execs rclone),
so no rclone outlives the daemon, even after SIGKILL. It is not done with
subprocess's preexec_fn: Python code between fork and exec can deadlock on a
lock held by another thread (asyncio's child watcher threads), and the
parent then blocks in fork_exec with the whole event loop.

Every line rclone writes to stderr is parsed as one JSON log record
(--use-json-log, argv.global_args) with the run's secrets redacted first.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from dataclasses import dataclass
from typing import Any, Callable

from .settle import Settlement

_SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin")
#: argv prefix that makes the kernel SIGKILL the child when the daemon dies.
DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []


#: Backend options whose values are secrets (obscured is not hidden:
#: `rclone reveal` undoes it).
SECRET_OPTIONS = ("PASS", "KEY_PEM", "KEY_FILE_PASS")
REDACTED = b"[redacted]"
#: The longest line of rclone's log read (bytes); a longer one is skipped.
LINE_LIMIT = 1024 * 1024


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
    return _parse(line)[0]


def _parse(line: bytes) -> tuple[dict[str, Any], bool]:
    """The record, and whether the line was a JSON object (rclone's own
    records are; a panic, or its plain lines before JSON logging starts,
    are not)."""
    text = line.decode("utf-8", errors="replace").rstrip("\n")
    try:
        record = json.loads(text)
        if isinstance(record, dict):
            return record, True
    except ValueError:
        pass
    return {"level": "error", "msg": text}, False


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
    settle_early: bool = False,
) -> RcloneResult:
    """Run rclone to completion; raises asyncio.TimeoutError after timeout_s
    and CancelledError when cancelled, having stopped the process group.

    Every stderr line is parsed as a JSON log record and handed to
    on_record; records are kept in the result unless keep_records is off
    (a large sync would otherwise hold every line in memory).

    With settle_early (a run at DEBUG level), a run whose outcome is known
    to be success (settle.py) is killed instead of waited for while it
    closes its connections, and reported with status 0 (if the kill is
    what ended it: one that had exited keeps its own status).
    """
    proc = await asyncio.create_subprocess_exec(
        *DIE_WITH_PARENT, binary, *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if capture_stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env, start_new_session=True,
        limit=LINE_LIMIT,
    )
    records: list[dict[str, Any]] = []
    secrets = secret_values(env)
    settlement = Settlement(args) if settle_early else None
    killed_at_mark = False

    async def read_stderr() -> None:
        nonlocal killed_at_mark
        assert proc.stderr is not None
        while True:
            try:
                line = await proc.stderr.readline()
            except ValueError:  # a line over the limit: skip what is buffered
                if settlement is not None:
                    settlement.unreadable()
                continue
            if not line:
                return
            record, parsed = _parse(redact(line, secrets))
            if keep_records:
                records.append(record)
            if on_record is not None:
                on_record(record)
            if settlement is not None and settlement.feed(record, parsed) and proc.returncode is None:
                killed_at_mark = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

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
    returncode = proc.returncode if proc.returncode is not None else -1
    if killed_at_mark and returncode == -signal.SIGKILL:
        returncode = 0
    return RcloneResult(returncode, records, stdout)


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
