"""How an unexpected exception (a bug) is told: an error id the operator
can find in the log and that the RPC error or job error also carries, and
where it happened as file:line:function of the last frames. Never values:
a frame's locals or the exception's text could hold a password or a URL
with a token."""
from __future__ import annotations

import asyncio
import os
import secrets
import traceback
from typing import Awaitable, Callable

FRAMES = 4


def where(exc: BaseException, frames: int = FRAMES) -> str:
    """The last `frames` frames, innermost last: 'jobs.py:240:_run < ...'."""
    stack = traceback.extract_tb(exc.__traceback__)[-frames:]
    return " > ".join(f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in stack) or "unknown"


def describe(exc: BaseException) -> tuple[str, str]:
    """(error id, where) for one occurrence."""
    return secrets.token_hex(4), where(exc)


async def supervised(name: str, loop: Awaitable[None], on_crash: Callable[[BaseException, str], None]) -> None:
    """Run one background loop; if it raises, on_crash is told (the daemon
    then stops with a logged error and exit status 1, so systemd restarts
    it): schedules that silently stopped while the watchdog still reports
    healthy would be worse than a restart."""
    try:
        await loop
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        on_crash(exc, name)
