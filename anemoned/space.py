"""How much room the login user has on the server: f_bavail, not f_bfree.

rclone's `about` on SFTP asks the server for statvfs@openssh.com and
reports free = f_bfree * f_frsize: blocks free to root. The login user can
only use f_bavail (ext4 keeps 5% for root by default; on the machine where
this was found rclone said 229.7 GiB where `df` as the user said 79.1 GiB).
A backup that plans on rclone's figure runs out of space early, gets a
bare SSH_FX_FAILURE, and warn_free_percent fires at half its margin.

So the daemon asks the same extension itself, over its own SSH
connection (asyncssh), and uses f_bavail. The connection is made exactly
as rclone's would be, from the same RCLONE_CONFIG_DEST_* options: the
pinned known_hosts file and only the pinned key type, the daemon's key (or
the password, de-obscured here in memory, never written anywhere), no
agent, no ssh config file. Where the server lacks the extension (none of
OpenSSH, ProFTPD mod_sftp or rclone serve sftp does), the caller falls
back to rclone's `about`; rclone serve sftp's own figure is already the
user's (its `df` reports the local f_bavail).
"""
from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .rclone import DEST_REMOTE

# asyncssh logs every connection at INFO; the daemon's own lines say enough.
# (It is imported only when first needed: it adds to the daemon's start-up.)
logging.getLogger("asyncssh").setLevel(logging.WARNING)

STATVFS_TIMEOUT_S = 20.0

#: rclone's fixed key for "obscured" option values (lib/obscure): obscuring
#: is reversible by design; it only keeps passwords from being read at a glance.
_OBSCURE_KEY = bytes.fromhex("9c935b48730a554d6bfd7c63c886a92bd390198eb8128afbf4de162b8b95f638")


def reveal(obscured: str) -> str:
    """The plain text of an rclone-obscured value."""
    raw = base64.urlsafe_b64decode(obscured + "=" * (-len(obscured) % 4))
    decryptor = Cipher(algorithms.AES(_OBSCURE_KEY), modes.CTR(raw[:16])).decryptor()
    return (decryptor.update(raw[16:]) + decryptor.finalize()).decode()


@dataclass(frozen=True)
class Space:
    free: int  # bytes the login user can still write (f_bavail)
    total: int  # bytes of the file system (f_blocks)


def _option(env: dict[str, str], name: str) -> str | None:
    return env.get(f"RCLONE_CONFIG_{DEST_REMOTE.upper()}_{name.upper()}")


def connect_options(env: dict[str, str]) -> dict[str, Any]:
    """asyncssh.connect() keyword arguments equivalent to the rclone SFTP
    options in env. Pure."""
    if not _option(env, "known_hosts_file") or not _option(env, "host"):
        raise ValueError("no pinned host key: the server is never asked without one")
    options: dict[str, Any] = {
        "host": _option(env, "host"), "port": int(_option(env, "port") or 22), "username": _option(env, "user"),
        "known_hosts": _option(env, "known_hosts_file"), "agent_path": None, "config": None,
        "client_keys": [], "password": None, "connect_timeout": STATVFS_TIMEOUT_S,
        # nothing from ~/.ssh either (X.509 trust roots are looked up there)
        "x509_trusted_certs": None, "x509_trusted_cert_paths": None,
    }
    algorithms_ = _option(env, "host_key_algorithms")
    if algorithms_:
        options["server_host_key_algs"] = algorithms_.split()
    key_file = _option(env, "key_file")
    if key_file:
        options["client_keys"] = [key_file]
    obscured = _option(env, "pass")
    if obscured:
        options["password"] = reveal(obscured)
    return options


async def statvfs(env: dict[str, str], path: str) -> Space | None:
    """The space the login user has where `path` lives, or None when the
    server does not say (no statvfs extension) or cannot be asked."""
    import asyncssh

    try:
        return await asyncio.wait_for(_statvfs(asyncssh, env, path), STATVFS_TIMEOUT_S)
    except (asyncio.TimeoutError, OSError, asyncssh.Error, ValueError) as err:
        logging.getLogger(__name__).debug("statvfs@openssh.com not answered: %r", err)
        return None


async def _statvfs(asyncssh: Any, env: dict[str, str], path: str) -> Space:
    async with asyncssh.connect(**connect_options(env)) as conn:
        async with conn.start_sftp_client() as sftp:
            vfs = await sftp.statvfs(path)
    return Space(free=vfs.bavail * vfs.frsize, total=vfs.blocks * vfs.frsize)
