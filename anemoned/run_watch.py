"""Watching one rclone run: stopped when it makes no progress for the
destination's stall_timeout (a user's FIFO, a hung mount), or when the
server no longer answers (asked after PROBE_AFTER_S of silence)."""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Awaitable, Callable

from . import rclone, reach
from .rclone_stats import StatsCollector

#: After this long without progress, ask whether the server still answers
#: (a frozen server or link fails the job as `timeout` within about a
#: minute, long before a user's stall_timeout).
PROBE_AFTER_S = float(os.environ.get("ANEMONED_PROBE_AFTER_S", "20"))  # lowered by tests only


async def watch(task: "asyncio.Future[rclone.RcloneResult]", collector: StatsCollector, stall_timeout_s: float,
                probe: Callable[[], Awaitable[str]] | None) -> tuple[bool, str | None]:
    """Wait for the run; stop it when it stalls (True) or when the
    server no longer answers (its failure, "class: message")."""
    probed_at = 0.0
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if done:
                return False, None
            now = time.monotonic()
            quiet = now - collector.last_activity
            if quiet > stall_timeout_s:
                await _stop(task)
                return True, None
            if probe is not None and quiet > PROBE_AFTER_S and now - probed_at > PROBE_AFTER_S:
                probed_at = now
                try:
                    await probe()
                except reach.Unanswered as err:
                    await _stop(task)
                    return False, err.error
    except asyncio.CancelledError:
        await _stop(task)
        raise


async def _stop(task: "asyncio.Future[Any]") -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
