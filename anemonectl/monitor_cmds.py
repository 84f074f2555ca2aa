"""anemonectl commands for monitoring: notification targets and their
test, the dead man's switch URL. URLs come on standard input, never as
arguments: they can hold tokens, and argv is visible to every local user."""
from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any, Callable

from anemoned.protocol import ErrorCode, RpcError
from anemoned.protocol import methods as m

from . import render
from .ctl import EXIT_FAILED, EXIT_OK, Ctl

POLICIES = m.POLICIES


def read_url(prompt: str) -> str:
    """One URL from standard input (not echoed on a terminal)."""
    url = getpass.getpass(prompt) if sys.stdin.isatty() else sys.stdin.readline().strip()
    if not url:
        raise RpcError(ErrorCode.INVALID_PARAMS, "url: nothing was read from standard input", {"field": "url"})
    return url


def cmd_notify_add(ctl: Ctl, args: argparse.Namespace) -> int:
    target = ctl.call("dest.notify.add", m.NotifyAdd(name=args.name, url=read_url("Apprise URL: "), policy=args.on))
    ctl.emit(target, lambda t: f"Notification {t['id']} added to {t['destination']!r}: {t['url']} (on {t['policy']})")
    return EXIT_OK


def cmd_notify_list(ctl: Ctl, args: argparse.Namespace) -> int:
    ctl.emit(ctl.call("dest.notify.list", m.DestName(name=args.name)), render.notification_table)
    return EXIT_OK


def cmd_notify_remove(ctl: Ctl, args: argparse.Namespace) -> int:
    result = ctl.call("dest.notify.remove", m.NotifyRemove(name=args.name, id=args.id))
    ctl.emit(result, lambda r: f"Notification {r['id']} removed from {r['destination']!r}.")
    return EXIT_OK


def cmd_notify_test(ctl: Ctl, args: argparse.Namespace) -> int:
    result = ctl.call("dest.notify.test", m.DestName(name=args.name), timeout_s=120)
    ctl.emit(result, render.notify_test)
    return EXIT_OK if result["ok"] else EXIT_FAILED


def cmd_ping_url(ctl: Ctl, args: argparse.Namespace) -> int:
    params = m.PingUrlSet(name=args.name, url=None if args.off else read_url("Ping URL: "))
    dest = ctl.call("dest.ping_url.set", params)
    ctl.emit(dest, lambda d: f"Ping URL of {d['name']!r}: {d['ping_url'] or 'none'}")
    return EXIT_OK


def add_commands(dest: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """`dest notify add|list|remove`, `dest notify-test`, `dest ping-url`,
    and `--max-age` for dest add and dest edit."""
    for name in ("add", "edit"):
        dest.choices[name].add_argument(
            "--max-age", metavar="DURATION",
            help="overdue when the last successful sync is older than this (e.g. 36h, 2d; off: by the schedule)")
    notify = dest.add_parser("notify", help="notification targets (Apprise URLs)").add_subparsers(
        dest="notify_command", required=True, metavar="ACTION")
    add = command(notify, "add", cmd_notify_add, "add an Apprise URL, read from standard input")
    add.add_argument("name")
    add.add_argument("--on", choices=POLICIES, default="failure",
                     help="failure (default): failures and overdue; recovery: also the first success after them; "
                          "always: every finished sync and verify")
    command(notify, "list", cmd_notify_list, "list the targets (URLs redacted)").add_argument("name")
    remove = command(notify, "remove", cmd_notify_remove, "remove a target")
    remove.add_argument("name")
    remove.add_argument("id", type=int)
    command(dest, "notify-test", cmd_notify_test, "send a test message to every target").add_argument("name")
    ping = command(dest, "ping-url", cmd_ping_url,
                   "set the dead man's switch URL (healthchecks style), read from standard input")
    ping.add_argument("name")
    ping.add_argument("--off", action="store_true", help="remove it")
