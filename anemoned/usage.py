"""Usage jobs: what the destination holds per user, in versions/, and how
much room the login user has left on the server.

A usage job that cannot reach the server, or whose listing fails, fails:
an empty result is reported only when the server said there is nothing
(rclone exit status 3, "directory not found").
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from . import rclone, space

OnRecord = Callable[[dict[str, Any]], None]

#: rclone's exit status for "directory not found".
NOT_FOUND_STATUS = 3
#: Whole-run bounds. A silent server is given up on well before, after
#: 3 attempts of rclone's idle timeout (rclone.job_retry_args).
LISTING_TIMEOUT_S = 3600.0
ABOUT_TIMEOUT_S = 60.0


class UsageError(Exception):
    """The server could not be measured; the message is the job's error."""


async def _json(binary: str, env: dict[str, str], args: list[str], on_record: OnRecord, timeout_s: float,
                what: str) -> Any:
    """rclone's JSON answer; None when the path does not exist (nothing
    synced there yet). Raises UsageError with the classified message when
    rclone failed or did not finish in timeout_s: a usage measured from a
    failed listing would report a full server as empty."""
    try:
        result = await rclone.run(binary, [*args, *rclone.global_args("NOTICE"), *rclone.job_retry_args()], env,
                                  capture_stdout=True, on_record=on_record, timeout_s=timeout_s)
    except asyncio.TimeoutError:
        raise UsageError(f"{rclone.TIMEOUT}: {what} did not finish within {timeout_s:.0f} s") from None
    if not result.ok:
        messages = rclone.messages_of(result)
        cls = rclone.classify(messages)
        if result.returncode == NOT_FOUND_STATUS or cls == rclone.PATH_MISSING:
            return None
        raise UsageError(rclone.failure_message(cls, messages, f"{what}: rclone exited with status {result.returncode}"))
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise UsageError(f"{what}: rclone's answer was not JSON") from None


async def about(binary: str, env: dict[str, str], remote_path: str, on_record: OnRecord) -> dict[str, Any]:
    """The room where remote_path lives: {"free", "total", "free_source"},
    {} when the server does not say. "free" is what the login user can
    still write (space.py): asked by statvfs@openssh.com, else rclone's
    `about`."""
    vfs = await space.statvfs(env, remote_path)
    if vfs is not None:
        return {"free": vfs.free, "total": vfs.total, "free_source": "statvfs f_bavail"}
    try:
        answer = await _json(binary, env, ["about", "--json", rclone.dest_path(remote_path)], on_record,
                             ABOUT_TIMEOUT_S, "asking the server for its free space")
    except UsageError:
        return {}
    if not isinstance(answer, dict):
        return {}
    return {**answer, "free_source": "rclone about"}


async def measure(binary: str, env: dict[str, str], remote_path: str, on_record: OnRecord) -> dict[str, Any]:
    """The usage of a destination; raises UsageError when it cannot be measured."""
    users: dict[str, dict[str, int]] = {}
    listing = await _json(binary, env, ["lsjson", "-R", "--files-only", "--no-mimetype", "--no-modtime",
                                        rclone.dest_path(remote_path, "backup")], on_record, LISTING_TIMEOUT_S,
                          "listing backup/")
    for entry in listing or []:
        user = entry["Path"].split("/", 1)[0]
        u = users.setdefault(user, {"bytes": 0, "files": 0})
        u["bytes"] += int(entry.get("Size") or 0)
        u["files"] += 1
    versions = await _json(binary, env, ["size", "--json", rclone.dest_path(remote_path, "versions")], on_record,
                           LISTING_TIMEOUT_S, "measuring versions/") or {}
    room = await about(binary, env, remote_path, on_record)
    total_bytes = sum(u["bytes"] for u in users.values())
    return {
        "users": users,
        "backup_bytes": total_bytes,
        "backup_files": sum(u["files"] for u in users.values()),
        "versions_bytes": int(versions.get("bytes") or 0),
        "versions_files": int(versions.get("count") or 0),
        "free_bytes": room.get("free"),
        "total_bytes": room.get("total"),
        "free_source": room.get("free_source"),
    }


def free_space_warning(usage: dict[str, Any] | None, min_free_percent: int) -> str | None:
    """A warning when the space left to the login user is under the
    threshold (as a share of the file system's size)."""
    if not usage or not usage.get("total_bytes") or usage.get("free_bytes") is None:
        return None
    percent = 100 * usage["free_bytes"] / usage["total_bytes"]
    if percent < min_free_percent:
        return f"only {percent:.1f}% free on the server ({usage['free_bytes']} bytes), under {min_free_percent}%"
    return None
