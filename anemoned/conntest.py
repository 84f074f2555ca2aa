"""`dest test`: can we reach, trust, log in to and write to a destination?

First the server must identify itself (reach.preflight), then three short
rclone runs (stat the remote path, touch a probe file, delete it), all
within TEST_TIMEOUT_S. The outcome is one failure class with the
troubleshooting hints an operator needs for exactly that class; a failure
no pattern recognises is class `unknown` with rclone's own words, never a
guess. A path problem also looks at the top of the account's view, to
tell a chroot or sftp-only account apart (Confinement).
"""
from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

from . import rclone, reach
from .access import dest_env
from .config import Config
from .destinations import Destination

TEST_TIMEOUT_S = 20.0


def is_proftpd(server_version: str | None) -> bool:
    """ProFTPD's mod_sftp identifies as "SSH-2.0-mod_sftp..." by default."""
    return bool(server_version) and "mod_sftp" in (server_version or "").lower()


@dataclass(frozen=True)
class Confinement:
    """What the top of the account's view (`/`) looks like. A chroot
    (sshd ChrootDirectory, ProFTPD DefaultRoot) or a served directory
    (rclone serve) shows none of a system's top-level directories."""

    top_level: frozenset[str]

    @property
    def confined(self) -> bool:
        return not ({"etc", "usr", "bin", "proc"} & self.top_level)

    def inside_path(self, host_path: str) -> str | None:
        """The part of a path written as the host sees it that exists at
        the top of the confined view: /srv/sftp/u/backups/x -> /backups/x
        when `backups` is there; None when no part of it is."""
        parts = [p for p in host_path.split("/") if p]
        for i in range(1, len(parts)):
            if parts[i] in self.top_level:
                return "/" + "/".join(parts[i:])
        return None


def hints(cls: rclone.FailureClass, dest: Destination, confinement: Confinement | None = None) -> list[str]:
    """What to check for a failure class, in the operator's terms. With
    signs of a chroot or an sftp-only account (confinement), paths are
    said to be inside it, and `/` is never suggested for a chown: a
    chroot's top must stay root-owned, or sshd refuses every login."""
    who = f"{dest.user}@{dest.host}"
    confined = confinement is not None and confinement.confined
    root = dest.remote_path.rstrip("/") == ""
    path_missing = [
        f"Create it on the server: mkdir -p {dest.remote_path} && chown {dest.user} {dest.remote_path}",
        f"or let the test create it: anemonectl dest test {dest.name!r} --create-path",
    ]
    not_writable = [f"Make {dest.remote_path} writable by {who}: chown {dest.user} {dest.remote_path}"]
    if confined:
        assert confinement is not None
        seen = ", ".join(sorted(confinement.top_level)) or "nothing"
        inside = confinement.inside_path(dest.remote_path)
        where = (f"The account sees a confined tree (a chroot, an sftp-only account or a served directory): "
                 f"its `/` holds {seen}. Remote paths are inside it, not as the server's own file system names them")
        path_missing = [where, *([f"The path inside it is probably {inside}: "
                                  f"anemonectl dest edit {dest.name!r} --remote-path {inside}"] if inside else []),
                        "Only a sub-directory owned by the user is writable; create it on the server inside the "
                        f"chroot directory and chown it to {dest.user}"]
        not_writable = [where, (f"In a chroot, `/` is the chroot directory itself: it must stay owned by root (sshd "
                                "refuses every login otherwise). Use a sub-directory owned by the user, e.g. "
                                f"`mkdir CHROOT/backups && chown {dest.user} CHROOT/backups` on the server, then "
                                f"anemonectl dest edit {dest.name!r} --remote-path /backups") if root else
                        (f"On the server the directory is inside the chroot directory (CHROOT{dest.remote_path}); "
                         f"make that one writable by {dest.user}, never the chroot directory itself")]
    elif root:
        not_writable = [f"{dest.remote_path} is the top of the server's file system: use a sub-directory owned by "
                        f"{dest.user}, e.g. anemonectl dest edit {dest.name!r} --remote-path /srv/anemone-backups"]
    if is_proftpd(dest.server_version):
        key_hints = [
            "The server is ProFTPD (mod_sftp): it reads keys in RFC 4716 form, not ~/.ssh/authorized_keys lines. "
            "Put the output of `anemonectl key show --format rfc4716` in the file its SFTPAuthorizedUserKeys names "
            f"(e.g. /etc/proftpd/authorized_keys/{dest.user})",
        ]
    else:
        key_hints = [
            f"Check that the public key (anemonectl key show) is in ~{dest.user}/.ssh/authorized_keys on the server",
            "Check permissions on the server: 700 for ~/.ssh, 600 for authorized_keys, both owned by the user",
        ]
    return {
        rclone.UNREACHABLE: [
            f"Check that {dest.host} is reachable from this machine and the port ({dest.port}) is right",
            "Check that the SSH service is running on the server: systemctl status ssh",
            "Check that the firewall allows SSH: ufw allow ssh, or firewall-cmd --add-service=ssh",
        ],
        rclone.TIMEOUT: [
            f"The server did not answer in time: check the network path to {dest.host}",
            "A firewall that drops (rather than refuses) packets looks like this; check it allows SSH",
            "A stopped or overloaded SSH server looks like this too: check it on the server",
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
              if dest.auth == "password" else key_hints),
        ],
        rclone.SESSION_REFUSED: [
            f"The server accepted the login of {dest.user!r}, then closed the session before SFTP started: "
            "this is not a network problem",
            "With an OpenSSH ChrootDirectory: the chroot directory and every directory above it must be owned by "
            "root and not writable by group or others (the server's log says \"bad ownership or modes for chroot "
            "directory\"); the user may write only in a sub-directory",
            "Check that the account may use SFTP (Subsystem sftp, or ForceCommand internal-sftp) and read the "
            "server's log: journalctl -u ssh, or /var/log/auth.log",
        ],
        rclone.PATH_MISSING: path_missing,
        rclone.PATH_NOT_WRITABLE: not_writable,
        rclone.DISK_FULL: ["Free space on the server, or move the remote path to a larger disk"],
    }.get(cls, ["The test does not recognise this failure; the message above is rclone's own",
                "The daemon log (journalctl -u anemoned) has rclone's full output"])


async def run_test(config: Config, binary: str, dest: Destination, create_path: bool, now: str) -> dict[str, Any]:
    started = time.monotonic()
    confinement: list[Confinement] = []
    try:
        cls, message = await asyncio.wait_for(_steps(config, binary, dest, create_path, confinement),
                                              TEST_TIMEOUT_S)
    except asyncio.TimeoutError:
        cls, message = rclone.TIMEOUT, f"the test did not finish within {TEST_TIMEOUT_S:.0f} s"
    result: dict[str, Any] = {
        "ok": cls is None,
        "class": cls,
        "message": message,
        "hints": hints(cls, dest, confinement[0] if confinement else None) if cls else [],
        "at": now,
        "duration_s": round(time.monotonic() - started, 2),
    }
    return result


async def _steps(config: Config, binary: str, dest: Destination, create_path: bool,
                 confinement: list[Confinement]) -> tuple[rclone.FailureClass | None, str]:
    """(class, message) of the test; a path problem also appends what the
    top of the account's view looks like to `confinement`."""
    try:
        await reach.preflight(dest.host, dest.port)
    except reach.Unanswered as err:
        return err.cls, str(err)
    env = await dest_env(config, binary, dest)
    args = rclone.global_args("NOTICE") + ["--retries", "1", "--low-level-retries", "1"]

    async def step(*command: str) -> rclone.RcloneResult:
        return await rclone.run(binary, [*command, *args], env, capture_stdout=True)

    async def failure(result: rclone.RcloneResult) -> tuple[rclone.FailureClass, str]:
        messages = rclone.messages_of(result)
        cls = rclone.classify(messages) or rclone.UNKNOWN
        if cls in (rclone.PATH_MISSING, rclone.PATH_NOT_WRITABLE):
            top = await step("lsf", "--max-depth", "1", "--dirs-only", rclone.dest_path("/"))
            if top.ok:
                names = top.stdout.decode(errors="replace").split("\n")
                confinement.append(Confinement(frozenset(n.rstrip("/") for n in names if n.strip())))
        return cls, _describe(cls, dest, messages)

    stat = await step("lsjson", "--stat", rclone.dest_path(dest.remote_path))
    if not stat.ok:
        cls, message = await failure(stat)
        if cls != rclone.PATH_MISSING or not create_path:
            return cls, message
        confinement.clear()
        made = await step("mkdir", rclone.dest_path(dest.remote_path))
        if not made.ok:
            return await failure(made)
    probe = rclone.dest_path(dest.remote_path, f".anemone-probe-{secrets.token_hex(6)}")
    touched = await step("touch", probe)
    if not touched.ok:
        return await failure(touched)
    removed = await step("deletefile", probe)
    if not removed.ok:
        return await failure(removed)
    return None, "Connection successful"


def _describe(cls: rclone.FailureClass, dest: Destination, messages: list[str]) -> str:
    server = f"{dest.host}:{dest.port}"
    first = rclone.failure_message(None, messages, "rclone failed without a message")[:300]
    return {
        rclone.UNREACHABLE: f"cannot connect to {server}",
        rclone.TIMEOUT: f"{server} did not answer in time",
        rclone.HOST_KEY_UNKNOWN: f"no pinned host key for {server}",
        rclone.HOST_KEY_MISMATCH: f"{server} presented a host key that does not match the pinned one",
        rclone.AUTH_FAILED: f"{server} refused to log in {dest.user!r} with the {'password' if dest.auth == 'password' else 'key'}",
        rclone.SESSION_REFUSED: f"{server} accepted the login of {dest.user!r} and then closed the session ({first})",
        rclone.PATH_MISSING: f"{dest.remote_path} does not exist on {dest.host}",
        rclone.PATH_NOT_WRITABLE: f"{dest.user!r} cannot write to {dest.remote_path} on {dest.host}",
        rclone.DISK_FULL: f"no space left on {dest.host}",
    }.get(cls, f"unrecognised failure: {first}")
