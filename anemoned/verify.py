"""Verify jobs: is what is on the server the same as the local source?

Every file is compared by md5: computed locally by an rclone running as
the tree's owner (so it reads nothing its owner could not), and on the
server by md5sum over SSH, or, where the server cannot hash or the
operator asks for it (`verify --download`), by downloading the file. This
is the end-to-end content check that a fast sync (sizes and modification
times only) leaves to a separate job. Per user it reports the files
missing on the server, extra on the server and differing; the job fails if
any is missing, differs, or could not be compared.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from . import rclone
from .joblog import JobLog
from .jobrunner import JobContext, JobRun, run_job
from .jobs import JobOutcome, JobState
from .sync_argv import include_rules
from .userproc import output_of
from .users import LocalUser, discover, scan_all

#: Names listed per user and category in the job's stats (counts are exact).
NAMES_KEPT = 50


def parse_sums(text: str, prefix_user: str | None = None) -> dict[str, str]:
    """`rclone md5sum` output ("HASH  path" lines) -> path -> hash; with
    prefix_user, paths get "user/" in front (a local tree's sums)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
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
    filters = work_dir / f"job-{job_id}.verify-filter"
    filters.write_text(include_rules(names))
    try:
        args = ["md5sum", rclone.dest_path(remote_path, "backup"), *rclone.global_args("NOTICE"),
                "--filter-from", str(filters), *(["--download"] if download else [])]
        result = await rclone.run(binary, args, env, on_record=log.write if log else None, capture_stdout=True)
    finally:
        filters.unlink(missing_ok=True)
    return parse_sums(result.stdout.decode(errors="replace")), result


def _no_hash(result: rclone.RcloneResult) -> bool:
    text = " ".join(str(r.get("msg", "")) for r in result.records).lower()
    return "hash type not supported" in text or "hash unsupported" in text or "no common hash" in text


async def run_verify(run: JobRun) -> JobOutcome:
    ctx, log = run.ctx, run.log
    started = time.monotonic()
    only_user = run.options.get("user")
    found, _ = await asyncio.to_thread(discover, ctx.config.users_dir, os.getuid())
    users_dev = (await asyncio.to_thread(os.stat, ctx.config.users_dir)).st_dev
    found = await scan_all([u for u in found if only_user is None or u.name == only_user], users_dev,
                           float(run.dest.stall_timeout))
    users = [u for u in found if u.problem is None]
    if not users:
        return JobOutcome(JobState.FAILED, f"no local backup/ tree to verify{' for ' + only_user if only_user else ''}", {})
    local: dict[str, str] = {}
    local_errors: dict[str, list[str]] = {}
    hashing_stalled: dict[str, str] = {}
    for user in users:
        try:
            sums, errors = await local_sums(ctx.binary, user, float(run.dest.stall_timeout))
        except asyncio.TimeoutError:  # one user's stopped hashing costs that user only, like a stopped scan
            hashing_stalled[user.name] = f"hashing the local files got no answer within {run.dest.stall_timeout} s"
            continue
        local.update(sums)
        if errors:
            local_errors[user.name] = errors
    download = bool(run.options.get("download")) or run.dest.verify_download
    remote, result = await remote_sums(ctx.binary, run.env, run.dest.remote_path, [u.name for u in users],
                                       ctx.config.tmp_dir, ctx.job["id"], download, None if not download else log)
    if not download:  # the first try's records: its errors are no failure when the server cannot hash
        for record in result.records:
            log.write(record if not _no_hash(result) else {**record, "level": "notice"})
    if not result.ok and not download and _no_hash(result):
        log.note("the server cannot hash: comparing by downloading")
        download = True  # the server cannot hash: compare by downloading
        remote, result = await remote_sums(ctx.binary, run.env, run.dest.remote_path, [u.name for u in users],
                                           ctx.config.tmp_dir, ctx.job["id"], download, log)
    if not result.ok:
        messages = rclone.messages_of(result)
        return JobOutcome(JobState.FAILED, rclone.failure_message(rclone.classify(messages), messages,
                                                                  "rclone md5sum failed"),
                          {"method": None, "duration_s": round(time.monotonic() - started, 3)})
    remote = {path: digest for path, digest in remote.items() if path.split("/", 1)[0] not in hashing_stalled}
    summary = summarise(compare(local, remote), [u.name for u in users if u.name not in hashing_stalled])
    for name, errors in local_errors.items():
        summary["users"][name]["errors"] += len(errors)
        summary["users"][name]["status"] = "failed"
        summary["totals"]["error"] += len(errors)
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
    if t["error"]:
        problems.append(f"{t['error']} file(s) could not be compared")
    stalled = {**{u.name: u.problem or "" for u in found if u.stalled}, **hashing_stalled}
    for name, why in stalled.items():  # not verified, said so
        stats["users"][name] = {"status": "stalled", "error": why}
        problems.append(f"{name}: {why}")
    if problems:
        return JobOutcome(JobState.FAILED, "; ".join(problems), stats)
    return JobOutcome(JobState.SUCCEEDED, None, stats)


async def verify_job(ctx: JobContext) -> JobOutcome:
    return await run_job(ctx, run_verify, hashcheck=True)
