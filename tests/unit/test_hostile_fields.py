"""Property-based: whatever a person types into a destination field, it is
either refused naming the field, or it lands in exactly one rclone option,
verbatim, and remote paths stay under the destination's remote_path."""
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anemoned import rclone
from anemoned.destinations import check_host, check_name, check_remote_path, check_user
from anemoned.protocol import ErrorCode
from anemoned.api.dispatch import to_rpc_error
from anemoned.errors import AnemoneError
from anemoned.sync_argv import include_rules
from anemoned.users import safe_user_name

NASTY = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80) | st.sampled_from(
    ["x,key_file=/etc/shadow", ":sftp,host=evil:", "a=b", "'q'", '"q"', "-oProxyCommand=sh", "..", "/../etc", "a\nb"])
OPTION_KEYS = {"type", "host", "port", "user", "known_hosts_file", "shell_type", "disable_hashcheck",
               "key_use_agent", "ask_password", "host_key_algorithms", "key_file", "encoding"}


def accepted(check, value):
    try:
        result = check(value)
    except AnemoneError as domain_err:
        err = to_rpc_error(domain_err)
        assert err.code == ErrorCode.INVALID_PARAMS and err.data["field"]
        return None
    return value if result is None else result


@settings(max_examples=500)
@given(host=NASTY, user=NASTY, name=NASTY, path=NASTY)
def test_fields_are_refused_or_inert(host, user, name, path):
    host_ok, user_ok = accepted(check_host, host), accepted(check_user, user)
    accepted(check_name, name)
    if host_ok is not None and user_ok is not None:
        access = rclone.SftpAccess(host=host_ok, port=22, user=user_ok, known_hosts_file=Path("/k"),
                                   host_key_algorithms="ssh-ed25519", key_file=Path("/d/certs/rclone_key"))
        opts = rclone.sftp_options(access)
        assert set(opts) == OPTION_KEYS
        assert (opts["host"], opts["user"], opts["key_file"]) == (host_ok, user_ok, "/d/certs/rclone_key")
        assert not any(c in host_ok + user_ok for c in ",:=\"' \n")
    remote = accepted(check_remote_path, "/srv/" + path)
    if remote is not None:
        assert remote.startswith("/srv") and ".." not in remote.split("/")
        target = rclone.dest_path(remote, "backup", "alice")
        assert target.startswith(f"dest:{remote}") and target.count("dest:") >= 1


@given(st.lists(NASTY, max_size=10))
def test_only_safe_names_reach_the_filter_and_each_rule_is_one_line(names):
    if not all(safe_user_name(n) for n in names):
        with pytest.raises(ValueError):
            include_rules(names)
        return
    lines = include_rules(names).split("\n")[:-1]  # rclone reads the file line by line on \n
    assert lines[-1] == "- **" and all(line.startswith("+ /{") for line in lines[:-1])


@given(NASTY)
def test_only_safe_user_names_become_remote_directories(name):
    if safe_user_name(name):
        assert "/" not in name and name not in (".", "..") and not name.startswith("-") and len(name) <= 32
