import functools
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "anemoned.service"
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
#: What starting a user's process and trimming our capabilities call:
#: the spawner's child (setgroups, setresgid, setresuid, capset, prctl for
#: the parent-death signal and no_new_privs), caps.trim (capset, prctl),
#: the scanner's change of file-system identity (setfsuid, setfsgid),
#: stopping a user's process (kill).
PRIVILEGE_SYSCALLS = {"setgroups", "setresgid", "setresuid", "setfsuid", "setfsgid", "capset", "capget", "prctl",
                      "kill", "execve"}


@needs_analyze
def test_unit_exposure_is_at_most_2():
    res = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    assert float(m[1]) <= 2.0


def test_unit_is_notify_with_watchdog_and_only_the_capabilities_to_start_users_processes():
    text = UNIT.read_text()
    caps = "CAP_SETUID CAP_SETGID CAP_KILL CAP_SETPCAP"
    for line in ("Type=notify", f"AmbientCapabilities={caps}", f"CapabilityBoundingSet={caps}",
                 "KillMode=control-group", "NoNewPrivileges=yes"):
        assert line in text.splitlines(), line
    assert "DAC_READ_SEARCH" not in text and "DAC_OVERRIDE" not in text
    assert re.search(r"^WatchdogSec=\d+", text, re.M)


@functools.cache
def _expand(name: str) -> frozenset[str]:
    """A syscall filter group, recursively, as systemd-analyze knows it."""
    if not name.startswith("@"):
        return frozenset({name})
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True).stdout
    found: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            found |= _expand(item)
    return frozenset(found)


@needs_analyze
def test_the_syscall_filter_allows_what_the_privilege_change_needs_and_denies_the_rest_of_privileged():
    allowed: set[str] | None = None
    for value in re.findall(r"^SystemCallFilter=(.*)$", UNIT.read_text(), re.M):
        deny = value.startswith("~")
        names = set().union(*(_expand(n) for n in value.lstrip("~").split()))
        if deny:
            assert allowed is not None, "the first SystemCallFilter= line must be an allow list"
            allowed -= names
        else:
            allowed = names if allowed is None else allowed | names
    assert allowed is not None
    assert PRIVILEGE_SYSCALLS <= allowed, PRIVILEGE_SYSCALLS - allowed
    # Everything else root-only stays out.
    assert not (_expand("@privileged") - _expand("@setuid") - {"capset", "setfsuid", "setfsuid32"}) & allowed
    assert not {"mount", "chroot", "bpf", "ptrace", "open_by_handle_at"} & allowed
