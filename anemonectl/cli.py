"""anemonectl: every operator action is one command sending one or a few RPCs.

Exit codes (CONTRACT): 0 success; 1 the operation ran and failed; 2 usage
error or invalid input; 3 daemon unreachable or refused this user; 4 no such
destination or job.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from anemoned import protocol
from anemoned.protocol import ErrorCode, RpcError
from anemoned.protocol import methods as m

from . import dest_options, monitor_cmds, render
from .client import Client, DaemonUnreachable
from .ctl import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, Ctl, exit_code_for

#: Seconds one job.wait long-poll may take; progress is redrawn after each.
WAIT_POLL_S = 1


# -- commands -----------------------------------------------------------------

def cmd_status(ctl: Ctl, args: argparse.Namespace) -> int:
    ctl.emit(ctl.call("status"), render.status)
    return EXIT_OK


def cmd_key_generate(ctl: Ctl, args: argparse.Namespace) -> int:
    ctl.emit(ctl.call("key.generate", m.KeyGenerate(force=args.force)), render.key)
    return EXIT_OK


def cmd_key_show(ctl: Ctl, args: argparse.Namespace) -> int:
    ctl.emit(ctl.call("key.show"), render.key_rfc4716 if args.format == "rfc4716" else render.key)
    return EXIT_OK


def cmd_dest_add(ctl: Ctl, args: argparse.Namespace) -> int:
    dest = ctl.call("dest.add", m.DestAdd(name=args.name, **dest_options.fields(args)), timeout_s=60)
    ctl.emit(dest, lambda d: f"Destination {d['name']!r} added (host key {d['host_key_fingerprint']}).")
    return EXIT_OK


def cmd_dest_edit(ctl: Ctl, args: argparse.Namespace) -> int:
    dest = ctl.call("dest.edit", m.DestEdit(name=args.name, **dest_options.fields(args)), timeout_s=60)
    ctl.emit(dest, render.destination)
    return EXIT_OK


def cmd_dest_list(ctl: Ctl, args: argparse.Namespace) -> int:
    ctl.emit(ctl.call("dest.list"), render.destination_table)
    return EXIT_OK


def cmd_dest_show(ctl: Ctl, args: argparse.Namespace) -> int:
    ctl.emit(ctl.call("dest.show", m.DestName(name=args.name)), render.destination)
    return EXIT_OK


def _simple_dest(method: str, done: str) -> Callable[[Ctl, argparse.Namespace], int]:
    def run(ctl: Ctl, args: argparse.Namespace) -> int:
        result = ctl.call(method, m.DestName(name=args.name))
        ctl.emit(result, lambda _r: done.format(name=args.name))
        return EXIT_OK
    return run


def cmd_dest_trust(ctl: Ctl, args: argparse.Namespace) -> int:
    params = m.DestTrust(name=args.name, host_key_fingerprint=args.host_key_fingerprint or None)
    dest = ctl.call("dest.trust", params, timeout_s=60)
    ctl.emit(dest, lambda d: f"Host key of {d['name']!r} pinned: {d['host_key_fingerprint']}")
    return EXIT_OK


def cmd_dest_test(ctl: Ctl, args: argparse.Namespace) -> int:
    result = ctl.call("dest.test", m.DestTest(name=args.name, create_path=args.create_path), timeout_s=60)
    ctl.emit(result, render.test_result)
    return EXIT_OK if result["ok"] else EXIT_FAILED


def schedule_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The schedule object the daemon validates, from the exclusive options."""
    if args.off:
        return {"kind": "off"}
    if args.interval:
        return {"kind": "interval", "every": args.interval}
    if args.daily:
        return {"kind": "daily", "time": args.daily}
    if args.weekly:
        return {"kind": "weekly", "day": args.weekly[0], "time": args.weekly[1]}
    if args.monthly:
        return {"kind": "monthly", "day": args.monthly[0], "time": args.monthly[1]}
    return {"kind": "cron", "expr": args.cron}


def cmd_dest_schedule(ctl: Ctl, args: argparse.Namespace) -> int:
    params = m.DestSchedule(name=args.name, schedule=schedule_from_args(args), catch_up=args.catch_up,
                            kind="verify" if args.verify else "sync")
    dest = ctl.call("dest.schedule", params)
    ctl.emit(dest, render.destination)
    return EXIT_OK


def _job_outcome(job: dict[str, Any]) -> int:
    return EXIT_OK if job["state"] == "succeeded" else EXIT_FAILED


def wait_for_job(ctl: Ctl, job_id: int) -> dict[str, Any]:
    """Long-poll job.wait until the job ends, drawing progress on stderr."""
    progress = render.ProgressPrinter(sys.stderr, enabled=True)
    while True:
        job = ctl.call("job.wait", m.JobWait(id=job_id, timeout_s=WAIT_POLL_S), timeout_s=WAIT_POLL_S + 30)
        if job["state"] in ("queued", "running"):
            progress.show(job)
            continue
        progress.finish()
        return job


def _run_job(ctl: Ctl, method: str, params: Any, wait: bool,
             human: Callable[[dict[str, Any]], str] = render.job) -> int:
    """Queue a job; print its id, or wait for it (progress on stderr) and
    print it, exiting with its outcome."""
    job = ctl.call(method, params, timeout_s=60)
    if not wait:
        ctl.emit(job, lambda j: str(j["id"]))
        return EXIT_OK
    if not ctl.as_json:
        print(f"job {job['id']}", file=sys.stderr)
    job = wait_for_job(ctl, job["id"])
    ctl.emit(job, human)
    return _job_outcome(job)


def cmd_sync(ctl: Ctl, args: argparse.Namespace) -> int:
    params = m.Sync(destination=args.name, dry_run=args.dry_run, allow_deletes=args.allow_deletes,
                    allow_empty=tuple(args.allow_empty), full=args.full)
    return _run_job(ctl, "sync", params, args.wait)


def cmd_restore(ctl: Ctl, args: argparse.Namespace) -> int:
    where = {"destination": args.name, "user": args.user, "path": args.path or None, "version": args.version or None}
    if args.list:
        ctl.emit(ctl.call("restore.list", m.RestoreList(**where), timeout_s=300), render.restore_listing)
        return EXIT_OK
    if not args.to:
        raise RpcError(ErrorCode.INVALID_PARAMS, "to: --to DIR is required (or --list)", {"field": "to"})
    params = m.Restore(**where, to=os.path.abspath(args.to), overwrite=args.overwrite)
    return _run_job(ctl, "restore", params, args.wait)


def cmd_verify(ctl: Ctl, args: argparse.Namespace) -> int:
    params = m.Verify(destination=args.name, user=args.user or None, download=args.download)
    return _run_job(ctl, "verify", params, args.wait)


def cmd_dest_usage(ctl: Ctl, args: argparse.Namespace) -> int:
    return _run_job(ctl, "dest.usage", m.DestName(name=args.name), wait=True, human=render.usage)


def cmd_dest_versions(ctl: Ctl, args: argparse.Namespace) -> int:
    ctl.emit(ctl.call("dest.versions", m.DestName(name=args.name), timeout_s=120), render.versions)
    return EXIT_OK


def cmd_job_list(ctl: Ctl, args: argparse.Namespace) -> int:
    ctl.emit(ctl.call("job.list", m.JobList(destination=args.dest or None, limit=args.limit)), render.job_table)
    return EXIT_OK


def cmd_job_show(ctl: Ctl, args: argparse.Namespace) -> int:
    ctl.emit(ctl.call("job.show", m.JobId(id=args.id)), render.job)
    return EXIT_OK


def cmd_job_wait(ctl: Ctl, args: argparse.Namespace) -> int:
    job = wait_for_job(ctl, args.id)
    ctl.emit(job, render.job)
    return _job_outcome(job)


def cmd_job_cancel(ctl: Ctl, args: argparse.Namespace) -> int:
    job = ctl.call("job.cancel", m.JobId(id=args.id), timeout_s=30)
    ctl.emit(job, lambda j: f"job {j['id']} {j['state']}")
    return EXIT_OK


# -- argument parsing -----------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--socket", default=argparse.SUPPRESS, help="daemon socket (else $ANEMONE_SOCKET, else the default)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="one JSON document on stdout")

    parser = argparse.ArgumentParser(prog="anemonectl", description="Control the Anemone backup daemon.", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, fn: Callable[[Ctl, argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    command(sub, "status", cmd_status, "daemon summary")

    key = sub.add_parser("key", help="the daemon's SSH key").add_subparsers(dest="key_command", required=True, metavar="ACTION")
    command(key, "generate", cmd_key_generate, "create the Ed25519 key pair").add_argument("--force", action="store_true", help="replace an existing key (the old pair is kept as rclone_key.old)")
    command(key, "show", cmd_key_show, "print the public key and its fingerprint").add_argument(
        "--format", choices=("openssh", "rfc4716"), default="openssh",
        help="openssh: one authorized_keys line (default); rfc4716: the block ProFTPD's SFTPAuthorizedUserKeys reads")

    dest = sub.add_parser("dest", help="SFTP destinations").add_subparsers(dest="dest_command", required=True, metavar="ACTION")
    dest_options.add(command(dest, "add", cmd_dest_add, "add a destination"), adding=True)
    command(dest, "list", cmd_dest_list, "list destinations")
    command(dest, "show", cmd_dest_show, "show one destination").add_argument("name")
    dest_options.add(command(dest, "edit", cmd_dest_edit, "change a destination"), adding=False)
    command(dest, "remove", _simple_dest("dest.remove", "Destination {name!r} removed."), "remove a destination").add_argument("name")
    command(dest, "enable", _simple_dest("dest.enable", "Destination {name!r} enabled."), "enable a destination").add_argument("name")
    command(dest, "disable", _simple_dest("dest.disable", "Destination {name!r} disabled."), "disable a destination").add_argument("name")
    trust = command(dest, "trust", cmd_dest_trust, "re-pin the server's host key")
    trust.add_argument("name")
    trust.add_argument("--host-key-fingerprint", metavar="SHA256:...")
    test = command(dest, "test", cmd_dest_test, "test the connection")
    test.add_argument("name")
    test.add_argument("--create-path", action="store_true", help="create the remote path when it is missing")
    sched = command(dest, "schedule", cmd_dest_schedule, "set when the destination syncs")
    sched.add_argument("name")
    sched.add_argument("--verify", action="store_true", help="set the verify schedule instead of the sync schedule")
    when = sched.add_mutually_exclusive_group(required=True)
    when.add_argument("--interval", metavar="DURATION", help="every DURATION, e.g. 30m, 2h, 1d")
    when.add_argument("--daily", metavar="HH:MM")
    when.add_argument("--weekly", nargs=2, metavar=("DAY", "HH:MM"))
    when.add_argument("--monthly", nargs=2, metavar=("DAY_OF_MONTH", "HH:MM"))
    when.add_argument("--cron", metavar="EXPR")
    when.add_argument("--off", action="store_true")
    catch = sched.add_mutually_exclusive_group()
    catch.add_argument("--catch-up", dest="catch_up", action="store_const", const=True, default=None,
                       help="after downtime, run once soon after start-up (default)")
    catch.add_argument("--skip-missed", dest="catch_up", action="store_const", const=False,
                       help="after downtime, wait for the next scheduled moment")

    sync = command(sub, "sync", cmd_sync, "start a sync now")
    sync.add_argument("name")
    sync.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    sync.add_argument("--wait", action="store_true", help="show progress and exit with the job's outcome")
    sync.add_argument("--allow-deletes", action="store_true", help="lift the delete guard (max_delete) for this sync")
    sync.add_argument("--allow-empty", action="append", default=[], metavar="USER",
                      help="USER's backup/ really is empty or gone: mirror that too (repeatable)")
    sync.add_argument("--full", action="store_true",
                      help="sync every user, also those whose tree did not change since their last sync")

    command(dest, "versions", cmd_dest_versions, "list the versions folders kept on the server").add_argument("name")
    command(dest, "usage", cmd_dest_usage, "bytes and files stored, versions, free space").add_argument("name")
    monitor_cmds.add_commands(dest, command)

    rest = command(sub, "restore", cmd_restore, "get a user's files back from a destination")
    rest.add_argument("name")
    rest.add_argument("--user", required=True)
    rest.add_argument("--to", metavar="DIR", help="an empty or absent directory (or --overwrite)")
    rest.add_argument("--path", metavar="SUBPATH", help="only this file or directory of the user's tree")
    rest.add_argument("--version", metavar="TIMESTAMP", help="from this versions folder (see dest versions)")
    rest.add_argument("--overwrite", action="store_true", help="write into a non-empty DIR")
    rest.add_argument("--list", action="store_true", help="list what can be restored instead")
    rest.add_argument("--wait", action="store_true", help="show progress and exit with the job's outcome")

    ver = command(sub, "verify", cmd_verify, "compare the server's copy with the local files by content")
    ver.add_argument("name")
    ver.add_argument("--user")
    ver.add_argument("--download", action="store_true",
                     help="compare by downloading the server's files, not by the hashes the server computes")
    ver.add_argument("--wait", action="store_true", help="show progress and exit with the job's outcome")

    job = sub.add_parser("job", help="jobs").add_subparsers(dest="job_command", required=True, metavar="ACTION")
    jl = command(job, "list", cmd_job_list, "recent jobs")
    jl.add_argument("--dest", metavar="NAME")
    jl.add_argument("--limit", type=int, default=20)
    command(job, "show", cmd_job_show, "one job").add_argument("id", type=int)
    command(job, "wait", cmd_job_wait, "wait for a job, showing progress").add_argument("id", type=int)
    command(job, "cancel", cmd_job_cancel, "cancel a job").add_argument("id", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    socket_path = getattr(args, "socket", None) or os.environ.get("ANEMONE_SOCKET") or protocol.DEFAULT_SOCKET
    as_json = getattr(args, "json", False)
    client = Client(socket_path)
    try:
        return args.fn(Ctl(client, as_json), args)
    except DaemonUnreachable as err:
        return _fail(as_json, EXIT_UNREACHABLE, str(err))
    except RpcError as err:
        return _fail(as_json, exit_code_for(err.code), err.message, err.to_json())
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()


def _fail(as_json: bool, code: int, message: str, error: dict[str, Any] | None = None) -> int:
    print(f"anemonectl: {render.terminal_safe(message)}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": error or {"message": message}}))
    return code


if __name__ == "__main__":
    sys.exit(main())
