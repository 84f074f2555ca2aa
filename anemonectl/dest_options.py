"""The options of `dest add` and `dest edit`, and the destination fields
they give (each field once, named as the RPC names it)."""
from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from anemoned.protocol import ErrorCode, RpcError
from anemoned.protocol.fields import Whole
from anemoned.protocol.methods import DEST_FIELDS

METAVARS = {"max_delete": "N", "max_delete_percent": "P", "keep_versions_days": "D", "warn_free_percent": "P",
            "stall_timeout": "SECONDS", "full_sync_every": "DAYS", "bwlimit": "TIMETABLE"}


def add(p: argparse.ArgumentParser, adding: bool) -> None:
    p.add_argument("name", help="destination name")
    by = p.add_mutually_exclusive_group()
    by.add_argument("--verify-download", dest="verify_download", action="store_const", const=True,
                    help="verifies compare by downloading, not by the server's own hashes")
    by.add_argument("--no-verify-download", dest="verify_download", action="store_const", const=False,
                    help="verifies use the server's hashes where it has them (default)")
    p.add_argument("--host", required=adding, help="SFTP server: DNS name or IP address")
    p.add_argument("--port", type=int, help="SSH port (default 22)")
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
    # The limits come from the protocol's one list of destination fields,
    # with their defaults: the help cannot disagree with the daemon.
    # A default of None is the daemon's to fill in (the link fields: their
    # doc says it).
    for name, spec, default, doc, _alt in DEST_FIELDS:
        shown = doc if default is None else f"{doc} (default {default})"
        if isinstance(spec, Whole) and name != "port":
            p.add_argument("--" + name.replace("_", "-"), type=int, metavar=METAVARS.get(name, "N"),
                           help=shown.replace("%", "%%"))
        elif name == "bwlimit":  # checked by the daemon (anemoned/link_options.py), passed on as given
            p.add_argument("--bwlimit", metavar=METAVARS[name], help=shown.replace("%", "%%"))


def fields(args: argparse.Namespace) -> dict[str, Any]:
    """The destination fields given on the command line (None = not given)."""
    fields: dict[str, Any] = {
        "host": args.host, "port": args.port, "user": args.user,
        "key_file": args.key_file, "remote_path": args.remote_path,
        "host_key_fingerprint": args.host_key_fingerprint, "max_delete": args.max_delete,
        "max_delete_percent": args.max_delete_percent, "keep_versions_days": args.keep_versions_days,
        "warn_free_percent": args.warn_free_percent, "stall_timeout": args.stall_timeout,
        "full_sync_every": args.full_sync_every, "verify_download": args.verify_download, "max_age": args.max_age,
        "transfers": args.transfers, "checkers": args.checkers, "connections": args.connections,
        "processes": args.processes, "bwlimit": args.bwlimit,
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
