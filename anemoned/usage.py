"""Usage jobs: what the destination holds per user, in versions/, and how
much room the server has left."""
from __future__ import annotations

import json
from typing import Any, Callable

from . import rclone

OnRecord = Callable[[dict[str, Any]], None]


async def _json(binary: str, env: dict[str, str], args: list[str], on_record: OnRecord,
                timeout_s: float = 3600) -> Any:
    result = await rclone.run(binary, [*args, *rclone.global_args("NOTICE")], env, capture_stdout=True,
                              on_record=on_record, timeout_s=timeout_s)
    if not result.ok:
        return None
    try:
        return json.loads(result.stdout)
    except ValueError:
        return None


async def about(binary: str, env: dict[str, str], remote_path: str, on_record: OnRecord) -> dict[str, Any]:
    """The server's space where remote_path lives, as `rclone about` reports
    it (statvfs over SFTP): "free", "total", ...; {} when it does not say."""
    answer = await _json(binary, env, ["about", "--json", rclone.dest_path(remote_path)], on_record, timeout_s=60)
    return answer if isinstance(answer, dict) else {}


async def measure(binary: str, env: dict[str, str], remote_path: str, on_record: OnRecord) -> dict[str, Any]:
    users: dict[str, dict[str, int]] = {}
    listing = await _json(binary, env, ["lsjson", "-R", "--files-only", "--no-mimetype", "--no-modtime",
                                        rclone.dest_path(remote_path, "backup")], on_record)
    for entry in listing or []:
        user = entry["Path"].split("/", 1)[0]
        u = users.setdefault(user, {"bytes": 0, "files": 0})
        u["bytes"] += int(entry.get("Size") or 0)
        u["files"] += 1
    versions = await _json(binary, env, ["size", "--json", rclone.dest_path(remote_path, "versions")], on_record) or {}
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
