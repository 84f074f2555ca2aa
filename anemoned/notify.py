"""Notifications through Apprise and the dead man's switch: what a target
is, what a message says, and sending without ever holding up the daemon.

Targets are Apprise URLs (e-mail, ntfy, Gotify, Slack, Matrix, Telegram,
JSON webhooks, ...): Apprise speaks to the services, we never do. A URL can
hold a token, so it is stored encrypted (keys.Secrets, like passwords) and
only its redacted form (`shown`: scheme and host, with the parts Apprise
knows to be secret masked) is ever shown or logged.

Policies, each including the one before:
- failure (default): failed syncs and verifies, and a destination overdue;
- recovery: also the first success after a failure or while overdue;
- always: also every other finished sync and verify.

Sending runs Apprise (blocking I/O) in a small thread pool and stops
waiting after SEND_TIMEOUT_S, so neither the event loop nor any job waits
for a slow or dead receiver; the outcome is logged, never fails a job.
"""
from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import __version__
from .errors import InvalidField
from .jobtypes import JobKind

POLICIES = ("failure", "recovery", "always")
#: message event -> the policies that receive it
RECEIVED_BY = {
    "failure": {"failure", "recovery", "always"},
    "overdue": {"failure", "recovery", "always"},
    "recovery": {"recovery", "always"},
    "success": {"always"},
}
SEND_TIMEOUT_S = 30.0
PING_TIMEOUT_S = 10.0
MAX_URL_LEN = 2048
#: Users listed by name in a message; the rest are counted.
USERS_LISTED = 10


def _check_text(url: Any, field: str) -> str:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LEN:
        raise InvalidField(field, f"must be a URL of 1-{MAX_URL_LEN} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise InvalidField(field, "must not contain spaces or control characters")
    return url


def _scheme_and_host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]  # never the user or password
    return urlunsplit((parts.scheme, host, "/…", "", ""))


def check_target(url: Any) -> str:
    """The redacted form of an Apprise URL; raises naming `url` when
    Apprise does not understand it."""
    import apprise  # heavy (loads ~190 plugins): only when needed
    _check_text(url, "url")
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        raise InvalidField("url", "is not a notification URL Apprise understands (for example "
                             "ntfys://ntfy.sh/TOPIC, mailtos://user:pass@example.org, json://host/path)")
    return _scheme_and_host(plugin.url(privacy=True))


def check_ping_url(url: Any) -> str:
    """The redacted form of a dead man's switch URL (http or https)."""
    _check_text(url, "url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidField("url", "must be an http:// or https:// URL such as https://hc-ping.com/UUID")
    return _scheme_and_host(url)


def ping_url(base: str, suffix: str) -> str:
    """healthchecks' convention: `<url>/start`, `<url>/<exit status>`;
    the query string, if any, stays at the end."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + suffix, parts.query, ""))


# -- messages (pure) ------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    event: str  # failure | recovery | success | overdue | test
    title: str
    body: str

    @property
    def notify_type(self) -> str:
        """Apprise's NotifyType value."""
        return {"failure": "failure", "overdue": "failure", "recovery": "success",
                "success": "success"}.get(self.event, "info")


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _user_lines(job: dict[str, Any]) -> list[str]:
    """One line per user whose part did not go well (with what went wrong)."""
    users = (job.get("stats") or {}).get("users") or {}
    lines = []
    for name, u in sorted(users.items()):
        if u.get("status") == "succeeded":
            continue
        if job["kind"] == JobKind.VERIFY:
            detail = f"{u.get('differ', 0)} differ, {u.get('missing', 0)} missing on the server, {u.get('errors', 0)} errors"
        else:
            detail = u.get("status", "?") + (f": {u['warning']}" if u.get("warning") else "")
        lines.append(f"  user {name}: {detail}")
    if len(lines) > USERS_LISTED:
        lines = lines[:USERS_LISTED] + [f"  ... and {len(lines) - USERS_LISTED} more users"]
    return lines


def job_message(event: str, job: dict[str, Any], host: str) -> Message:
    """The message for a finished job (as `job show --json` shows it):
    failure, recovery or success."""
    what = f"{job['kind']} of destination {job['destination']!r}"
    verb = {"failure": "failed", "recovery": "succeeded again", "success": "succeeded"}[event]
    lines = [f"The {what} {verb} on {host}.", f"Job: {job['id']} ({job['trigger']}), finished {job['finished_at']}"]
    if job.get("error"):
        lines.append(f"Error: {job['error']}")
    stats = job.get("stats") or {}
    if job["kind"] == JobKind.SYNC and "files_transferred" in stats and event != "failure":
        lines.append(f"{stats['files_transferred']} files ({_size(stats.get('bytes_transferred'))}) transferred, "
                     f"{stats.get('files_deleted', 0)} deleted")
    lines += _user_lines(job)
    lines.append(f"See more: anemonectl job show {job['id']}")
    return Message(event, f"[{host}] anemoned: {what} {verb}", "\n".join(lines))


def overdue_message(destination: str, detail: str, host: str) -> Message:
    return Message("overdue", f"[{host}] anemoned: destination {destination!r} is overdue",
                   f"Destination {destination!r} on {host} is {detail}.\n"
                   f"See more: anemonectl dest show {destination!r}; anemonectl job list --dest {destination!r}")


def test_message(destination: str, host: str) -> Message:
    return Message("test", f"[{host}] anemoned: test notification",
                   f"A test notification for destination {destination!r} on {host}.\n"
                   f"See more: anemonectl dest show {destination!r}")


def ping_body(job: dict[str, Any]) -> str:
    """The short body of an end ping: the outcome, counts or error."""
    stats = job.get("stats") or {}
    text = f"anemoned job {job['id']} ({job['kind']} of {job['destination']!r}): {job['state']}"
    if job.get("error"):
        text += f"\n{job['error']}"
    elif "files_transferred" in stats:
        text += (f"\n{stats['files_transferred']} files ({_size(stats.get('bytes_transferred'))}) transferred, "
                 f"{stats.get('files_deleted', 0)} deleted, {stats.get('duration_s', 0)} s")
    return text[:10_000]


def hostname() -> str:
    return socket.gethostname()


# -- sending -------------------------------------------------------------------------

def _send_apprise(url: str, message: Message) -> bool:
    import apprise
    sender = apprise.Apprise()
    if not sender.add(url):
        return False
    return bool(sender.notify(body=message.body, title=message.title, notify_type=message.notify_type))


def _http_ping(url: str, body: str) -> bool:
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "User-Agent": f"anemoned/{__version__}", "Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=PING_TIMEOUT_S) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Sender:
    """Runs blocking sends in threads of its own, never longer than a
    timeout as far as the caller is concerned."""

    def __init__(self, workers: int = 8) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anemoned-notify")

    async def _run(self, timeout_s: float, fn: Any, *args: Any) -> bool:
        future = asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            return False  # the thread ends by itself (Apprise's own timeouts)
        except Exception:
            return False

    async def notify(self, url: str, message: Message) -> bool:
        return await self._run(SEND_TIMEOUT_S, _send_apprise, url, message)

    async def ping(self, url: str, body: str) -> bool:
        # healthchecks asks clients to retry: one more try after a failure
        for attempt in range(2):
            if await self._run(PING_TIMEOUT_S + 5, _http_ping, url, body):
                return True
            if attempt == 0:
                await asyncio.sleep(1)
        return False

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
