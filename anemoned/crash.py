"""How an unexpected exception (a bug) is told: an error id the operator
can find in the log and that the RPC error or job error also carries, and
where it happened as file:line:function of the last frames. Never values:
a frame's locals or the exception's text could hold a password or a URL
with a token."""
from __future__ import annotations

import os
import secrets
import traceback

FRAMES = 4


def where(exc: BaseException, frames: int = FRAMES) -> str:
    """The last `frames` frames, innermost last: 'jobs.py:240:_run < ...'."""
    stack = traceback.extract_tb(exc.__traceback__)[-frames:]
    return " > ".join(f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in stack) or "unknown"


def describe(exc: BaseException) -> tuple[str, str]:
    """(error id, where) for one occurrence."""
    return secrets.token_hex(4), where(exc)
