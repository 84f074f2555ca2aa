"""From a stored destination to what rclone needs to reach it."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from . import hostkeys, rclone
from .hostkeys import HostKey
from .config import Config
from .destinations import DEFAULT_KEY_FILE, Destination
from .keys import KeyFileError, Secrets, read_key_file
from .errors import OperationFailed


def known_hosts_path(config: Config) -> Path:
    return config.certs_dir / "known_hosts"


def write_known_hosts(config: Config, destination_rows: list[dict[str, Any]]) -> None:
    """certs/known_hosts, regenerated from the pinned keys in the database."""
    pins = [(r["host"], r["port"], HostKey.from_text(r["host_key"])) for r in destination_rows if r["host_key"]]
    hostkeys.write_known_hosts(known_hosts_path(config), pins)


def key_path(config: Config, key_file: str) -> Path:
    """A key_file as the operator gave it, resolved: relative to data_dir."""
    path = Path(key_file)
    return path if path.is_absolute() else config.data_dir / path


async def dest_env(config: Config, binary: str, dest: Destination, *, hashcheck: bool = False,
                   uploads: bool = False) -> dict[str, str]:
    """The whole environment of an rclone run against `dest`.

    hashcheck: rclone may run md5sum on the server (verify). uploads: the
    run only writes to the server (a sync), so it may use the larger write
    size the server software allows (rclone.upload_chunk_size).
    Raises OperationFailed when a stored password cannot be decrypted.
    """
    access = await _sftp_access(config, binary, dest)
    chunk_size = rclone.upload_chunk_size(dest.server_version) if uploads else None
    options = rclone.sftp_options(access, hashcheck, chunk_size)
    return {**rclone.base_env(config.data_dir), **rclone.option_env(rclone.DEST_REMOTE, options)}


async def _sftp_access(config: Config, binary: str, dest: Destination) -> rclone.SftpAccess:
    """Decrypts the password (if any) only here, just before a run, and
    hands rclone only its obscured form."""
    obscured = None
    key = None
    if dest.auth == "password":
        assert dest.password_enc is not None
        try:
            password = await asyncio.to_thread(Secrets(config.certs_dir).decrypt, dest.password_enc)
        except KeyFileError as err:
            raise OperationFailed(str(err), field="password") from None
        obscured = await rclone.obscure(binary, password)
    else:
        key = key_path(config, dest.key_file or DEFAULT_KEY_FILE)
        # Checked again before every run, not only when it was set: a
        # destination stored before the rule, or a file since replaced or
        # chowned, must not lend rclone a key the daemon may not use.
        try:
            await asyncio.to_thread(read_key_file, key, config.certs_dir)
        except KeyFileError as err:
            raise OperationFailed(f"key_file: {err}", field="key_file") from None
    return rclone.SftpAccess(
        host=dest.host, port=dest.port, user=dest.user,
        known_hosts_file=known_hosts_path(config),
        host_key_algorithms=dest.host_key.algorithms if dest.host_key else None,
        key_file=key, obscured_password=obscured,
    )
