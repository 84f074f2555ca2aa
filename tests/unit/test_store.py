"""State survives schema upgrades: a database written by the first schema
opens with the current code, every row intact and new columns defaulted."""
import sqlite3

import pytest

from anemoned.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError, _statements


def test_version_1_database_migrates_forward_with_its_data(tmp_path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    for statement in _statements(MIGRATIONS[0]):
        db.execute(statement)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO destinations (name, host, port, user, auth, key_file, remote_path, enabled, created_at) "
               "VALUES ('old', 'h', 22, 'u', 'key', 'certs/rclone_key', '/srv', 1, '2026-01-01T00:00:00+00:00')")
    db.execute("INSERT INTO jobs (destination, kind, state, dry_run, trigger, queued_at) "
               "VALUES ('old', 'sync', 'succeeded', 0, 'manual', '2026-01-01T00:00:00+00:00')")
    db.commit()
    db.close()

    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    row = store.destination_row("old")
    assert (row["host"], row["max_delete"], row["keep_versions_days"], row["schedule_state"]) == ("h", 5000, 30, {})
    assert row["verify_schedule"] == {"kind": "off"}
    assert store.job_rows()[0]["options"] == {}


def test_a_newer_database_is_refused(tmp_path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)
