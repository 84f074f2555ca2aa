"""`dest test`: can we reach, trust, log in to and write to a destination?

Three short rclone runs (stat the remote path, touch a probe file, delete
it), all within TEST_TIMEOUT_S. The outcome is one failure class with the
troubleshooting hints an operator needs for exactly that class.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from . import rclone
from .access import dest_env
from .config import Config
from .destinations import Destination

TEST_TIMEOUT_S = 20.0


def hints(cls: str, dest: Destination) -> list[str]:
    """What to check for a failure class, in the operator's terms."""
    who = f"{dest.user}@{dest.host}"
    return {
        rclone.UNREACHABLE: [
            f"Check that {dest.host} is reachable from this machine and the port ({dest.port}) is right",
            "Check that the SSH service is running on the server: systemctl status ssh",
            "Check that the firewall allows SSH: ufw allow ssh, or firewall-cmd --add-service=ssh",
        ],
        rclone.TIMEOUT: [
            f"The server did not answer in time: check the network path to {dest.host}",
            "A firewall that drops (rather than refuses) packets looks like this; check it allows SSH",
        ],
        rclone.HOST_KEY_UNKNOWN: [
            f"No host key is pinned for {dest.host}:{dest.port}",
            f"Compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server, then run "
            f"anemonectl dest trust {dest.name!r} --host-key-fingerprint SHA256:...",
        ],
        rclone.HOST_KEY_MISMATCH: [
            "The server shows a different host key from the one pinned: nothing was sent",
            "If the server was reinstalled or its keys changed, check the new fingerprint on the server "
            "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and run "
            f"anemonectl dest trust {dest.name!r} --host-key-fingerprint SHA256:...",
            "If nothing changed on the server, someone may be intercepting the connection: do not trust the new key",
        ],
        rclone.AUTH_FAILED: [
            f"Check that the user name {dest.user!r} is right",
            *([f"Check the password; set it again with: anemonectl dest edit {dest.name!r} --password-stdin"]
              if dest.auth == "password" else [
                f"Check that the public key (anemonectl key show) is in ~{dest.user}/.ssh/authorized_keys on the server",
                "Check permissions on the server: 700 for ~/.ssh, 600 for authorized_keys, both owned by the user",
            ]),
        ],
        rclone.PATH_MISSING: [
            f"Create it on the server: mkdir -p {dest.remote_path} && chown {dest.user} {dest.remote_path}",
            f"or let the test create it: anemonectl dest test {dest.name!r} --create-path",
        ],
        rclone.PATH_NOT_WRITABLE: [
            f"Make {dest.remote_path} writable by {who}: chown {dest.user} {dest.remote_path}",
        ],
        rclone.DISK_FULL: ["Free space on the server, or move the remote path to a larger disk"],
    }.get(cls, ["See the daemon log for rclone's full message"])


async def run_test(config: Config, binary: str, dest: Destination, create_path: bool, now: str) -> dict[str, Any]:
    started = time.monotonic()
    try:
        cls, message = await asyncio.wait_for(_steps(config, binary, dest, create_path), TEST_TIMEOUT_S)
    except asyncio.TimeoutError:
        cls, message = rclone.TIMEOUT, f"the test did not finish within {TEST_TIMEOUT_S:.0f} s"
    result: dict[str, Any] = {
        "ok": cls is None,
        "class": cls,
        "message": message,
        "hints": hints(cls, dest) if cls else [],
        "at": now,
        "duration_s": round(time.monotonic() - started, 2),
    }
    return result


async def _steps(config: Config, binary: str, dest: Destination, create_path: bool) -> tuple[str | None, str]:
    env = await dest_env(config, binary, dest)
    args = rclone.global_args("NOTICE") + ["--retries", "1", "--low-level-retries", "1"]

    async def step(*command: str) -> rclone.RcloneResult:
        return await rclone.run(binary, [*command, *args], env, capture_stdout=True)

    def failure(result: rclone.RcloneResult, fallback: str) -> tuple[str, str]:
        messages = rclone.messages_of(result)
        cls = rclone.classify(messages) or fallback
        return cls, _describe(cls, dest, messages)

    stat = await step("lsjson", "--stat", rclone.dest_path(dest.remote_path))
    if not stat.ok:
        cls, message = failure(stat, rclone.UNREACHABLE)
        if cls != rclone.PATH_MISSING or not create_path:
            return cls, message
        made = await step("mkdir", rclone.dest_path(dest.remote_path))
        if not made.ok:
            return failure(made, rclone.PATH_NOT_WRITABLE)
    probe = rclone.dest_path(dest.remote_path, f".anemone-probe-{secrets.token_hex(6)}")
    touched = await step("touch", probe)
    if not touched.ok:
        return failure(touched, rclone.PATH_NOT_WRITABLE)
    removed = await step("deletefile", probe)
    if not removed.ok:
        return failure(removed, rclone.PATH_NOT_WRITABLE)
    return None, "Connection successful"


def _describe(cls: str, dest: Destination, messages: list[str]) -> str:
    server = f"{dest.host}:{dest.port}"
    return {
        rclone.UNREACHABLE: f"cannot connect to {server}",
        rclone.TIMEOUT: f"{server} did not answer in time",
        rclone.HOST_KEY_UNKNOWN: f"no pinned host key for {server}",
        rclone.HOST_KEY_MISMATCH: f"{server} presented a host key that does not match the pinned one",
        rclone.AUTH_FAILED: f"{server} refused to log in {dest.user!r} with the {'password' if dest.auth == 'password' else 'key'}",
        rclone.PATH_MISSING: f"{dest.remote_path} does not exist on {dest.host}",
        rclone.PATH_NOT_WRITABLE: f"{dest.user!r} cannot write to {dest.remote_path} on {dest.host}",
        rclone.DISK_FULL: f"no space left on {dest.host}",
    }.get(cls, messages[0][:200] if messages else "rclone failed")
