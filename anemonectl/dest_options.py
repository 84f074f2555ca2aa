"""The options of `dest add` and `dest edit`, and the destination fields
they give (each field once, named as the RPC names it)."""
from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from anemoned.protocol import ErrorCode, RpcError


def add(p: argparse.ArgumentParser, adding: bool) -> None:
    p.add_argument("name", help="destination name")
    by = p.add_mutually_exclusive_group()
    by.add_argument("--verify-download", dest="verify_download", action="store_const", const=True,
                    help="verifies compare by downloading, not by the server's own hashes")
    by.add_argument("--no-verify-download", dest="verify_download", action="store_const", const=False,
                    help="verifies use the server's hashes where it has them (default)")
    p.add_argument("--host", required=adding, help="SFTP server: DNS name or IP address")
    p.add_argument("--port", type=int, default=22 if adding else None, help="SSH port (default 22)")
    p.add_argument("--user", required=adding, help="user name on the SFTP server")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--key-file", help="private key, relative to data_dir (default certs/rclone_key)")
    auth.add_argument("--password-stdin", action="store_true", help="read the SSH password from standard input")
    p.add_argument("--remote-path", required=adding, help="absolute directory on the server")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--disabled", action="store_true", help="keep the destination disabled")
    if not adding:
        state.add_argument("--enabled", action="store_true", help="enable the destination")
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--host-key-fingerprint", metavar="SHA256:...", help="the server's expected host key fingerprint")
    trust.add_argument("--trust-host-key", action="store_true", help="pin whatever host key the server shows now")
    p.add_argument("--max-delete", type=int, metavar="N", help="a sync may delete at most N remote files (default 5000)")
    p.add_argument("--max-delete-percent", type=int, metavar="P",
                   help="... and at most P%% of the remote files (default 20)")
    p.add_argument("--keep-versions-days", type=int, metavar="D",
                   help="keep deleted and overwritten files D days in versions/ (default 30, 0: off)")
    p.add_argument("--warn-free-percent", type=int, metavar="P",
                   help="warn when the server has less than P%% free (default 10)")
    p.add_argument("--stall-timeout", type=int, metavar="SECONDS",
                   help="stop a user's transfer after this long without progress (default 300)")
    p.add_argument("--full-sync-every", type=int, metavar="DAYS",
                   help="sync unchanged users too every DAYS days (default 7, 0: every sync)")
    # How the link is used (anemoned/link_options.py checks the values).
    p.add_argument("--transfers", type=int, metavar="N", help="files uploaded at once, at most connections (default 8)")
    p.add_argument("--checkers", type=int, metavar="N",
                   help="directories listed and files compared at once, at most connections (default 8)")
    p.add_argument("--connections", type=int, metavar="N", help="SSH connections to the server, at most 10 (default 10)")
    p.add_argument("--bwlimit", metavar="TIMETABLE",
                   help='bandwidth of syncs: "2M", "off", or a timetable such as "08:00,2M 19:00,off" (default off)')


def fields(args: argparse.Namespace) -> dict[str, Any]:
    """The destination fields given on the command line (None = not given)."""
    fields: dict[str, Any] = {
        "host": args.host, "port": args.port, "user": args.user,
        "key_file": args.key_file, "remote_path": args.remote_path,
        "host_key_fingerprint": args.host_key_fingerprint, "max_delete": args.max_delete,
        "max_delete_percent": args.max_delete_percent, "keep_versions_days": args.keep_versions_days,
        "warn_free_percent": args.warn_free_percent, "stall_timeout": args.stall_timeout,
        "full_sync_every": args.full_sync_every, "verify_download": args.verify_download, "max_age": args.max_age,
        "transfers": args.transfers, "checkers": args.checkers, "connections": args.connections, "bwlimit": args.bwlimit,
    }
    if args.trust_host_key:
        fields["trust_host_key"] = True
    if args.disabled:
        fields["enabled"] = False
    if getattr(args, "enabled", False):
        fields["enabled"] = True
    if args.password_stdin:
        # Read, never echo: the password travels only inside the socket.
        password = getpass.getpass("SSH password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise RpcError(ErrorCode.INVALID_PARAMS, "password: nothing was read from standard input", {"field": "password"})
        fields["password"] = password
    return {k: v for k, v in fields.items() if v is not None}
