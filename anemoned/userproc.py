"""Running a program as a user, for what it prints: the scans of a tree
(find) and a verify's local hashes (rclone md5sum).

The program is the user's own process: they may stop it (SIGSTOP) or make
it wait forever. Two consequences:
- It is started from a thread of its own, never from the event loop: from
  the moment the child takes the user's uid until it execs, the user can
  stop it, and Python's fork-exec waits for the exec. Started on the loop,
  that would freeze the whole daemon. A start that does not finish within
  the bound is abandoned (the process is killed when it appears). The
  thread then waits for the process: a parent-death signal is tied to the
  thread that started the child.
- What bounds it is silence, not total time (hashing a large tree takes
  long, and prints as it goes): no output for idle_timeout_s and it is
  killed (CAP_KILL: another uid's process group) with asyncio.TimeoutError,
  costing that user alone.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from typing import IO

from .identity import UserIdentity

#: The whole environment of a user's program.
USER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "HOME": "/"}


def _kill(proc: "subprocess.Popen[bytes]") -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def start_as(identity: UserIdentity, argv: list[str], timeout_s: float, env: dict[str, str] | None = None,
                   ) -> "subprocess.Popen[bytes]":
    """argv started as identity (own session, cwd /, stdin closed, stdout
    and stderr piped) from a thread of its own; asyncio.TimeoutError when
    the start takes longer than timeout_s."""
    loop = asyncio.get_running_loop()
    started: asyncio.Future[subprocess.Popen[bytes]] = loop.create_future()

    def deliver(proc: "subprocess.Popen[bytes]") -> None:
        if started.done():  # abandoned meanwhile
            _kill(proc)
            threading.Thread(target=proc.wait, daemon=True).start()
        else:
            started.set_result(proc)

    def fail(err: BaseException) -> None:
        if not started.done():
            started.set_exception(err)

    def spawn() -> None:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env={**USER_ENV, **(env or {})}, cwd="/", start_new_session=True,
                                    **identity.popen_args())
        except BaseException as err:  # noqa: BLE001 (handed to the waiting coroutine)
            loop.call_soon_threadsafe(fail, err)
            return
        loop.call_soon_threadsafe(deliver, proc)
        # This thread lives as long as the process: the kernel's parent-death
        # signal (setpriv --pdeathsig) follows the thread that started it.
        proc.wait()

    threading.Thread(target=spawn, name="user-process", daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.shield(started), timeout_s)
    except BaseException:
        if not started.done():
            started.cancel()
        raise


async def _reader(loop: asyncio.AbstractEventLoop, pipe: IO[bytes]) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


async def output_of(identity: UserIdentity, argv: list[str], idle_timeout_s: float,
                    env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of argv run as identity."""
    loop = asyncio.get_running_loop()
    proc = await start_as(identity, argv, idle_timeout_s, env)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    try:
        stdout, stderr = await _reader(loop, proc.stdout), await _reader(loop, proc.stderr)

        async def drain_errors() -> None:  # kept to 1 MiB; read to the end so the program never blocks on it
            while chunk := await stderr.read(1 << 16):
                if len(err) < 1 << 20:
                    err.extend(chunk)

        errors = asyncio.ensure_future(drain_errors())
        try:
            while chunk := await asyncio.wait_for(stdout.read(1 << 16), idle_timeout_s):
                out += chunk
            await asyncio.wait_for(errors, idle_timeout_s)
        finally:
            errors.cancel()
        code = await asyncio.wait_for(asyncio.to_thread(proc.wait), idle_timeout_s)
    except BaseException:
        _kill(proc)
        threading.Thread(target=proc.wait, daemon=True).start()
        raise
    return code, bytes(out), bytes(err)
