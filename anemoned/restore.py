"""Getting files back: restore jobs, and listing what can be restored.

A restore copies (never syncs: nothing local is ever deleted) the user's
remote backup, a sub-path of it, or the state kept in a versions folder,
into a target directory. The target is written through a fixed local
remote `out:`, so the path after it is only a path. Modification times
come back with the files.
"""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from . import rclone
from .protocol import ErrorCode, RpcError, invalid_params
from .sync import JobLog, StatsCollector, parse_version_folder, safe_user_name

OUT_REMOTE = "out"
LIST_LIMIT = 10_000
#: Whole-run bounds of the listings, each under the time anemonectl waits
#: for the answer (300 s for restore --list, 120 s for dest versions).
LIST_TIMEOUT_S = 240.0
VERSIONS_TIMEOUT_S = 90.0


def check_subpath(value: str) -> list[str]:
    """A path inside a user's tree as its parts; raises naming `path`."""
    if any(ord(c) < 32 for c in value) or "\x7f" in value:
        raise invalid_params("path", "must not contain control characters")
    parts = [p for p in PurePosixPath(value).parts if p not in ("/",)]
    if any(p in ("..", ".") for p in parts):
        raise invalid_params("path", "must stay inside the user's tree (no '.' or '..')")
    return parts


def check_user(value: str) -> str:
    if not safe_user_name(value):
        raise invalid_params("user", "must be a user name as in users_dir")
    return value


def check_version(value: str) -> str:
    if parse_version_folder(value) is None:
        raise invalid_params("version", "must be a versions folder name as `dest versions` lists (2026-11-27T083015Z)")
    return value


def check_target(value: str, overwrite: bool) -> Path:
    """The restore target: absolute, and empty or absent unless overwrite."""
    if not value.startswith("/") or any(ord(c) < 32 for c in value):
        raise invalid_params("to", "must be an absolute directory path")
    target = Path(os.path.normpath(value))
    if target.exists():
        if not target.is_dir():
            raise invalid_params("to", f"{target} exists and is not a directory")
        if any(target.iterdir()) and not overwrite:
            raise RpcError(ErrorCode.CONFLICT, f"to: {target} is not empty; choose an empty directory, or pass "
                           "--overwrite to write into it (files there with the same names are replaced)", {"field": "to"})
    return target


def remote_source(remote_path: str, user: str, parts: list[str], version: str | None) -> str:
    base = ("versions", version, user) if version else ("backup", user)
    return rclone.dest_path(remote_path, *base, *parts)


def copy_args(source: str, target: Path) -> list[str]:
    return ["copy", source, f"{OUT_REMOTE}:{target}", *rclone.global_args("INFO"),
            "--stats", "1s", "--stats-log-level", "NOTICE", "--retries", "2", "--low-level-retries", "3",
            "--create-empty-src-dirs"]


def out_env() -> dict[str, str]:
    return rclone.option_env(OUT_REMOTE, {"type": "local"})


async def run_restore(binary: str, dest_env: dict[str, str], remote_path: str, options: dict[str, Any],
                      log: JobLog, report: Callable[[dict[str, Any]], None]) -> tuple[bool, str | None, dict[str, Any]]:
    """(ok, error, stats) of one restore."""
    target = check_target(options["to"], bool(options.get("overwrite")))  # again: the target may have changed
    source = remote_source(remote_path, options["user"], check_subpath(options.get("path") or ""), options.get("version"))
    collector = StatsCollector([], dry_run=False)

    def on_record(record: dict[str, Any]) -> None:
        log.write(record)
        progress = collector.feed(record)
        if progress is not None:
            report(progress)

    result = await rclone.run(binary, copy_args(source, target), {**dest_env, **out_env()}, on_record=on_record,
                              keep_records=False)
    stats = collector.stats(0)
    stats.pop("users")
    stats.update(target=str(target), source=source.split(":", 1)[1])
    if result.ok:
        return True, None, stats
    error = rclone.failure_message(rclone.classify(collector.errors), collector.errors,
                                   f"rclone exited with status {result.returncode}")
    return False, error, stats


async def _listing(binary: str, args: list[str], env: dict[str, str], timeout_s: float, what: str,
                   on_record: Callable[[dict[str, Any]], None] | None = None) -> rclone.RcloneResult:
    """A listing run an operator waits on: a silent server is given up on
    after rclone.QUICK_IDLE_TIMEOUT_S, and the whole run after timeout_s
    (under anemonectl's own wait for the answer)."""
    try:
        return await rclone.run(binary, [*args, *rclone.global_args("NOTICE"), *rclone.quick_args()], env,
                                capture_stdout=True, timeout_s=timeout_s, on_record=on_record)
    except asyncio.TimeoutError:
        raise RpcError(ErrorCode.OPERATION_FAILED, f"{rclone.TIMEOUT}: {what} did not finish within {timeout_s:.0f} s",
                       {"class": rclone.TIMEOUT}) from None


async def list_restorable(binary: str, dest_env: dict[str, str], remote_path: str, user: str, parts: list[str],
                          version: str | None) -> dict[str, Any]:
    source = remote_source(remote_path, user, parts, version)
    result = await _listing(binary, ["lsjson", "-R", "--no-mimetype", source], dest_env, LIST_TIMEOUT_S,
                            "the listing (try a sub-path with --path)")
    if not result.ok:
        messages = rclone.messages_of(result)
        cls = rclone.classify(messages)
        if cls == rclone.PATH_MISSING or result.returncode == 3:
            raise RpcError(ErrorCode.NOT_FOUND, f"nothing to restore at {source.split(':', 1)[1]}", {"field": "path"})
        raise RpcError(ErrorCode.OPERATION_FAILED, rclone.failure_message(cls or "error", messages, "rclone failed"),
                       {"class": cls})
    entries = json.loads(result.stdout or b"[]")
    files = [{"path": e["Path"], "size": e["Size"], "modified": e["ModTime"], "is_dir": e["IsDir"]}
             for e in entries[:LIST_LIMIT]]
    return {"source": source.split(":", 1)[1], "entries": files, "truncated": len(entries) > LIST_LIMIT}


async def list_versions(binary: str, dest_env: dict[str, str], remote_path: str,
                        on_record: Callable[[dict[str, Any]], None] | None = None) -> list[str]:
    """The versions folders on the server, oldest first ([] if none)."""
    result = await _listing(binary, ["lsf", "--dirs-only", rclone.dest_path(remote_path, "versions")], dest_env,
                            VERSIONS_TIMEOUT_S, "listing versions/", on_record)
    if not result.ok:
        messages = rclone.messages_of(result)
        cls = rclone.classify(messages)
        if result.returncode == 3 or cls == rclone.PATH_MISSING:
            return []
        raise RpcError(ErrorCode.OPERATION_FAILED,
                       f"cannot list versions: {rclone.failure_message(cls, messages, 'rclone failed')}", {"class": cls})
    names = [n.rstrip("/") for n in result.stdout.decode(errors="replace").split()]
    return sorted(n for n in names if parse_version_folder(n) is not None)
