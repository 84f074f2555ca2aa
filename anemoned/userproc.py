"""Running a program as a user, for what it prints: the scans of a tree
(find) and a verify's local hashes (rclone md5sum).

The program is the user's own process: they may stop it (SIGSTOP) or make
it wait forever. So what bounds it is silence, not total time (hashing a
large tree takes long, and prints as it goes): no output for idle_timeout_s
and it is killed (CAP_KILL: another uid's process group) with
asyncio.TimeoutError, costing that user alone.
"""
from __future__ import annotations

import asyncio
import os
import signal

from .identity import UserIdentity

#: The whole environment of a user's program.
USER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "HOME": "/"}


async def output_of(identity: UserIdentity, argv: list[str], idle_timeout_s: float,
                    env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of argv run as identity, in its own
    session, cwd /, stdin closed."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**USER_ENV, **(env or {})}, cwd="/", start_new_session=True, **identity.popen_args())
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()

    async def drain_errors() -> None:  # kept to 1 MiB; read to the end so the program never blocks on it
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(1 << 16):
            if len(err) < 1 << 20:
                err.extend(chunk)

    errors = asyncio.ensure_future(drain_errors())
    try:
        while True:
            chunk = await asyncio.wait_for(proc.stdout.read(1 << 16), idle_timeout_s)
            if not chunk:
                break
            out += chunk
        await asyncio.wait_for(errors, idle_timeout_s)
        await asyncio.wait_for(proc.wait(), idle_timeout_s)
    except BaseException:
        errors.cancel()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        await proc.wait()
        raise
    return proc.returncode or 0, bytes(out), bytes(err)
