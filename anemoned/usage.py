"""Usage jobs: what the destination holds per user, in versions/, and how
much room the server has left."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from . import rclone
from .protocol import ErrorCode, RpcError

OnRecord = Callable[[dict[str, Any]], None]
#: Whole-run bounds. A silent server is given up on well before, after
#: 3 attempts of rclone's idle timeout (rclone.job_retry_args).
LISTING_TIMEOUT_S = 3600.0
ABOUT_TIMEOUT_S = 60.0


async def _json(binary: str, env: dict[str, str], args: list[str], on_record: OnRecord, timeout_s: float,
                what: str) -> Any:
    """rclone's JSON answer; None when the path does not exist (nothing
    synced there yet); raises RpcError naming the class when rclone failed
    or did not finish in timeout_s: a usage measured from a failed listing
    would report a full server as empty."""
    try:
        result = await rclone.run(binary, [*args, *rclone.global_args("NOTICE"), *rclone.job_retry_args()], env,
                                  capture_stdout=True, on_record=on_record, timeout_s=timeout_s)
    except asyncio.TimeoutError:
        raise RpcError(ErrorCode.OPERATION_FAILED, f"{rclone.TIMEOUT}: {what} did not finish within {timeout_s:.0f} s",
                       {"class": rclone.TIMEOUT}) from None
    if not result.ok:
        messages = rclone.messages_of(result)
        cls = rclone.classify(messages)
        if result.returncode == 3 or cls == rclone.PATH_MISSING:
            return None
        first = rclone.failure_message(None, messages, f"rclone exited with {result.returncode}")
        raise RpcError(ErrorCode.OPERATION_FAILED, f"{cls + ': ' if cls else ''}{what}: {first}", {"class": cls})
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise RpcError(ErrorCode.OPERATION_FAILED, f"{what}: rclone's answer was not JSON") from None


async def about(binary: str, env: dict[str, str], remote_path: str, on_record: OnRecord) -> dict[str, Any]:
    """The server's space where remote_path lives, as `rclone about` reports
    it (statvfs over SFTP): "free", "total", ...; {} when it does not say
    (not every server reports it; not knowing is not a failure)."""
    try:
        answer = await _json(binary, env, ["about", "--json", rclone.dest_path(remote_path)], on_record,
                             ABOUT_TIMEOUT_S, "asking the server for its free space")
    except RpcError:
        return {}
    return answer if isinstance(answer, dict) else {}


async def measure(binary: str, env: dict[str, str], remote_path: str, on_record: OnRecord) -> dict[str, Any]:
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
    space = await about(binary, env, remote_path, on_record)
    total_bytes = sum(u["bytes"] for u in users.values())
    return {
        "users": users,
        "backup_bytes": total_bytes,
        "backup_files": sum(u["files"] for u in users.values()),
        "versions_bytes": int(versions.get("bytes") or 0),
        "versions_files": int(versions.get("count") or 0),
        "free_bytes": space.get("free"),
        "total_bytes": space.get("total"),
    }


def free_space_warning(usage: dict[str, Any] | None, min_free_percent: int) -> str | None:
    """A warning when the server's free space is under the threshold."""
    if not usage or not usage.get("total_bytes") or usage.get("free_bytes") is None:
        return None
    percent = 100 * usage["free_bytes"] / usage["total_bytes"]
    if percent < min_free_percent:
        return f"only {percent:.1f}% free on the server ({usage['free_bytes']} bytes), under {min_free_percent}%"
    return None
