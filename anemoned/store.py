"""SQLite persistence: schema versions, forward migrations, crash recovery.

One database file in data_dir, in WAL mode so that a reader never waits on
the writer and a crash never leaves a half-written transaction. The schema
version is SQLite's `user_version`; MIGRATIONS[i] brings version i to i+1,
and a database newer than this code is refused rather than guessed at.

Every call is short and synchronous; the daemon calls it from its event loop.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator

MIGRATIONS: list[str] = [
    # 0 -> 1: destinations and jobs.
    """
    CREATE TABLE destinations (
        name          TEXT PRIMARY KEY,
        host          TEXT NOT NULL,
        port          INTEGER NOT NULL,
        user          TEXT NOT NULL,
        auth          TEXT NOT NULL CHECK (auth IN ('key', 'password')),
        key_file      TEXT,
        password_enc  BLOB,
        host_key      TEXT,
        remote_path   TEXT NOT NULL,
        enabled       INTEGER NOT NULL,
        schedule      TEXT NOT NULL DEFAULT '{"kind": "off"}',
        last_test     TEXT,
        created_at    TEXT NOT NULL
    );
    CREATE TABLE jobs (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        destination  TEXT NOT NULL,
        kind         TEXT NOT NULL,
        state        TEXT NOT NULL,
        dry_run      INTEGER NOT NULL,
        trigger      TEXT NOT NULL,
        queued_at    TEXT NOT NULL,
        started_at   TEXT,
        finished_at  TEXT,
        error        TEXT,
        stats        TEXT
    );
    CREATE INDEX jobs_by_destination ON jobs (destination, id);
    CREATE INDEX jobs_by_state ON jobs (state);
    """,
    # 1 -> 2: per-destination scheduler bookkeeping (last scheduled run,
    # failed attempts in a row) kept apart from what the operator set.
    """
    ALTER TABLE destinations ADD COLUMN schedule_state TEXT NOT NULL DEFAULT '{}';
    """,
    # 2 -> 3: data-safety settings per destination (delete guard, versions)
    # and when old versions were last pruned.
    """
    ALTER TABLE destinations ADD COLUMN max_delete INTEGER NOT NULL DEFAULT 5000;
    ALTER TABLE destinations ADD COLUMN max_delete_percent INTEGER NOT NULL DEFAULT 20;
    ALTER TABLE destinations ADD COLUMN keep_versions_days INTEGER NOT NULL DEFAULT 30;
    ALTER TABLE destinations ADD COLUMN versions_pruned_at TEXT;
    ALTER TABLE jobs ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    """,
    # 3 -> 4: the free-space threshold under which dest show/status warn.
    """
    ALTER TABLE destinations ADD COLUMN warn_free_percent INTEGER NOT NULL DEFAULT 10;
    """,
    # 4 -> 5: a verify schedule of its own, with its own bookkeeping.
    """
    ALTER TABLE destinations ADD COLUMN verify_schedule TEXT NOT NULL DEFAULT '{"kind": "off"}';
    ALTER TABLE destinations ADD COLUMN verify_schedule_state TEXT NOT NULL DEFAULT '{}';
    """,
    # 5 -> 6: the server's SSH identification, seen with its host key (the
    # upload chunk size depends on the server software).
    """
    ALTER TABLE destinations ADD COLUMN server_version TEXT;
    """,
    # 6 -> 7: per-user sync state (what each user's last sync left, so an
    # unchanged tree costs nothing remote) and the settings around it.
    """
    CREATE TABLE user_state (
        destination  TEXT NOT NULL,
        user         TEXT NOT NULL,
        remote_path  TEXT NOT NULL,
        fingerprint  TEXT,
        files        INTEGER NOT NULL DEFAULT 0,
        synced_at    TEXT,
        full_at      TEXT,
        PRIMARY KEY (destination, user)
    );
    ALTER TABLE destinations ADD COLUMN stall_timeout INTEGER NOT NULL DEFAULT 300;
    ALTER TABLE destinations ADD COLUMN full_sync_every INTEGER NOT NULL DEFAULT 7;
    """,
    # 7 -> 8: monitoring. Notification targets and the dead man's switch
    # ping URL (each {"url_enc": Fernet token, "shown": redacted form}),
    # max_age for unscheduled destinations (0: off), and what the overdue
    # check last told (so it notifies once per episode).
    """
    ALTER TABLE destinations ADD COLUMN notifications TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE destinations ADD COLUMN ping TEXT;
    ALTER TABLE destinations ADD COLUMN max_age_s INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE destinations ADD COLUMN monitor_state TEXT NOT NULL DEFAULT '{}';
    """,
    # 8 -> 9: verify by downloading, for scheduled verifies too (a server's
    # own hashes may come from a cache).
    """
    ALTER TABLE destinations ADD COLUMN verify_download INTEGER NOT NULL DEFAULT 0;
    """,
    # 9 -> 10: the remote index (remote_index.py): per destination and user,
    # what the last successful sync left on the server, and whether it can
    # be trusted (state 'clean', its row count and digest) or not ('dirty':
    # a sync of that user began and has not been confirmed).
    """
    CREATE TABLE index_state (
        destination  TEXT NOT NULL,
        user         TEXT NOT NULL,
        remote_path  TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('dirty', 'clean')),
        files        INTEGER NOT NULL DEFAULT 0,
        digest       TEXT,
        PRIMARY KEY (destination, user)
    );
    CREATE TABLE remote_index (
        destination  TEXT NOT NULL,
        user         TEXT NOT NULL,
        path         TEXT NOT NULL,
        size         INTEGER NOT NULL,
        mtime        INTEGER,
        PRIMARY KEY (destination, user, path)
    ) WITHOUT ROWID;
    """,
    # 10 -> 11: how the link is used (link_options.py): the transfers,
    # checkers, connections and bwlimit set for the destination; absent
    # ones take the defaults of the running version.
    """
    ALTER TABLE destinations ADD COLUMN link TEXT NOT NULL DEFAULT '{}';
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    pass


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        path.chmod(0o600)
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this anemoned "
                f"understands ({SCHEMA_VERSION}); run the newer anemoned or restore a backup"
            )
        for target in range(version, SCHEMA_VERSION):
            with self.transaction():
                for statement in _statements(MIGRATIONS[target]):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={target + 1}")

    def transaction(self) -> "_Transaction":
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    # -- destinations -------------------------------------------------------

    def destination_rows(self) -> list[dict[str, Any]]:
        return [_row(r) for r in self.db.execute("SELECT * FROM destinations ORDER BY name")]

    def destination_row(self, name: str) -> dict[str, Any] | None:
        r = self.db.execute("SELECT * FROM destinations WHERE name = ?", (name,)).fetchone()
        return _row(r) if r else None

    def insert_destination(self, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(f"INSERT INTO destinations ({cols}) VALUES ({marks})", [_cell(v) for v in row.values()])

    def update_destination(self, name: str, changes: dict[str, Any]) -> None:
        if not changes:
            return
        sets = ", ".join(f"{c} = ?" for c in changes)
        self.db.execute(f"UPDATE destinations SET {sets} WHERE name = ?", [*map(_cell, changes.values()), name])

    def delete_destination(self, name: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM user_state WHERE destination = ?", (name,))
            self.db.execute("DELETE FROM remote_index WHERE destination = ?", (name,))
            self.db.execute("DELETE FROM index_state WHERE destination = ?", (name,))
            self.db.execute("DELETE FROM destinations WHERE name = ?", (name,))

    # -- per-user sync state ------------------------------------------------

    def user_states(self, destination: str) -> dict[str, dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM user_state WHERE destination = ?", (destination,))
        return {r["user"]: dict(r) for r in rows}

    def save_user_states(self, destination: str, rows: list[dict[str, Any]], removed: list[str]) -> None:
        """Upsert the given users' rows and delete the removed users', in
        one transaction (a crash leaves the old state, never half of it)."""
        with self.transaction():
            for row in rows:
                self.db.execute(
                    "INSERT INTO user_state (destination, user, remote_path, fingerprint, files, synced_at, full_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (destination, user) DO UPDATE SET "
                    "remote_path = excluded.remote_path, fingerprint = excluded.fingerprint, files = excluded.files, "
                    "synced_at = excluded.synced_at, full_at = excluded.full_at",
                    (destination, row["user"], row["remote_path"], row["fingerprint"], row["files"], row["synced_at"],
                     row["full_at"]))
            for user in removed:
                self.db.execute("DELETE FROM user_state WHERE destination = ? AND user = ?", (destination, user))

    # -- jobs ---------------------------------------------------------------

    def insert_job(self, row: dict[str, Any]) -> int:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cur = self.db.execute(f"INSERT INTO jobs ({cols}) VALUES ({marks})", [_cell(v) for v in row.values()])
        return int(cur.lastrowid)

    def update_job(self, job_id: int, changes: dict[str, Any]) -> None:
        sets = ", ".join(f"{c} = ?" for c in changes)
        self.db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*map(_cell, changes.values()), job_id])

    def job_row(self, job_id: int) -> dict[str, Any] | None:
        r = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(r) if r else None

    def job_rows(self, destination: str | None = None, limit: int = 50, states: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        where, args = [], []
        if destination is not None:
            where.append("destination = ?")
            args.append(destination)
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args.extend(states)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.execute(f"SELECT * FROM jobs {clause} ORDER BY id DESC LIMIT ?", [*args, limit])
        return [_row(r) for r in rows]

    def last_finished_job_row(self, destination: str, kind: str) -> dict[str, Any] | None:
        r = self.db.execute(
            "SELECT * FROM jobs WHERE destination = ? AND kind = ? AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
            (destination, kind),
        ).fetchone()
        return _row(r) if r else None

    def last_real_success_row(self, destination: str, kind: str) -> dict[str, Any] | None:
        """The newest succeeded job of `kind` that was not a dry run."""
        r = self.db.execute(
            "SELECT * FROM jobs WHERE destination = ? AND kind = ? AND state = 'succeeded' AND dry_run = 0 "
            "ORDER BY id DESC LIMIT 1",
            (destination, kind),
        ).fetchone()
        return _row(r) if r else None

    def last_real_finished_row(self, destination: str, kind: str) -> dict[str, Any] | None:
        """The newest job of `kind` that ran to an end (succeeded or
        failed) and was not a dry run."""
        r = self.db.execute(
            "SELECT * FROM jobs WHERE destination = ? AND kind = ? AND dry_run = 0 "
            "AND state IN ('succeeded', 'failed') ORDER BY id DESC LIMIT 1",
            (destination, kind),
        ).fetchone()
        return _row(r) if r else None

    def previous_outcome(self, destination: str, kind: str, before_id: int) -> str | None:
        """The state of the last real (not dry-run) job of `kind` before
        job `before_id` that succeeded or failed, or None."""
        r = self.db.execute(
            "SELECT state FROM jobs WHERE destination = ? AND kind = ? AND dry_run = 0 AND id < ? "
            "AND state IN ('succeeded', 'failed') ORDER BY id DESC LIMIT 1",
            (destination, kind, before_id),
        ).fetchone()
        return r[0] if r else None

    def prune_jobs(self, destination: str, keep: int) -> list[int]:
        """Delete finished jobs of a destination beyond the newest `keep`;
        returns the ids removed (their logs go too)."""
        rows = self.db.execute(
            "SELECT id FROM jobs WHERE destination = ? AND finished_at IS NOT NULL ORDER BY id DESC LIMIT -1 OFFSET ?",
            (destination, keep),
        ).fetchall()
        ids = [r[0] for r in rows]
        if ids:
            self.db.execute(f"DELETE FROM jobs WHERE id IN ({', '.join('?' for _ in ids)})", ids)
        return ids


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _statements(script: str) -> Iterator[str]:
    for part in script.split(";"):
        if part.strip():
            yield part


_JSON_COLUMNS = {"schedule", "last_test", "stats", "schedule_state", "options", "verify_schedule",
                 "verify_schedule_state", "notifications", "ping", "monitor_state",
                 "link"}


def _row(r: sqlite3.Row) -> dict[str, Any]:
    """A row as a dict, JSON columns decoded. A cell that is not JSON (a
    damaged or hand-edited database) reads as None, so that one bad cell
    fails only what uses it (a schedule is then off, with a warning), not
    every view that lists the rows."""
    out = dict(r)
    for col in _JSON_COLUMNS & out.keys():
        if isinstance(out[col], str):
            try:
                out[col] = json.loads(out[col])
            except ValueError:
                out[col] = None
    return out


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value
