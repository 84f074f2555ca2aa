"""The remote index: planning an incremental sync, the local listing it
reads, the files-from list it writes, and an index that cannot be trusted
(dirty, another place, tampered with) meaning a full sync."""
from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from anemoned.remote_index import Changes, IndexDb, confirmed_entries, diff
from anemoned.store import Store
from anemoned.sync_job import record
from anemoned.sync_outcome import SyncResult
from anemoned.users import LocalUser, SyncPlan
from anemoned.sync_argv import files_from
from anemoned.usertree import TreeScan, listing


def scan_of(*records: bytes) -> TreeScan:
    root = b"0 1000 d 4096 1700000000.0000000000 1 2049 "
    return TreeScan("x", 0, 0, None, raw=b"\0".join((root, *records)) + b"\0")


def test_listing_reads_sizes_whole_seconds_and_refuses_names_a_line_cannot_hold():
    lst = listing(scan_of(b"1 1000 f 5 1700000001.9000000000 2 2049 a b.txt",
                          b"1 1000 d 4096 1700000000.0 3 2049 -d [x]",
                          b"2 1000 f 0 1700000002.0 4 2049 -d [x]/*{a,b}\\",
                          b"1 1000 l 9 1700000000.0 5 2049 link"))
    assert lst.files == {"a b.txt": (5, 1700000001), "-d [x]/*{a,b}\\": (0, 1700000002)}
    assert lst.dirs == {"-d [x]"} and lst.unlistable is None
    assert listing(scan_of(b"1 1000 f 1 1.0 2 2049 new\nline")).unlistable == "a name in backup/ holds a line break"
    assert listing(scan_of(b"1 1000 f 1 1.0 2 2049 cr\r")).unlistable == "a name in backup/ holds a line break"
    assert listing(scan_of(b"1 1000 f 1 1.0 2 2049 \xff")).unlistable == "a name in backup/ is not UTF-8"


def test_diff_renames_moves_and_what_only_a_full_sync_can_do():
    index = {"a.txt": (1, 10), "d1/x": (2, 20), "d1/sub/y": (3, 30), "same": (4, 40)}
    files = {"b.txt": (1, 10), "d2/x": (2, 20), "d2/sub/y": (3, 30), "same": (4, 40)}
    assert diff(files, frozenset({"d2", "d2/sub"}), index) == Changes(["b.txt", "d2/sub/y", "d2/x"],
                                                                      ["a.txt", "d1/sub/y", "d1/x"])
    # same size and mtime: not a change (rclone's full sync would not send it either)
    assert diff({"same": (4, 40)}, frozenset(), {"same": (4, 40)}) == Changes([], [])
    assert diff({"same": (4, 41)}, frozenset(), {"same": (4, 40)}) == Changes(["same"], [])
    assert diff({"same": (4, 40)}, frozenset(), {"same": (4, None)}) == Changes(["same"], [])  # never matches
    assert diff({"d1/x/z": (1, 1)}, frozenset({"d1", "d1/x"}), index) == "a file became a directory"
    assert diff({"d1": (1, 1)}, frozenset(), index) == "a directory became a file"


def test_confirmed_entries_trust_rclone_and_never_a_file_it_did_not_confirm():
    files = {"a": (5, 100), "b": (6, 200), "c": (7, 300)}
    got = confirmed_entries(files, {"a": 5, "b": None, "c": 9, "later": 1})
    assert got == {"a": (5, 100), "b": (6, 200), "c": (9, None)}


def test_files_from_is_one_exact_path_per_line():
    assert files_from({"bob": ["#h", " lead", "trail ", "-x", "[a]*{b}\\"], "al": ["x"]}) == \
        "al/x\nbob/#h\nbob/ lead\nbob/trail \nbob/-x\nbob/[a]*{b}\\\n".encode()
    for bad in ("a\nb", "a\r", "", "/abs"):
        with pytest.raises(ValueError):
            files_from({"bob": [bad]})
    with pytest.raises(ValueError):
        files_from({"../x": ["a"]})


def test_an_index_is_used_only_clean_for_its_place_and_untampered(tmp_path):
    store = Store(tmp_path / "state.db")
    db = IndexDb(store.path)
    assert db.load("d", ["alice"], "p") == {"alice": "no index yet"}
    db.save("d", "alice", "p", {"a": (1, 10), "b": (2, None)})
    assert db.load("d", ["alice"], "p") == {"alice": {"a": (1, 10), "b": (2, None)}}
    assert db.load("d", ["alice"], "elsewhere")["alice"] == "the index is of another remote path"
    db.save("d", "alice", "p", {"a": (1, 10), "c": (3, 30)}, changed={"c": (3, 30)}, removed=["b"])
    assert db.load("d", ["alice"], "p")["alice"] == {"a": (1, 10), "c": (3, 30)}

    raw = sqlite3.connect(store.path)
    with raw:
        raw.execute("UPDATE remote_index SET size = 99 WHERE path = 'a'")
    assert db.load("d", ["alice"], "p")["alice"] == "the index is corrupt (its digest does not match)"
    with raw:
        raw.execute("UPDATE remote_index SET size = 'x' WHERE path = 'a'")
    assert db.load("d", ["alice"], "p")["alice"] == "the index is corrupt (a row of the wrong type)"
    with raw:
        raw.execute("DELETE FROM remote_index WHERE path = 'a'")
    assert "corrupt" in db.load("d", ["alice"], "p")["alice"]

    db.save("d", "alice", "p", {"a": (1, 10)})
    db.mark_dirty("d", ["alice", "bob"], "p")
    assert db.dirty_users("d") == {"alice", "bob"}
    assert db.load("d", ["alice"], "p")["alice"] == "the last sync did not finish (index dirty)"
    db.drop("d", ["bob"])
    assert db.dirty_users("d") == {"alice"}
    store.delete_destination("d")
    assert db.load("d", ["alice"], "p") == {"alice": "no index yet"}


def test_a_crash_while_a_sync_is_recorded_leaves_its_users_to_a_full_sync(tmp_path, monkeypatch):
    """The users' states are written before their index, whose save
    clears the dirty mark. A crash at the first write (here: it raises)
    must leave the mark; the other way round, a clean index beside the
    old fingerprint made a tree put back as it was count as unchanged."""
    store = Store(tmp_path / "state.db")
    db = IndexDb(store.path)
    db.mark_dirty("d", ["alice"], "p")
    scan = scan_of(b"1 1000 f 5 1700000001.0 2 2049 a.txt")
    scan = replace(scan, fingerprint="after")
    alice = LocalUser("alice", tmp_path / "alice/backup", None, scan=scan)
    plan = SyncPlan(included=[alice], unchanged=[], skipped={}, stalled={}, synced={"alice"})
    result = SyncResult(True, None, {"alice": {"status": "succeeded"}}, confirmed={"alice": {"a.txt": 5}})

    def crash(*_: object) -> None:
        raise RuntimeError("the daemon dies here")
    monkeypatch.setattr(Store, "save_user_states", crash)
    with pytest.raises(RuntimeError):
        asyncio.run(record(store, db, "d", "p", plan, result, {"alice": listing(scan)}, {}, datetime.now(timezone.utc),
                           {"alice": "first sync to this place"}, {}))
    assert db.dirty_users("d") == {"alice"}
    monkeypatch.undo()
    asyncio.run(record(store, db, "d", "p", plan, result, {"alice": listing(scan)}, {}, datetime.now(timezone.utc),
                       {"alice": "first sync to this place"}, {}))
    assert db.dirty_users("d") == set() and db.load("d", ["alice"], "p") == {"alice": {"a.txt": (5, 1700000001)}}
    assert store.user_states("d")["alice"]["fingerprint"] == "after"
