"""The rclone command lines and source remotes of the sync engine: pure
builders (what rclone is told to read, write, list and leave alone).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from . import rclone
from .users import LocalUser, safe_user_name

#: Names per include rule: rclone reads filter files line by line with a
#: 64 KiB line limit; 500 names of at most 32 characters stay well below it.
NAMES_PER_RULE = 500


_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]{}"})


def include_rules(names: Iterable[str], mounts: dict[str, tuple[str, ...]] | None = None) -> str:
    """rclone filter rules that let the sync see only the given top-level
    directories, then exclude everything else, so that other remote
    directories are neither listed, changed nor deleted. One `{a,b,...}`
    glob per NAMES_PER_RULE names: one rule per name would cost rclone a
    match per rule per file, and a {{regexp}} rule would keep rclone from
    deriving directory rules (it would then walk every remote directory).
    Only safe user names are accepted; their characters (letters, digits,
    `.`, `_`, `-`) mean nothing special in a glob. Mount points inside a
    user's tree (user -> relative paths) are excluded first: a sync does not
    cross into another file system."""
    ordered = sorted(set(names))
    if any(not safe_user_name(n) for n in ordered):
        raise ValueError("only safe user names can be synced")
    excluded = [f"- /{user}/{path.translate(_GLOB_SPECIAL)}/**\n" for user in ordered
                for path in (mounts or {}).get(user, ())]
    lines = excluded + [f"+ /{{{','.join(ordered[i:i + NAMES_PER_RULE])}}}/**\n" for i in range(0, len(ordered), NAMES_PER_RULE)]
    return "".join(lines) + "- **\n"


def user_remote(index: int) -> str:
    return f"u{index}"


EMPTY_REMOTE = "empty"
#: SFTP connections rclone opens to one user's reader (a relay and an
#: sftp-server as the user: ~30 ms of CPU to start). The reader is local,
#: a request takes well under a millisecond, and rclone holds a connection
#: only for one request at a time (a file's reads go on without it), so
#: one carries every transfer and check of a user. rclone's default (one
#: per transfer and checker) made W1's initial sync 1.5x slower on 2 cores.
READER_CONNECTIONS = "1"


def source_env(users: list[LocalUser], ssh_commands: list[str], *, reads_chunk: str | None = None,
               emptied: Iterable[str] = (), empty_dir: Path | None = None) -> dict[str, str]:
    """The combine remote `src` over one sftp remote per user (u0, u1...),
    each reaching that user's sftp-server through its ssh command; a tree
    mirrored as empty is an empty directory of the daemon's."""
    env: dict[str, str] = {}
    upstreams = [f"{name}={EMPTY_REMOTE}:{empty_dir}" for name in sorted(emptied)]
    if upstreams:
        env.update(rclone.option_env(EMPTY_REMOTE, {"type": "local"}))
    for i, (user, command) in enumerate(zip(users, ssh_commands)):
        options = {"type": "sftp", "ssh": command, "shell_type": "none", "skip_links": "true",
                   "disable_hashcheck": "true", "md5sum_command": "none", "sha1sum_command": "none",
                   "known_hosts_file": "none", "encoding": "Slash", "connections": READER_CONNECTIONS}
        if reads_chunk:
            options["chunk_size"] = reads_chunk
        env.update(rclone.option_env(user_remote(i), options))
        upstreams.append(f"{user.name}={user_remote(i)}:{user.backup_dir}")
    env.update(rclone.option_env(rclone.SRC_REMOTE, {"type": "combine", "upstreams": rclone.space_list(upstreams)}))
    return env


def sync_args(remote_path: str, filter_file: Path | None, dry_run: bool, *, max_delete: int | None = None,
              versions: str | None = None, files_from: Path | None = None) -> list[str]:
    """A full sync of the source's users (filter_file), or with files_from
    an incremental copy of exactly the files it names ("user/path" per
    line, read raw: no comments, no trimming), looking up each of them on
    the server instead of listing any remote directory (--no-traverse).
    Not a dry run: at DEBUG level, for rclone's per-file "Unchanged
    skipping" confirmations (remote_index.py); those records stay out of
    the job log."""
    args = [
        "copy" if files_from is not None else "sync", f"{rclone.SRC_REMOTE}:", rclone.dest_path(remote_path, "backup"),
        *rclone.global_args("INFO" if dry_run else "DEBUG"),
        "--stats", "1s", "--stats-log-level", "NOTICE",
        # Files keep their modification times; directories do not: the
        # combine remote reports its top-level (user) directories as
        # modified "now", so keeping directory times would cost one more
        # SFTP request per user on every sync, even when nothing changed.
        "--no-update-dir-modtime",
        # Retry a flaky moment, but give up soon when the server is gone:
        # the schedule retries later (minutes, not a stuck job).
        "--retries", "2", "--low-level-retries", "3",
        # Smallest files first for six transfers in eight, largest first for
        # the rest, instead of directory by directory. rclone's sftp backend
        # checks a file's parent directory (one round trip) under a lock of
        # that directory, before the upload and again before the rename, so
        # transfers in one directory go one round trip apart, and the run
        # dials its further connections only as they free up. One run of
        # 50 files in 5 directories at 50 ms: 10.1 s in listing order, 7.7 s
        # by size; W4 at 200 users: 76.6 s -> 71.5 s.
        "--order-by", "size,mixed,75",
    ]
    if files_from is None:
        # An incremental copy names files only: an empty directory new
        # since the last sync appears at the next full one, and asking
        # for it here would cost a round trip per directory of the list.
        args.append("--create-empty-src-dirs")
    if filter_file is not None:
        args += ["--filter-from", str(filter_file)]
    if files_from is not None:
        args += ["--files-from-raw", str(files_from), "--no-traverse"]
    if max_delete is not None and files_from is None:
        args += ["--max-delete", str(max_delete)]
    if versions is not None:
        # What the sync deletes or overwrites moves to versions/<folder>/,
        # beside backup/ (never inside it), on the same server.
        args += ["--backup-dir", rclone.dest_path(remote_path, "versions", versions)]
    if dry_run:
        args.append("--dry-run")
    return args


def delete_args(remote_path: str, files_from: Path, dry_run: bool, versions: str | None) -> list[str]:
    """An incremental sync's deletions: the files named ("user/path" per
    line) moved on the server into this sync's versions folder (where a
    full sync's --backup-dir puts them), or deleted when versions are off.
    Each file is looked up by name; no directory is listed. A file already
    gone is passed over silently."""
    if versions is not None:
        args = ["move", rclone.dest_path(remote_path, "backup"), rclone.dest_path(remote_path, "versions", versions),
                "--no-traverse"]
    else:
        args = ["delete", rclone.dest_path(remote_path, "backup")]
    args += [*rclone.global_args("INFO"), "--stats", "1s", "--stats-log-level", "NOTICE",
             "--files-from-raw", str(files_from), "--no-update-dir-modtime", "--retries", "2", "--low-level-retries", "3"]
    if dry_run:
        args.append("--dry-run")
    return args


def files_from(paths: dict[str, list[str]]) -> bytes:
    """An rclone --files-from-raw list: "user/path" per line. Only safe user
    names, and paths without line breaks (usertree.listing leaves trees
    with such names to full syncs): a line is always exactly one file."""
    lines = []
    for user, rels in sorted(paths.items()):
        if not safe_user_name(user):
            raise ValueError("only safe user names can be synced")
        for rel in rels:
            if "\n" in rel or "\r" in rel or not rel or rel.startswith("/"):
                raise ValueError(f"a path that cannot be listed: {rel!r}")
            lines.append(f"{user}/{rel}\n")
    return "".join(lines).encode("utf-8")
