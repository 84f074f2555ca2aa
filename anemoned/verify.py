"""What a verify job compares: md5 sums of the local trees (each hashed by
an rclone running as the tree's owner, so it reads nothing its owner
could not) and of the server's copies, and the per-user report that
comes of comparing them. The job itself is verify_job.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import rclone
from .joblog import JobLog
from .sync_argv import include_rules
from .userproc import output_of
from .users import LocalUser

#: Names listed per user and category in the job's stats (counts are exact).
NAMES_KEPT = 50


def parse_sums(text: str, prefix_user: str | None = None) -> dict[str, str]:
    """`rclone md5sum` output ("HASH  path" lines) -> path -> hash; with
    prefix_user, paths get "user/" in front. Lines end at "\n" only: a name
    may hold U+2028 and the like, which rclone prints as they are, and
    splitlines() ended a line there, making the rest of the name a line of
    its own (one user's folder could speak for another user's file)."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        digest, sep, path = line.partition("  ")
        if not sep or not path:
            continue
        out[f"{prefix_user}/{path}" if prefix_user else path] = digest.strip()
    return out


def compare(local: dict[str, str], remote: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """user -> missing / extra / differ / same -> paths ("user/..."). A hash
    that is empty on either side counts as an error, never as the same."""
    kinds = ("missing", "extra", "differ", "error", "same")
    out: dict[str, dict[str, list[str]]] = {}

    def add(path: str, kind: str) -> None:
        out.setdefault(path.split("/", 1)[0], {k: [] for k in kinds})[kind].append(path)

    for path, digest in local.items():
        if path not in remote:
            add(path, "missing")
        elif not digest or not remote[path]:
            add(path, "error")
        else:
            add(path, "same" if digest == remote[path] else "differ")
    for path in remote.keys() - local.keys():
        add(path, "extra")
    for lists in out.values():
        for paths in lists.values():
            paths.sort()
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


async def local_sums(binary: str, user: LocalUser, idle_timeout_s: float) -> tuple[dict[str, str], list[str]]:
    """md5 of every file of the user's tree, computed by an rclone running
    as that user (it holds no secret: local files only); and its errors."""
    assert user.identity is not None
    code, out, err = await output_of(
        user.identity, [*rclone.DIE_WITH_PARENT, binary, "md5sum", str(user.backup_dir), "--one-file-system",
                        *rclone.global_args("ERROR")], idle_timeout_s, {"RCLONE_CACHE_DIR": "/nonexistent"})
    errors = [str(rclone.parse_log_line(line).get("msg")) for line in err.splitlines() if line.strip()]
    if code != 0 and not errors:  # never a pass on hashes that were not all taken
        errors.append(f"hashing the local files ended with status {code}")
    return parse_sums(out.decode(errors="replace"), user.name), errors


async def remote_sums(binary: str, env: dict[str, str], remote_path: str, names: list[str], work_dir: Path,
                      job_id: int, download: bool, log: JobLog | None) -> tuple[dict[str, str], rclone.RcloneResult]:
    """The server's md5 of the named users' files, in one run. rclone
    prints a name's control characters as symbols (a line break as U+240A),
    so only parse_sums' line ends could split a name, and they are "\n"
    alone (tests/integration/test_restore_verify_usage.py names folders
    to forge a line for another user's file both ways)."""
    filters = work_dir / f"job-{job_id}.verify-filter"
    filters.write_text(include_rules(names))
    try:
        args = ["md5sum", rclone.dest_path(remote_path, "backup"), *rclone.global_args("NOTICE"),
                "--filter-from", str(filters), *(["--download"] if download else [])]
        result = await rclone.run(binary, args, env, on_record=log.write if log else None, capture_stdout=True)
    finally:
        filters.unlink(missing_ok=True)
    return parse_sums(result.stdout.decode(errors="replace")), result


def no_hash(result: rclone.RcloneResult) -> bool:
    """The server cannot hash: compare by downloading instead."""
    text = " ".join(str(r.get("msg", "")) for r in result.records).lower()
    return "hash type not supported" in text or "hash unsupported" in text or "no common hash" in text
