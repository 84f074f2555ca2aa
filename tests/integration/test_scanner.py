"""The scanner (treewalk.py, started by the real spawner): each tree listed
with exactly its owner's rights, never following a link, and one slow
tree costing the others no more than the hand-over delay."""
import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from anemoned import scans, userproc
from anemoned.identity import account_identity
from testbed import accounts

FIND_FORMAT = r"%d %U %y %s %T@ %i %D %P\0"


@pytest.fixture
def root() -> Iterator[Path]:
    """Somewhere every test account can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="anemone-scan-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def tree(root: Path, owner: str) -> Path:
    account = accounts.for_tree(owner)
    backup = root / owner / "backup"
    (backup / "sub dir\nwith a line break").mkdir(parents=True)
    (backup / "sub dir\nwith a line break" / "f.txt").write_text("x")
    (backup / "link").symlink_to("/etc")
    accounts.chown_tree(root / owner, account.pw_uid, account.pw_gid)
    return backup


def test_a_tree_is_listed_as_find_would_list_it_with_its_owners_rights(spawned: tuple[userproc.Spawner, int], root: Path):
    backup = tree(root, "alice")
    alice = account_identity(accounts.for_tree("alice").pw_uid, -1)
    team = accounts.ensure_group("anemt-team")
    accounts.add_to_group(alice.account, team.gr_name)
    alice = account_identity(alice.uid, -1)  # now with the supplementary group
    # Readable through a supplementary group only; and a directory the
    # scanner's own identity (root here) could list, but alice cannot.
    (backup / "team").mkdir()
    (backup / "team/t.txt").write_text("team")
    os.chown(backup / "team", 0, team.gr_gid)
    (backup / "team").chmod(0o750)
    (backup / "roots").mkdir()
    (backup / "roots/secret name.txt").write_text("root's")
    (backup / "roots").chmod(0o700)

    [(records, complaints)] = asyncio.run(scans.scan_trees([(alice, str(backup))], 30))

    as_alice = subprocess.run([*accounts.setpriv_prefix(alice.account), "/usr/bin/find", "-P", str(backup), "-xdev",
                               "-printf", FIND_FORMAT], capture_output=True)
    assert sorted(records.split(b"\0")) == sorted(as_alice.stdout.split(b"\0"))
    assert b"team/t.txt" in records and b"secret name" not in records
    assert b"roots': Permission denied" in complaints
    assert b"roots" in as_alice.stderr and b"Permission denied" in as_alice.stderr
    assert b"link" in records and b"passwd" not in records  # the link is an entry, never followed


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_stopped_listing_stalls_only_its_tree_and_a_new_scanner_lists_the_rest(spawned: tuple[userproc.Spawner, int], root: Path):
    trees = []
    for name in ("alice", "bob", "carol"):
        backup = tree(root, name)
        for i in range(3000 if name != "carol" else 0):  # long enough a listing to be caught in
            (backup / f"{i}.dat").touch()
        account = accounts.for_tree(name)
        accounts.chown_tree(backup, account.pw_uid, account.pw_gid)
        trees.append((account_identity(account.pw_uid, -1), str(backup)))
    spawner_pid = spawned[1]

    async def run() -> list:
        task = asyncio.ensure_future(scans.scan_trees(trees, 5))
        while not (scanners := _children(spawner_pid)):  # the first scanner, stopped as it starts
            await asyncio.sleep(0)
        os.kill(scanners[0], signal.SIGSTOP)
        return await task

    results = asyncio.run(run())
    stalled = [i for i, r in enumerate(results) if isinstance(r, scans.ScanStalled)]
    assert len(stalled) == 1 and stalled[0] < 2, results
    assert all(isinstance(r, tuple) and r[0] for i, r in enumerate(results) if i not in stalled), results
    deadline = time.monotonic() + 10  # the stopped scanner killed and reaped, the other one ended
    while _children(spawner_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _children(spawner_pid)


def test_thousands_of_trees_are_split_over_requests_the_socket_can_carry(spawned: tuple[userproc.Spawner, int], root: Path):
    """A request naming every tree at once would not fit in one message to
    the spawner; each tree is still listed, as its owner."""
    backup = tree(root, "alice")
    alice = account_identity(accounts.for_tree("alice").pw_uid, -1)
    many = [(alice, str(backup))] * 5000  # one tree named 5,000 times: as many requests' worth as 5,000 trees
    results = asyncio.run(scans.scan_trees(many, 60))
    assert len(results) == 5000 and all(isinstance(r, tuple) and b"f.txt" in r[0] for r in results)
    assert len(scans._batches(many)) > 1
