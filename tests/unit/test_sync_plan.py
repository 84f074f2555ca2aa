"""Pure parts of a sync: who is synced, what is kept, how rclone is told."""
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from anemoned.identity import UserIdentity
from anemoned.rclone_stats import StatsCollector
from anemoned.sync_argv import include_rules, source_env, sync_args
from anemoned.users import LocalUser, UserState, make_plan, safe_user_name
from anemoned.usertree import TreeScan, parse
from anemoned.versions import delete_limit

ALICE = UserIdentity(1000, 1000, (1000,), "alice")


def u(name, problem=None, fingerprint="fp"):
    scan = TreeScan(fingerprint, 1, 1, None) if problem is None else None
    return LocalUser(name, Path(f"/users/{name}/backup"), problem, ALICE if problem is None else None, scan)


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
    assert [x.name for x in plan.included] == ["alice"]  # bob's empty tree needs no reader: its remote copy goes
    assert plan.synced == {"alice", "bob", "dave", "gone"}  # bob, dave and gone: removed remotely
    assert plan.skipped == {}


def test_plan_leaves_out_users_whose_tree_did_not_change_until_a_full_sync_is_due():
    now = datetime(2026, 11, 28, tzinfo=timezone.utc)
    recent = (now - timedelta(days=1)).isoformat()
    old = (now - timedelta(days=8)).isoformat()
    states = {"alice": UserState("/r", "fp", 1, recent), "bob": UserState("/r", "other", 1, recent),
              "carol": UserState("/r", "fp", 1, old), "dave": UserState("/r", None, 1, recent),
              "erin": UserState("/elsewhere", "fp", 1, recent)}
    users = [u(n) for n in ("alice", "bob", "carol", "dave", "erin", "fay")]
    plan = make_plan(users, [], states.keys(), (), states, remote_path="/r", full=False, now=now)
    # alice: same tree, full sync not due; bob changed; carol's full sync is due (7 days);
    # dave's last attempt failed; erin synced to another remote path; fay is new.
    assert [x.name for x in plan.unchanged] == ["alice"]
    assert [x.name for x in plan.included] == ["bob", "carol", "dave", "erin", "fay"]
    full = make_plan(users, [], states.keys(), (), states, remote_path="/r", full=True, now=now)
    assert not full.unchanged and len(full.included) == 6


def test_include_rules_name_the_users_and_end_by_excluding_the_rest():
    assert include_rules(["b", "a.b-c", "b"]) == "+ /{a.b-c,b}/**\n- **\n"
    assert len(include_rules(f"u{i}" for i in range(1001)).splitlines()) == 3 + 1  # 500 names a rule
    with pytest.raises(ValueError):
        include_rules(["a,*"])
    # a mount point inside a tree is left out, its name taken literally
    assert include_rules(["a"], {"a": ("m n/x*[1]",)}) == "- /a/m n/x\\*\\[1\\]/**\n+ /{a}/**\n- **\n"


def test_source_is_a_combine_of_one_sftp_remote_per_user_quoted_and_reading_nothing_else():
    users = [LocalUser("alice", Path('/srv/my "users"/alice/backup'), None, ALICE), u("bob")]
    env = source_env(users, ['"/py" "relay" "tok1"', '"/py" "relay" "tok2"'])
    assert env["RCLONE_CONFIG_SRC_UPSTREAMS"] == '"alice=u0:/srv/my ""users""/alice/backup" "bob=u1:/users/bob/backup"'
    assert env["RCLONE_CONFIG_U1_SSH"] == '"/py" "relay" "tok2"'
    for i in (0, 1):  # no command ever runs through the reader but its SFTP session
        assert env[f"RCLONE_CONFIG_U{i}_SHELL_TYPE"] == "none" and env[f"RCLONE_CONFIG_U{i}_SKIP_LINKS"] == "true"
        assert env[f"RCLONE_CONFIG_U{i}_MD5SUM_COMMAND"] == "none"


def test_safe_user_names():
    assert all(safe_user_name(n) for n in ("alice", "john.doe", "_svc", "u-1"))
    assert not any(safe_user_name(n) for n in ("..", ".", "-x", "a b", "a,b", "x" * 40, "é", "alice\n"))


def test_sync_args_target_backup_under_remote_path():
    args = sync_args("/srv/b", Path("/d/f"), dry_run=True)
    assert args[:3] == ["sync", "src:", "dest:/srv/b/backup"]
    assert "--dry-run" in args and args[args.index("--filter-from") + 1] == "/d/f"
    assert "--use-json-log" in args


def test_stats_from_rclone_json_records():
    c = StatsCollector(["alice", "bob"], dry_run=False)
    c.feed({"level": "info", "msg": "Copied (new)", "size": 10, "object": "alice/a/b.txt", "objectType": "*combine.Object"})
    c.feed({"level": "info", "msg": "Copied (replaced existing)", "size": 5, "object": "bob/c", "objectType": "*combine.Object"})
    c.feed({"level": "info", "msg": "Deleted", "object": "bob/old", "objectType": "*sftp.Object"})
    c.feed({"level": "info", "msg": "Set directory modification time", "object": "alice/a", "objectType": "string"})
    c.feed({"level": "error", "msg": "Failed to copy: permission denied", "object": "alice/x", "objectType": "*combine.Object"})
    c.feed({"level": "error", "msg": "Attempt 1/3 failed with 1 errors and: permission denied"})
    c.feed({"level": "error", "msg": "couldn't connect SSH: connection refused"})
    progress = c.feed({"level": "notice", "msg": "", "stats": {"bytes": 15, "totalBytes": 30, "transfers": 2, "totalTransfers": 3,
                                                             "checks": 0, "deletes": 1, "errors": 1, "speed": 1.5, "eta": 2,
                                                             "transferring": [{"name": "bob/big"}]}})
    assert progress["current_user"] == "bob" and progress["total_bytes"] == 30
    assert c.users["alice"]["files_transferred"] == 1 and c.users["alice"]["bytes_transferred"] == 10
    assert c.users["bob"]["files_deleted"] == 1 and c.users["bob"]["errors"] == 0
    assert c.user_errors == {"alice": "x: Failed to copy: permission denied"}
    # rclone's summary of alice's error is not a failure of its own
    assert c.general_errors == ["couldn't connect SSH: connection refused"]
    assert c.transferring_users() == {"bob"}


def test_tree_scan_fingerprints_paths_sizes_times_and_inodes_and_flags_problems():
    root = b"0 1000 d 4096 1700000000.0 2 77 \0"
    a = b"1 1000 f 5 1700000001.5 10 77 a.txt\0"
    b = b"1 1000 f 7 1700000002.0 11 77 b\nc\0"
    first = parse(root + a + b, b"", 1000, 77)
    assert (first.files, first.bytes, first.problem) == (2, 12, None)
    assert parse(root + b + a, b"", 1000, 77).fingerprint == first.fingerprint  # order does not matter
    touched = a.replace(b"1700000001.5", b"1700000001.6")
    assert parse(root + touched + b, b"", 1000, 77).fingerprint != first.fingerprint
    assert parse(root, b"", 1000, 77).problem == "backup/ is empty"
    assert "belongs to uid 0" in parse(root.replace(b" 1000 ", b" 0 "), b"", 1000, 77).problem
    assert "another file system" in parse(root + a, b"", 1000, 78).problem
    assert parse(root + a + b"1 1000 d 4096 1.0 12 78 mnt\0", b"", 1000, 77).mounts == ("mnt",)
    unreadable = parse(root + a, b"find: './secret': Permission denied\n", 1000, 77)
    assert unreadable.problem is None and unreadable.fingerprint != parse(root + a, b"", 1000, 77).fingerprint


def test_delete_limit_is_the_stricter_of_count_and_percentage_above_a_floor():
    assert delete_limit(5000, 20, None) == 5000
    assert delete_limit(5000, 20, 100_000) == 5000
    assert delete_limit(5000, 20, 10_000) == 2000
    assert delete_limit(5000, 20, 10) == 100  # a handful of files is never "20%"
    assert delete_limit(2, 20, 10) == 2


@pytest.mark.parametrize("left,parts", [(6, 3), (7, 3), (2, 4), (0, 2), (5000, 4)])
def test_a_budget_split_between_shares_adds_up_to_the_whole(left, parts):
    from anemoned.sync_shares import Budget
    shares = Budget(left).split(parts)
    assert len(shares) == parts and sum(b.left for b in shares) == left
    assert max(b.left for b in shares) - min(b.left for b in shares) <= 1
    assert all(b.left is None for b in Budget(None).split(parts))


def test_users_are_shared_by_their_files_and_each_user_is_in_one_share():
    from anemoned.sync_shares import split_users
    files = {"a": 1000, "b": 10, "c": 10, "d": 10, "e": 900, "f": 5}
    users = [LocalUser(n, Path(f"/u/{n}/backup"), None) for n in sorted(files)]
    shares = split_users(users, 3, lambda u: files[u.name])
    assert sorted(u.name for s in shares for u in s) == sorted(files)
    loads = sorted(sum(files[u.name] for u in s) for s in shares)
    assert loads == [35, 900, 1000]  # the two heavy users alone, the light ones together
    assert all([u.name for u in s] == sorted(u.name for u in s) for s in shares)
    assert len(split_users(users[:2], 8, lambda u: files[u.name])) == 2  # never more shares than users
    assert split_users([], 4, lambda u: 0) == []


def test_a_share_has_files_enough_to_keep_its_transfers_busy():
    from anemoned.sync_shares import SHARE_FILES_PER_TRANSFER, share_count
    per_run = SHARE_FILES_PER_TRANSFER * 8  # 8 transfers
    assert share_count(10, 16, 8) == 1  # ten changed files: one run
    assert share_count(300, 16, 8) == 300 // per_run  # a small tree: few runs
    assert share_count(10_000, 16, 8) == 16  # a first sync of a NAS: as many as allowed
    assert share_count(10_000, 4, 8) == 4
    assert share_count(0, 4, 8) == 1


def test_runs_that_start_later_get_less_so_that_all_finish_together():
    from anemoned.sync_shares import finish_together
    work = finish_together([0.0, 1.0, 2.0], 30.0, 1.0)
    assert [round(w, 6) for w in work] == [11.0, 10.0, 9.0]  # all end at 11 s
    # A run that would get less than the least worth starting is not started.
    assert finish_together([0.0, 5.0, 10.0], 8.0, 1.0) == [6.5, 1.5]  # the third would start after the end
    assert finish_together([0.0, 5.0], 6.0, 1.0) == [6.0]  # the second would get 0.5 s: one run alone


def test_on_a_link_later_shares_get_fewer_files():
    from anemoned.sync_shares import plan_shares
    users = [LocalUser(f"u{i:02}", Path(f"/u/u{i:02}/backup"), None) for i in range(20)]
    weight = lambda u: 50  # noqa: E731 - files per user
    alike = plan_shares(users, 4, weight, 10, 1.0, 0.0, 64)
    assert [s for s, _ in alike] == [0, 1.0, 2.0, 3.0] and [len(u) for _, u in alike] == [5, 5, 5, 5]
    later = plan_shares(users, 4, weight, 10, 1.0, 0.01, 64)  # 10 s of work: the last starts 3 s late
    loads = [sum(weight(u) for u in share) for _, share in later]
    assert [s for s, _ in later] == [0, 1.0, 2.0, 3.0] and loads == sorted(loads, reverse=True) and loads[0] > loads[-1]
    assert sorted(u.name for _, share in later for u in share) == [u.name for u in users]  # everyone, once


def test_shares_that_grow_in_the_second_split_still_start_within_the_handshake_limit():
    from anemoned.sync_shares import HANDSHAKES_AT_ONCE, plan_shares
    files = {"u0": 5, "u1": 200, "u2": 3, "u3": 1}
    users = [LocalUser(n, Path(f"/u/{n}/backup"), None) for n in files]
    plan = plan_shares(users, 4, lambda u: files[u.name], 10, 0.6, 0.01, 1)
    waves: dict[float, int] = {}
    for start, share in plan:
        waves[start] = waves.get(start, 0) + min(10, sum(files[u.name] for u in share) + 1)
    assert max(waves.values()) <= HANDSHAKES_AT_ONCE, plan


def test_runs_beyond_the_cpus_get_one_go_thread_each():
    from anemoned.sync_shares import go_threads
    assert go_threads(16, 2) == {"GOMAXPROCS": "1"}  # a link's 16 runs on a 2-CPU NAS
    assert go_threads(4, 2) == {"GOMAXPROCS": "1"}
    assert go_threads(4, 16) == {}  # CPUs enough: Go's own choice
    assert go_threads(2, 2) == {}
    assert go_threads(1, 1) == {}  # a single run keeps every CPU (W2's one large file)


def test_runs_start_in_waves_of_at_most_ten_handshakes():
    from anemoned.sync_shares import start_times
    assert start_times([5000, 5000, 5000, 5000], 10, 0.5) == [0, 0.5, 1.0, 1.5]  # full syncs: 10 each
    assert start_times([4, 3, 3], 10, 0.5) == [0, 0, 0.5]  # 5 + 4, then 4
    assert start_times([1] * 8, 10, 0.3) == [0, 0, 0, 0, 0, 0.3, 0.3, 0.3]  # 2 each
    assert start_times([100, 100], 4, 0.2) == [0, 0]  # runs of 4 connections


def test_a_sync_in_the_same_second_as_the_last_does_not_share_its_versions_folder():
    from anemoned.versions import next_folder, version_folder
    t = datetime(2026, 11, 29, 3, 56, 42, 300_000, tzinfo=timezone.utc)
    last = {"versions_folder": version_folder(t)}
    assert next_folder(t, last) == version_folder(t + timedelta(seconds=1))  # the same second: the next one
    later = {"versions_folder": version_folder(t + timedelta(seconds=1))}
    assert next_folder(t + timedelta(seconds=0.5), later) == version_folder(t + timedelta(seconds=2))  # a third
    assert next_folder(t + timedelta(seconds=5), last) == version_folder(t + timedelta(seconds=5))
    for nothing in (None, {"versions_folder": None}, "x", {"versions_folder": "not a folder"}):
        assert next_folder(t, nothing) == version_folder(t)


def test_a_jobs_progress_adds_up_its_runs_and_an_ended_run_has_no_speed():
    from anemoned.sync_shares import total_progress
    ended = {"bytes": 100, "total_bytes": 100, "files": 2, "total_files": 2, "checks": 3, "speed": 0, "eta_s": None,
             "current_user": "alice"}
    going = {"bytes": 50, "total_bytes": 200, "files": 1, "total_files": 4, "checks": 1, "speed": 25, "eta_s": 6,
             "current_user": "bob"}
    total = total_progress([ended, going], going)
    assert total == {"bytes": 150, "total_bytes": 300, "files": 3, "total_files": 6, "checks": 4, "speed": 25,
                     "eta_s": 6, "current_user": "bob"}


def test_allow_empty_never_mirrors_a_tree_that_is_not_known_to_be_empty():
    """`sync --allow-empty bob` says bob's empty tree is meant; a tree that
    could not be read, is a symbolic link or stalled its scan says nothing
    of the kind, and its remote copy is kept (it was mirrored as empty:
    moved into versions/, or deleted with versions off)."""
    stalled = LocalUser("carol", Path("/users/carol/backup"), "backup/ could not be scanned: no answer", None, None,
                        stalled=True)
    users = [u("alice"), u("bob", "backup/ is empty"), u("erin", "backup/ is a symbolic link; it is not followed"),
             stalled]
    plan = make_plan(users, [], remote_users=["bob", "carol", "erin"], allow_empty=["bob", "carol", "erin"])
    assert plan.synced == {"alice", "bob"}
    assert "symbolic link" in plan.skipped["erin"] and "carol" in plan.stalled
