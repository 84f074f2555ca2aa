"""identity.Accounts: the account databases read once per discovery run
give exactly what the system's own lookups give, for every account here."""
import os
import pwd
from pathlib import Path

from anemoned.identity import Accounts
from testbed import accounts as testbed_accounts


def test_one_read_of_the_databases_answers_as_the_system_does_for_every_account():
    # Test workers running side by side make accounts: none while this compares.
    with testbed_accounts.locked():
        accounts = Accounts()
        assert accounts.local  # this machine's nsswitch.conf: files (and systemd)
        everyone = pwd.getpwall()
        assert everyone
        for pw in everyone:
            assert accounts.getpwuid(pw.pw_uid) == pwd.getpwuid(pw.pw_uid)
            assert accounts.getpwnam(pw.pw_name) == pwd.getpwnam(pw.pw_name)
            assert accounts.groups(pw) == tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid)))), pw.pw_name


def test_any_other_source_of_accounts_is_asked_every_time(tmp_path: Path):
    for line in ("passwd: files ldap\ngroup: files\n", "passwd: files\ngroup: sss files\n", "group: compat\n"):
        (tmp_path / "nsswitch.conf").write_text(line)
        accounts = Accounts(tmp_path / "nsswitch.conf")
        assert not accounts.local and not accounts.by_uid, line
        root = pwd.getpwuid(0)
        assert accounts.getpwuid(0) == root and accounts.groups(root) == tuple(sorted(set(os.getgrouplist("root", 0))))
    assert not Accounts(tmp_path / "missing").local
