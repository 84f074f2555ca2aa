"""Verify jobs: is what is on the server the same as the local source?

`rclone check` compares every file by hash (md5, computed on the server by
md5sum over SSH and locally), or, where the server cannot hash, by
downloading it (--download). This is the end-to-end content check that a
fast sync (sizes and modification times only) leaves to a separate job.
Per user it reports the files missing on the server, extra on the server
and differing; the job fails if any is missing or differs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from . import rclone
from .sync import JobLog, include_rules, scan_users, source_env

#: Names listed per user and category in the job's stats (counts are exact).
NAMES_KEPT = 50


def parse_combined(text: str) -> dict[str, dict[str, list[str]]]:
    """rclone check --combined output -> user -> category -> paths."""
    kinds = {"+": "missing", "-": "extra", "*": "differ", "!": "error", "=": "same"}
    out: dict[str, dict[str, list[str]]] = {}
    for line in text.splitlines():
        if len(line) < 3 or line[0] not in kinds or line[1] != " ":
            continue
        path = line[2:]
        user = path.split("/", 1)[0]
        out.setdefault(user, {k: [] for k in kinds.values()})[kinds[line[0]]].append(path)
    return out


def summarise(report: dict[str, dict[str, list[str]]], users: list[str]) -> dict[str, Any]:
    per_user = {}
    totals = {"missing": 0, "extra": 0, "differ": 0, "error": 0, "same": 0}
    for user in users:
        r = report.get(user, {})
        counts = {k: len(r.get(k, [])) for k in totals}
        for k in totals:
            totals[k] += counts[k]
        per_user[user] = {
            "files_checked": sum(counts.values()) - counts["extra"],
            "missing": counts["missing"], "extra": counts["extra"], "differ": counts["differ"],
            "errors": counts["error"],
            "status": "failed" if counts["missing"] or counts["differ"] or counts["error"] else "succeeded",
            "differing_files": r.get("differ", [])[:NAMES_KEPT], "missing_files": r.get("missing", [])[:NAMES_KEPT],
            "extra_files": r.get("extra", [])[:NAMES_KEPT],
        }
    return {"totals": totals, "users": per_user}


async def run_verify(binary: str, hashing_env: dict[str, str], users_dir: Path, remote_path: str, only_user: str | None,
                     work_dir: Path, job_id: int, log: JobLog,
                     report: Callable[[dict[str, Any]], None]) -> tuple[bool, str | None, dict[str, Any]]:
    started = time.monotonic()
    users = [u for u in scan_users(users_dir)[0] if u.problem is None and (only_user is None or u.name == only_user)]
    if not users:
        return False, f"no local backup/ tree to verify{' for ' + only_user if only_user else ''}", {}
    filters = work_dir / f"job-{job_id}.verify-filter"
    combined = work_dir / f"job-{job_id}.combined"
    # Only the verified users' directories are compared: other remote user
    # directories are not this check's business.
    filters.write_text(include_rules(u.name for u in users))
    env = {**hashing_env, **source_env(users)}
    try:
        download = False
        for _ in range(2):
            args = ["check", f"{rclone.SRC_REMOTE}:", rclone.dest_path(remote_path, "backup"),
                    *rclone.global_args("NOTICE"), "--filter-from", str(filters), "--combined", str(combined),
                    "--one-file-system", "--retries", "1", *(["--download"] if download else [])]
            result = await rclone.run(binary, args, env, on_record=log.write)
            no_hash = any("no hashes in common" in str(r.get("msg", "")).lower()
                          or "no common hash" in str(r.get("msg", "")).lower() for r in result.records)
            if not no_hash or download:
                break
            download = True  # the server cannot hash: compare by downloading
        summary = summarise(parse_combined(combined.read_text(errors="replace") if combined.exists() else ""),
                            [u.name for u in users])
    finally:
        filters.unlink(missing_ok=True)
        combined.unlink(missing_ok=True)
    t = summary["totals"]
    stats = {"files_transferred": 0, "bytes_transferred": 0, "files_deleted": 0,
             "checks": t["same"] + t["differ"], "errors": t["error"], "duration_s": round(time.monotonic() - started, 3),
             "method": "download" if download else "md5", "missing": t["missing"], "extra": t["extra"],
             "differ": t["differ"], "users": summary["users"]}
    problems = []
    if t["differ"]:
        names = [f for u in summary["users"].values() for f in u["differing_files"]]
        problems.append(f"{t['differ']} file(s) differ: {', '.join(names[:5])}")
    if t["missing"]:
        names = [f for u in summary["users"].values() for f in u["missing_files"]]
        problems.append(f"{t['missing']} file(s) missing on the server: {', '.join(names[:5])}")
    if problems:
        return False, "; ".join(problems), stats
    if not result.ok and t["error"] == 0 and not t["same"]:
        messages = rclone.error_messages(result.records)
        return False, rclone.failure_message(rclone.classify(messages), messages, "rclone check failed"), stats
    if t["error"]:
        return False, f"{t['error']} file(s) could not be compared", stats
    return True, None, stats
