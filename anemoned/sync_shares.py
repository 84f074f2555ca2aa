"""How a sync's work is shared between rclone runs that go on at once:
the users split into shares, the delete guard's budget split between
them, when each starts, the directories they share made first, and their
progress added up (sync.py)."""
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


def split_users(users: list[LocalUser], parts: int, weight: Callable[[LocalUser], int]) -> list[list[LocalUser]]:
    """At most `parts` shares of about equal weight (files to compare or
    send: round trips), the heaviest users first into the lightest share;
    each share in name order."""
    parts = max(1, min(parts, len(users)))
    shares: list[list[LocalUser]] = [[] for _ in range(parts)]
    loads = [0] * parts
    for user in sorted(users, key=lambda u: (-weight(u), u.name)):
        i = loads.index(min(loads))
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
