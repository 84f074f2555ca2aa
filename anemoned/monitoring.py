"""Monitoring: what happens around jobs and over time so that operators
know without looking. The daemon calls job_started / job_finished (from
the job queue) and runs `run()` beside the scheduler; this module decides
what to notify, ping, flag overdue and write as metrics.

- Notifications (notify.py): a finished sync or verify (not a dry run)
  that failed, recovered or succeeded, and a destination becoming overdue,
  to each target whose policy receives it.
- Dead man's switch: a sync (not a dry run) pings `<url>/start`, then
  `<url>/0` or `<url>/1` (its exit status) with a short body, in order.
- Overdue (overdue.py): checked after every job, whenever a destination
  changes, and when the next destination is due to become overdue (at
  least every MAX_SLEEP_S). Becoming overdue is logged and notified once;
  the state (`monitor_state.overdue_since`) survives restarts, so nothing
  repeats until a success ends it.
- Metrics (metrics.py): rewritten at start, after every job and when the
  overdue state changes.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Callable, Coroutine
from zoneinfo import ZoneInfo

from . import keys, metrics, notify, overdue
from .config import Config
from .destinations import Destination
from .jobtypes import Job, JobKind, JobState
from .logs import event
from .scheduler import zone
from .store import Store
from .timeutil import instant, iso, utc_now

MAX_SLEEP_S = 300.0
NOTIFIED_KINDS = (JobKind.SYNC, JobKind.VERIFY)
#: Seconds shutdown waits for notifications still on their way.
CLOSE_TIMEOUT_S = 5.0


class Monitor:
    def __init__(self, store: Store, config: Callable[[], Config], on_change: Callable[[], None] = lambda: None,
                 sender: notify.Sender | None = None, tz: Callable[[], ZoneInfo] | None = None) -> None:
        self.store = store
        self.config = config
        # The daemon passes the scheduler's resolved zone: resolving it reads
        # files, which must not happen on the event loop at every view.
        self.tz = tz or (lambda: zone(self.config().timezone))
        self.on_change = on_change  # systemd's STATUS= names overdue destinations
        self.sender = sender or notify.Sender()
        self.host = notify.hostname()
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.ping_chains: dict[str, asyncio.Task[Any]] = {}

    # -- overdue -------------------------------------------------------------------

    def deadline_of(self, dest: Destination) -> overdue.Overdue | None:
        """When the destination becomes overdue without a new success."""
        last = self.store.last_real_success_row(dest.name, JobKind.SYNC)
        return overdue.deadline(dest.enabled, dest.schedule, dest.schedule_state, dest.created_at, dest.max_age_s,
                                instant(last["finished_at"]) if last else None, self.tz())

    def overdue_of(self, dest: Destination, now: datetime | None = None) -> overdue.Overdue | None:
        due = self.deadline_of(dest)
        return due if due is not None and (now or utc_now()) > due.since else None

    def check_overdue(self) -> datetime | None:
        """Record, log and notify destinations that became overdue or no
        longer are; returns when the next one would become overdue."""
        now, changed, upcoming = utc_now(), False, None
        for row in self.store.destination_rows():
            dest = Destination.from_row(row)
            due = self.deadline_of(dest)
            late = due if due is not None and now > due.since else None
            was = dest.monitor_state.get("overdue_since")
            if late is not None and not was:
                self.store.update_destination(dest.name, {"monitor_state": {"overdue_since": iso(late.since)}})
                event(logging.WARNING, "destination overdue", dest=dest.name, since=iso(late.since),
                      allowed_age=overdue.format_duration(late.allowed), rule=late.rule)
                self._notify(dest, notify.overdue_message(dest.name, late.message(), self.host))
                changed = True
            elif late is None and was:
                self.store.update_destination(dest.name, {"monitor_state": {}})
                event(logging.INFO, "destination no longer overdue", dest=dest.name, since=was)
                changed = True
            if late is None and due is not None and (upcoming is None or due.since < upcoming):
                upcoming = due.since
        if changed:
            self.write_metrics()
            self.on_change()
        return upcoming

    async def run(self) -> None:
        """Check, then sleep until the next destination could become
        overdue (re-reading the clock at least every MAX_SLEEP_S)."""
        while True:
            self.wake.clear()
            upcoming = self.check_overdue()
            sleep_s = MAX_SLEEP_S
            if upcoming is not None:
                sleep_s = min(max((upcoming - utc_now()).total_seconds() + 0.5, 0.5), MAX_SLEEP_S)
            try:
                await asyncio.wait_for(self.wake.wait(), sleep_s)
            except asyncio.TimeoutError:
                pass

    # -- jobs ------------------------------------------------------------------------

    def job_started(self, job: Job) -> None:
        if job.kind == JobKind.SYNC and not job.dry_run:
            self._ping(job.destination, "start", f"anemoned job {job.id} (sync of {job.destination!r}) started")

    def job_finished(self, job: Job) -> None:
        """Notify and ping for the job, then refresh overdue and metrics."""
        row = self.store.destination_row(job.destination)
        real = not job.dry_run and job.state in (JobState.SUCCEEDED, JobState.FAILED)
        if row is not None and real and job.kind in NOTIFIED_KINDS:
            dest = Destination.from_row(row)
            shown = job.view()  # messages say what `job show` would
            self._notify(dest, notify.job_message(self._job_event(dest, job), shown, self.host), job.id)
            if job.kind == JobKind.SYNC:
                self._ping(dest.name, "0" if job.state == JobState.SUCCEEDED else "1", notify.ping_body(shown))
        self.wake.set()  # the overdue check runs next, in run()
        self.write_metrics()

    def _job_event(self, dest: Destination, job: Job) -> str:
        if job.state == JobState.FAILED:
            return "failure"
        previous = self.store.previous_outcome(dest.name, job.kind, job.id)
        if previous == "failed" or (job.kind == JobKind.SYNC and dest.monitor_state.get("overdue_since")):
            return "recovery"
        return "success"

    # -- sending ---------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _secret(self, token: str, dest: str, what: str) -> str | None:
        try:
            return keys.Secrets(self.config().certs_dir).decrypt(token.encode())
        except keys.KeyFileError:
            event(logging.ERROR, f"{what} cannot be decrypted; set it again", dest=dest)
            return None

    def _notify(self, dest: Destination, message: notify.Message, job: int | None = None) -> None:
        for target in dest.notifications:
            if target["policy"] in notify.RECEIVED_BY[message.event]:
                url = self._secret(target["url_enc"], dest.name, "a notification URL")
                if url is not None:
                    self._spawn(self._deliver(dest.name, target, url, message, job))

    async def _deliver(self, dest: str, target: dict[str, Any], url: str, message: notify.Message,
                       job: int | None) -> bool:
        ok = await self.sender.notify(url, message)
        event(logging.INFO if ok else logging.WARNING, "notification sent" if ok else "notification failed",
              dest=dest, job=job, notification=target["id"], target=target["shown"], message=message.event)
        return ok

    def _ping(self, dest_name: str, suffix: str, body: str) -> None:
        row = self.store.destination_row(dest_name)
        ping = row and row.get("ping")
        if not ping:
            return
        url = self._secret(ping["url_enc"], dest_name, "the ping URL")
        if url is None:
            return
        previous = self.ping_chains.get(dest_name)

        async def send() -> None:
            if previous is not None:  # start before end, always
                await asyncio.gather(previous, return_exceptions=True)
            ok = await self.sender.ping(notify.ping_url(url, suffix), body)
            event(logging.DEBUG if ok else logging.WARNING, "ping sent" if ok else "ping failed", dest=dest_name,
                  target=ping["shown"], signal=suffix)
        self.ping_chains[dest_name] = self._spawn(send())

    async def test(self, dest: Destination) -> list[dict[str, Any]]:
        """Send a test message to every target; each one's outcome."""
        message = notify.test_message(dest.name, self.host)

        async def one(target: dict[str, Any]) -> dict[str, Any]:
            url = self._secret(target["url_enc"], dest.name, "a notification URL")
            ok = url is not None and await self._deliver(dest.name, target, url, message, None)
            return {"id": target["id"], "policy": target["policy"], "url": target["shown"], "ok": ok}
        # all at once: the answer comes within one send timeout
        return list(await asyncio.gather(*(one(t) for t in dest.notifications)))

    async def close(self) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=CLOSE_TIMEOUT_S)
        self.sender.close()

    # -- views and metrics -----------------------------------------------------------

    def view(self, dest: Destination) -> dict[str, Any]:
        """The monitoring fields of a destination as dest show prints them."""
        late = self.overdue_of(dest)
        return {"max_age": overdue.format_duration_s(dest.max_age_s), "overdue": late.view() if late else None,
                "overdue_warning": late.message() if late else None}

    def write_metrics(self) -> None:
        path = self.config().metrics_textfile
        if path is None:
            return
        try:
            metrics.write(path, metrics.collect(self.store, self.overdue_of))
        except OSError as exc:
            event(logging.WARNING, "cannot write the metrics file", path=str(path), error=exc.strerror)
