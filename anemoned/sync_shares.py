"""How a sync's work is shared between rclone runs that go on at once:
the users split into shares (fewer files for those that start later, on
a link), the delete guard's budget split between them, when each starts,
the Go threads each gets, the directories they share made first, and
their progress added up (sync.py)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from . import rclone
from .joblog import JobLog
from .sync_blame import DESTINATION_CLASSES
from .users import LocalUser


@dataclass
class Budget:
    """Deletions the delete guard still allows (None: no limit)."""

    left: int | None

    def spend(self, deleted: int) -> None:
        if self.left is not None:
            self.left = max(0, self.left - deleted)

    def split(self, parts: int) -> list["Budget"]:
        if self.left is None:
            return [Budget(None) for _ in range(parts)]
        base, extra = divmod(self.left, parts)
        return [Budget(base + (1 if i < extra else 0)) for i in range(parts)]


def total_progress(runs: Iterable[dict[str, Any]], latest: dict[str, Any]) -> dict[str, Any]:
    """Every run's progress added up; the user being transferred is the
    latest report's, the ETA the longest of the runs'."""
    runs = list(runs)
    total = {key: sum(int(r.get(key) or 0) for r in runs)
             for key in ("bytes", "total_bytes", "files", "total_files", "checks", "speed")}
    total["eta_s"] = max((r["eta_s"] for r in runs if isinstance(r.get("eta_s"), (int, float))), default=None)
    total["current_user"] = latest.get("current_user")
    return total


#: A share of a sync has at least this many files per transfer of its run:
#: a run costs a handshake and its listings before its first file (3 s
#: at 50 ms). 10 users x 30 files at 20 ms: 4 runs of 75 files 6.6 s, 8
#: of 37 8.3 s; 20 users x 50 files at 50 ms: 16 runs of 62 files 18.7 s,
#: 4 of 250 27.6 s (README, "Links").
SHARE_FILES_PER_TRANSFER = 8


def user_weight(user: LocalUser, copy: list[str] | None) -> int:
    """Files a user's run compares or sends: an incremental copy's list, or
    (None) the whole tree a full sync compares."""
    return len(copy) if copy is not None else (user.scan.files if user.scan is not None else 0)


def share_count(files: int, processes: int, transfers: int) -> int:
    """How many shares `files` to compare or send make: at most
    `processes`, each with files enough to keep its transfers busy (else
    its handshake, and the directories made first, cost more than it saves)."""
    return max(1, min(processes, files // (SHARE_FILES_PER_TRANSFER * transfers)))


def split_users(users: list[LocalUser], parts: int, weight: Callable[[LocalUser], int],
                capacities: list[float] | None = None) -> list[list[LocalUser]]:
    """At most `parts` shares of about equal weight (files to compare or
    send: round trips), or of weight in proportion to `capacities`, the
    heaviest users first into the share they fill least; each share in
    name order, and none empty."""
    if not users:
        return []
    parts = max(1, min(parts, len(users)))
    caps = (capacities or [1.0] * parts)[:parts]
    shares: list[list[LocalUser]] = [[] for _ in range(parts)]
    loads = [0] * parts
    for user in sorted(users, key=lambda u: (-weight(u), u.name)):
        i = min(range(parts), key=lambda k: (loads[k] + weight(user) + 1) / caps[k])
        shares[i].append(user)
        loads[i] += weight(user) + 1
    return [sorted(share, key=lambda u: u.name) for share in shares if share]


#: OpenSSH's default MaxStartups start: SSH handshakes in flight at once
#: that no server with default settings refuses.
HANDSHAKES_AT_ONCE = 10


def start_times(weights: list[int], run_connections: int, stagger_s: float) -> list[float]:
    """When each share's run starts (seconds from now): in waves whose
    connections (each run's at most run_connections, fewer for a share
    with fewer files to send: about one per file, plus one to list) stay
    within HANDSHAKES_AT_ONCE, stagger_s apart, so that one wave's
    handshakes are over before the next wave's begin."""
    starts: list[float] = []
    wave, at = 0, 0.0
    for w in weights:
        wanted = max(1, min(run_connections, w + 1))
        if starts and wave + wanted > HANDSHAKES_AT_ONCE:
            at, wave = at + stagger_s, 0
        starts.append(round(at, 3))
        wave += wanted
    return starts


#: SFTP requests rclone makes, one after another, for each new file of a
#: full sync (the parent's stat, open, write, close, set its time, stat;
#: the rename's parent stat, rename, stat): with a timed round trip, a
#: run's time per file is this many round trips over its transfers.
REQUESTS_PER_FILE = 9


def finish_together(starts: list[float], work_s: float, least_s: float) -> list[float]:
    """The seconds of work each run starting at `starts` gets out of
    `work_s` in all, so that all finish at once: runs that start later get
    less. Runs that would get less than least_s are not started (the list
    is shorter): they would finish no sooner than the others alone."""
    n = len(starts)
    while n > 1 and (work_s + sum(starts[:n])) / n - starts[n - 1] < least_s:
        n -= 1
    finish = (work_s + sum(starts[:n])) / n
    return [finish - s for s in starts[:n]]


def plan_shares(users: list[LocalUser], parts: int, weight: Callable[[LocalUser], int], run_connections: int,
                stagger_s: float, seconds_per_file: float, least_files: int) -> list[tuple[float, list[LocalUser]]]:
    """The shares and when each starts (seconds from now): in waves within
    HANDSHAKES_AT_ONCE (start_times); with a known time per file (a link),
    a share that starts later gets fewer files, so that the last to start
    is not the last to finish by a whole stagger (W4, 16 runs at 50 ms:
    the last started 9.6 s after the first with as many files)."""
    shares = split_users(users, parts, weight)
    starts = start_times([sum(weight(u) for u in share) for share in shares], run_connections, stagger_s)
    if seconds_per_file > 0 and len(shares) > 1:
        total = sum(weight(u) for u in users)
        work = finish_together(starts, total * seconds_per_file, least_files * seconds_per_file)
        shares = split_users(users, len(work), weight, work)
        # The waves again, for these shares: one grown past its wave's room
        # would put more than HANDSHAKES_AT_ONCE in flight.
        starts = start_times([sum(weight(u) for u in share) for share in shares], run_connections, stagger_s)
    return list(zip(starts, shares))


def go_threads(runs_at_once: int, cpus: int) -> dict[str, str]:
    """The environment of each of `runs_at_once` rclone runs: with more
    runs than CPUs, one Go thread each (GOMAXPROCS). Each run's Go runtime
    otherwise keeps a thread per CPU, and idle ones spin looking for work:
    W4 at 200 users, 16 runs on 2 CPUs: rclone's and the readers' CPU 55 s
    -> 47 s, the sync 71.5 s -> 65.9 s; W1 (4 runs) unchanged."""
    return {"GOMAXPROCS": "1"} if runs_at_once > cpus else {}


async def make_shared_dirs(binary: str, dest_env: dict[str, str], remote_path: str, versions_folder: str | None,
                           log: JobLog) -> tuple[rclone.FailureClass, str] | None:
    """Runs at once would race to make the directories they share
    (backup/, and the versions/<folder>/ every overwritten or deleted file
    moves into): two find one missing, both make it, and rclone fails the
    loser's file. So they are made first, one `rclone mkdir` each, side by
    side, one attempt each (a silent server is given up on after
    QUICK_IDLE_TIMEOUT_S). The destination's failure (class, "class:
    message"), when that is what stopped them; any other is left to the
    runs to report (a server that refuses a directory refuses its files)."""
    dirs = [("backup",)] + ([("versions", versions_folder)] if versions_folder else [])
    made = await asyncio.gather(*(rclone.run(
        binary, ["mkdir", rclone.dest_path(remote_path, *d), *rclone.global_args("NOTICE"), *rclone.quick_args()],
        dest_env, on_record=log.write) for d in dirs))
    log.note("directories the runs share made first", ok=all(r.ok for r in made))
    for result in made:
        messages = rclone.messages_of(result) if not result.ok else []
        cls = rclone.classify(messages)
        if cls in DESTINATION_CLASSES:
            return cls, rclone.failure_message(cls, messages, "rclone mkdir failed")
    return None


async def drop_unused_folder(binary: str, dest_env: dict[str, str], remote_path: str,
                             versions_folder: str | None) -> None:
    """The versions folder made for runs that then moved nothing into it:
    removed, so that `dest versions` lists no folder that keeps nothing.
    `rmdir` removes only an empty directory: a file the runs did move is
    never at stake. Its failure changes nothing (an empty folder stays)."""
    if versions_folder is None:  # versions are off: none was made
        return
    await rclone.run(binary, ["rmdir", rclone.dest_path(remote_path, "versions", versions_folder),
                              *rclone.global_args("NOTICE"), *rclone.quick_args()], dest_env)


def halves(batch: list[LocalUser]) -> list[list[LocalUser]]:
    """A run that failed or stalled without saying for whom, split to find
    out: log2(users) more runs, not one per user."""
    middle = len(batch) // 2
    return [batch[:middle], batch[middle:]]
