"""The scheduler loop: starts scheduled syncs and verifies when they are
due, keeps each destination's bookkeeping, and sleeps until the next one.

All the time maths is in scheduler.py (pure); this module only reads the
clock (ScheduleLoop.clock), the store and the job queue.

A destination whose stored schedule cannot be computed (a date that never
comes, a value that is not a schedule, whatever the cause) has that
schedule off until it is set again: the error is logged once and shown as a
warning in `dest show` and `status`. It never stops the loop, another
destination's schedule or a view.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, Callable, TypeVar
from zoneinfo import ZoneInfo

from .jobs import JobQueue
from .jobtypes import Job, JobKind, JobState, Trigger
from .logs import event
from .scheduler import after_scheduled_finish, after_scheduled_start, next_run, skip_missed, zone
from .store import Store
from .timeutil import iso, utc_now

#: job kind -> (schedule column, bookkeeping column) in the destinations table
SCHEDULED_KINDS = {JobKind.SYNC: ("schedule", "schedule_state"), JobKind.VERIFY: ("verify_schedule", "verify_schedule_state")}
#: The loop re-reads the clock at least this often: asyncio sleeps on the
#: monotonic clock, which stands still while the machine is suspended.
MAX_SLEEP_S = 300.0
#: A wake-up this much later than planned means the machine was asleep.
LATE_WAKE_S = 60.0

T = TypeVar("T")


class ScheduleLoop:
    def __init__(self, store: Store, jobs: JobQueue, timezone: Callable[[], str | None],
                 on_tick: Callable[[], None], clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        #: the wall clock (tests inject their own)
        self.clock = clock
        self.jobs = jobs
        self.timezone = timezone
        self.on_tick = on_tick
        self.wake = asyncio.Event()
        #: (destination, kind) -> why that schedule is off
        self.errors: dict[tuple[str, str], str] = {}
        self._zone: ZoneInfo | None = None
        self.zone()

    def zone(self) -> ZoneInfo:
        """The configured zone. Resolving it reads files (/etc/timezone,
        tzdata), so it is done once, when the loop is made (before the
        event loop runs) and in a thread after a reload (refresh_zone),
        not at every view."""
        if self._zone is None:
            self._zone = zone(self.timezone())
        return self._zone

    async def refresh_zone(self) -> None:
        """Resolve the zone again, in a thread (the configuration, or the
        system's zone, may have changed); the loop then looks again."""
        self._zone = await asyncio.to_thread(zone, self.timezone())
        self.wake.set()

    def _guarded(self, row: dict[str, Any], kind: JobKind, compute: Callable[[], T], clears: bool = False) -> T | None:
        """compute() for one destination's schedule of `kind`; when it
        fails, that schedule is off (None), the error is logged once and
        kept for warnings(). Only the computation of the next moment
        (clears) says that the schedule works again."""
        key = (str(row.get("name")), kind)
        try:
            value = compute()
        except Exception as err:  # noqa: BLE001 - whatever is stored, the daemon keeps going
            why = f"{type(err).__name__}: {err}" if not str(err) else str(err)
            if self.errors.get(key) != why:
                self.errors[key] = why
                event(logging.ERROR, f"{kind} schedule cannot be computed; it is off until set again",
                      dest=key[0], kind=kind, detail=why[:300])
            return None
        if clears:
            self.errors.pop(key, None)
        return value

    def warnings(self, name: str) -> list[str]:
        """What dest show and status say about this destination's schedules."""
        cmd = {"sync": "", "verify": " --verify"}
        return [f"{kind} schedule is off: it cannot be computed ({why}); set it again with: "
                f"anemonectl dest schedule {name!r}{cmd[kind]} ..."
                for (dest, kind), why in sorted(self.errors.items()) if dest == name]

    def _due(self, row: dict[str, Any], kind: JobKind, now: datetime) -> datetime | None:
        if not row["enabled"]:
            return None  # disabled destinations never run
        schedule_col, state_col = SCHEDULED_KINDS[kind]
        return self._guarded(row, kind, lambda: next_run(row[schedule_col], row[state_col], now, self.zone()),
                             clears=True)

    def next_run(self, row: dict[str, Any], kind: JobKind = JobKind.SYNC) -> str | None:
        """When the destination next runs `kind` (ISO), or None; a moment
        already due shows as now."""
        now = self.clock()
        due = self._due(row, kind, now)
        return iso(max(due, now)) if due else None

    def upcoming(self) -> tuple[str, str] | None:
        """(destination, ISO time) of the earliest scheduled job, if any."""
        runs = [(r["name"], self.next_run(r, kind)) for r in self.store.destination_rows() for kind in SCHEDULED_KINDS]
        runs = [(name, at) for name, at in runs if at]
        return min(runs, key=lambda r: r[1]) if runs else None

    async def run(self) -> None:
        planned: datetime | None = None  # when the loop meant to wake up
        while True:
            self.wake.clear()
            now = self.clock()
            if planned is None or (now - planned).total_seconds() > LATE_WAKE_S:
                self._skip_missed(now)  # start-up, or the machine slept
            wake_at: datetime | None = None
            rows = self.store.destination_rows()
            names = {r["name"] for r in rows}
            self.errors = {k: v for k, v in self.errors.items() if k[0] in names}  # removed destinations
            for kind in SCHEDULED_KINDS:
                for row in rows:
                    due = self._guarded(row, kind, lambda: self._tick(row, kind, now))
                    if due is not None:
                        wake_at = due if wake_at is None else min(wake_at, due)
            self.on_tick()
            sleep_s = MAX_SLEEP_S if wake_at is None else min(max((wake_at - now).total_seconds(), 0.05), MAX_SLEEP_S)
            planned = now + timedelta(seconds=sleep_s)
            try:
                await asyncio.wait_for(self.wake.wait(), sleep_s)
            except asyncio.TimeoutError:
                pass

    def _tick(self, row: dict[str, Any], kind: JobKind, now: datetime) -> datetime | None:
        """Start the destination's `kind` job if due; its next moment."""
        due = self._due(row, kind, now)
        if due is not None and due <= now:
            self._start(row, kind, now)
            fresh = self.store.destination_row(row["name"])
            due = self._due(fresh, kind, now) if fresh else None
        return due

    def _skip_missed(self, now: datetime) -> None:
        for kind, (schedule_col, state_col) in SCHEDULED_KINDS.items():
            for row in self.store.destination_rows():
                state = self._guarded(row, kind, lambda: skip_missed(row[schedule_col], row[state_col], now,
                                                                     self.zone()))
                if state is not None:
                    self.store.update_destination(row["name"], {state_col: state})
                    event(logging.INFO, "missed scheduled runs skipped", dest=row["name"], kind=kind)

    def _start(self, row: dict[str, Any], kind: JobKind, now: datetime) -> None:
        state_col = SCHEDULED_KINDS[kind][1]
        state = row[state_col]
        is_retry = bool(state.get("retry_at")) and datetime.fromisoformat(state["retry_at"]) <= now
        job, created = self.jobs.submit(row["name"], kind, False, trigger=Trigger.RETRY if is_retry else Trigger.SCHEDULE)
        if not created:
            event(logging.INFO, "scheduled moment absorbed by the running job", dest=row["name"], job=job.id)
        self.store.update_destination(row["name"], {state_col: after_scheduled_start(state, now, is_retry)})

    def job_finished(self, job: Job) -> None:
        """Retry bookkeeping after a scheduled job ended."""
        if job.trigger in (Trigger.SCHEDULE, Trigger.RETRY) and job.kind in SCHEDULED_KINDS:
            row = self.store.destination_row(job.destination)
            if row is not None:
                kind = job.kind
                schedule_col, state_col = SCHEDULED_KINDS[kind]
                state = self._guarded(row, kind, lambda: after_scheduled_finish(
                    row[schedule_col], row[state_col], job.state == JobState.SUCCEEDED, self.clock(), self.zone()))
                if state is not None:
                    self.store.update_destination(row["name"], {state_col: state})
                    if state.get("retry_at"):
                        event(logging.WARNING, f"scheduled {job.kind} failed; retrying later", dest=row["name"],
                              job=job.id, retry_at=state["retry_at"], failures=state["failures"])
        self.wake.set()
