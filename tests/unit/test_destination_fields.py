import pytest

from anemoned.destinations import check_fingerprint, check_host, check_name, check_remote_path, check_user
from anemoned.protocol import ErrorCode
from anemoned.api.dispatch import to_rpc_error
from anemoned.errors import AnemoneError


def field_of(fn, value):
    with pytest.raises(AnemoneError) as info:
        fn(value)
    err = to_rpc_error(info.value)  # as the client receives it
    assert err.code == ErrorCode.INVALID_PARAMS
    return err.data["field"]


@pytest.mark.parametrize("name", ["Backup Server FR2", "a", "x.y_z-1", "A" * 64])
def test_good_names(name):
    check_name(name)


@pytest.mark.parametrize("name", ["", " lead", "trail ", "a" * 65, "x,key_file=/etc/shadow", "a:b", "a/b", "new\nline", 'q"uote', "trailing\n"])
def test_bad_names_are_refused_naming_the_field(name):
    assert field_of(check_name, name) == "name"


@pytest.mark.parametrize("host, normal", [
    ("Backup.Example.org", "backup.example.org"), ("127.0.0.1", "127.0.0.1"), ("::1", "::1"),
    ("[2001:db8::1]", "2001:db8::1"), ("localhost", "localhost"), ("host.", "host"),
])
def test_good_hosts(host, normal):
    assert check_host(host) == normal


@pytest.mark.parametrize("host", ["", "-oProxyCommand=x", "a,b", "a b", "host:22", "x" * 64 + ".org", "1.2.3.999", "a..b", "a\nb", "0\n", "host.example\n"])
def test_bad_hosts(host):
    assert field_of(check_host, host) == "host"


@pytest.mark.parametrize("user", ["", "-root", ".x", "a b", "a,b=c", "a:b", "x" * 33, "alice\n"])
def test_bad_users(user):
    assert field_of(check_user, user) == "user"


def test_good_users():
    for user in ("anemone-backup", "john.doe", "_svc", "u1"):
        check_user(user)


@pytest.mark.parametrize("path", ["relative", "/a/../b", "/a/./b", "/new\nline", "/tab\t", "/" + "x" * 1030])
def test_bad_remote_paths(path):
    assert field_of(check_remote_path, path) == "remote_path"


def test_remote_path_is_normalised_and_keeps_odd_but_inert_characters():
    assert check_remote_path("/srv//backups/") == "/srv/backups"
    assert check_remote_path("/srv/x,key_file=/etc/shadow:y") == "/srv/x,key_file=/etc/shadow:y"


@pytest.mark.parametrize("fp", ["SHA256:abc", "MD5:aa:bb", "SHA256:" + "A" * 42 + "=", "SHA256:" + "A" * 43 + "\n"])
def test_bad_fingerprints(fp):
    assert field_of(check_fingerprint, fp) == "host_key_fingerprint"
