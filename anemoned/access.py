"""From a stored destination to what rclone needs to reach it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import hostkeys, rclone
from .hostkeys import HostKey
from .config import Config
from .destinations import Destination
from .keys import Secrets


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


async def sftp_access(config: Config, binary: str, dest: Destination) -> rclone.SftpAccess:
    """Decrypts the password (if any) only here, just before a run, and
    hands rclone only its obscured form."""
    obscured = None
    key = None
    if dest.auth == "password":
        assert dest.password_enc is not None
        obscured = await rclone.obscure(binary, Secrets(config.certs_dir).decrypt(dest.password_enc))
    else:
        key = key_path(config, dest.key_file or "certs/rclone_key")
    return rclone.SftpAccess(
        host=dest.host, port=dest.port, user=dest.user,
        known_hosts_file=known_hosts_path(config),
        host_key_algorithms=dest.host_key.algorithms if dest.host_key else None,
        key_file=key, obscured_password=obscured,
    )


def rclone_env(config: Config, access: rclone.SftpAccess, hashcheck: bool = False,
               chunk_size: str | None = None) -> dict[str, str]:
    options = rclone.sftp_options(access, hashcheck, chunk_size)
    return {**rclone.base_env(config.data_dir), **rclone.option_env(rclone.DEST_REMOTE, options)}
