"""Pure parts of a sync: who is synced, what is kept, how rclone is told."""
from pathlib import Path

import pytest

from anemoned.sync import (LocalUser, StatsCollector, combine_upstreams, include_rules, make_plan,
                           remembered_remote_users, safe_user_name, scan_users, sync_args)


def u(name, problem=None):
    return LocalUser(name, Path(f"/users/{name}/backup"), problem)


def test_plan_syncs_only_users_with_something_to_send():
    users = [u("alice"), u("bob", "backup/ is empty"), u("carol", "backup/ is empty"), u("dave", "no backup/ directory"),
             u("erin", "backup/ is a symbolic link; it is not followed"), u("fay", "no backup/ directory")]
    plan = make_plan(users, [], remote_users=["alice", "bob", "dave", "gone", "we!rd"])
    assert [x.name for x in plan.included] == ["alice"]
    assert plan.synced == {"alice"}  # rclone sees nothing else: every other remote directory is kept
    # a known remote copy is kept, and said so; carol and fay have nothing to send and no known copy
    assert set(plan.skipped) == {"bob", "dave", "erin", "gone"}
    assert "kept" in plan.skipped["bob"] and "symbolic link" in plan.skipped["erin"]


def test_plan_mirrors_an_allowed_empty_or_gone_tree():
    users = [u("alice"), u("bob", "backup/ is empty"), u("dave", "no backup/ directory")]
    plan = make_plan(users, [], remote_users=["bob", "dave", "gone"], allow_empty=["bob", "dave", "gone"])
    assert [x.name for x in plan.included] == ["alice", "bob"]  # bob: an empty tree to mirror
    assert plan.synced == {"alice", "bob", "dave", "gone"}  # dave and gone: removed remotely
    assert plan.skipped == {}


def test_include_rules_name_the_users_and_end_by_excluding_the_rest():
    assert include_rules(["b", "a.b-c", "b"]) == "+ /{a.b-c,b}/**\n- **\n"
    assert len(include_rules(f"u{i}" for i in range(1001)).splitlines()) == 3 + 1  # 500 names a rule
    with pytest.raises(ValueError):
        include_rules(["a,*"])


def test_combine_upstreams_quote_each_entry():
    users = [LocalUser("alice", Path('/srv/my "users"/alice/backup'), None), u("bob")]
    assert combine_upstreams(users) == '"alice=/srv/my ""users""/alice/backup" "bob=/users/bob/backup"'


def test_safe_user_names():
    assert all(safe_user_name(n) for n in ("alice", "john.doe", "_svc", "u-1"))
    assert not any(safe_user_name(n) for n in ("..", ".", "-x", "a b", "a,b", "x" * 40, "é", "alice\n"))


def test_sync_args_target_backup_under_remote_path():
    args = sync_args("/srv/b", Path("/d/f"), dry_run=True)
    assert args[:3] == ["sync", "src:", "dest:/srv/b/backup"]
    assert "--dry-run" in args and args[args.index("--filter-from") + 1] == "/d/f"
    assert "--one-file-system" in args and "--use-json-log" in args


def test_memory_of_remote_users_only_for_the_same_remote_path():
    stats = {"remote_path": "/srv/b", "remote_users": ["alice"]}
    assert remembered_remote_users(stats, "/srv/b") == ["alice"]
    assert remembered_remote_users(stats, "/srv/other") is None
    assert remembered_remote_users(None, "/srv/b") is None


def test_stats_from_rclone_json_records():
    c = StatsCollector(["alice", "bob"], dry_run=False)
    c.feed({"level": "info", "msg": "Copied (new)", "size": 10, "object": "alice/a/b.txt", "objectType": "*combine.Object"})
    c.feed({"level": "info", "msg": "Copied (replaced existing)", "size": 5, "object": "bob/c", "objectType": "*combine.Object"})
    c.feed({"level": "info", "msg": "Deleted", "object": "bob/old", "objectType": "*sftp.Object"})
    c.feed({"level": "info", "msg": "Set directory modification time", "object": "alice/a", "objectType": "string"})
    c.feed({"level": "error", "msg": "Failed to copy: permission denied", "object": "alice/x", "objectType": "*combine.Object"})
    progress = c.feed({"level": "notice", "msg": "", "stats": {"bytes": 15, "totalBytes": 30, "transfers": 2, "totalTransfers": 3,
                                                             "checks": 0, "deletes": 1, "errors": 1, "speed": 1.5, "eta": 2,
                                                             "transferring": [{"name": "bob/big"}]}})
    assert progress["current_user"] == "bob" and progress["total_bytes"] == 30
    st = c.stats(1.234)
    assert (st["files_transferred"], st["bytes_transferred"], st["files_deleted"], st["errors"]) == (2, 15, 1, 1)
    assert st["users"]["alice"] == {"files_transferred": 1, "bytes_transferred": 10, "files_deleted": 0,
                                    "status": "failed", "warning": None}
    assert st["users"]["bob"]["files_deleted"] == 1 and st["users"]["bob"]["status"] == "succeeded"


def test_scan_users_skips_unsafe_names_and_flags_symlinked_backup(tmp_path):
    (tmp_path / "alice/backup").mkdir(parents=True)
    (tmp_path / "alice/backup/f").write_text("x")
    (tmp_path / "bad name/backup").mkdir(parents=True)
    (tmp_path / "link").mkdir()
    (tmp_path / "link/backup").symlink_to("/etc")
    (tmp_path / "afile").write_text("not a dir")
    users, warnings = scan_users(tmp_path)
    assert [(x.name, x.problem) for x in users] == [("alice", None), ("link", "backup/ is a symbolic link; it is not followed")]
    assert len(warnings) == 1 and "bad name" in warnings[0]


def test_delete_limit_is_the_stricter_of_count_and_percentage_above_a_floor():
    from anemoned.sync import delete_limit
    assert delete_limit(5000, 20, None) == 5000
    assert delete_limit(5000, 20, 100_000) == 5000
    assert delete_limit(5000, 20, 10_000) == 2000
    assert delete_limit(5000, 20, 10) == 100  # a handful of files is never "20%"
    assert delete_limit(2, 20, 10) == 2
