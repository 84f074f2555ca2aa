"""The schedule loop with an injected clock, a temporary store and the
real job queue running fake jobs."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from anemoned.jobs import JobOutcome, JobQueue, JobState
from anemoned.schedule_loop import ScheduleLoop
from anemoned.scheduler import parse_schedule
from anemoned.timeutil import iso

from _inprocess import store_with

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


async def quick(job: dict[str, Any], report: Any) -> JobOutcome:
    return JobOutcome(JobState.SUCCEEDED)


def _loop(tmp_path, every: str, now: datetime) -> tuple[ScheduleLoop, JobQueue]:
    store = store_with(tmp_path, "a", schedule={"kind": "interval", "every": every, "catch_up": True},
                       schedule_state={"anchor": iso(T0)})
    jobs = JobQueue(store, 1, {"sync": quick})
    return ScheduleLoop(store, jobs, lambda: "UTC", lambda: None, clock=lambda: now), jobs


async def _one_pass(loop: ScheduleLoop) -> None:
    task = asyncio.create_task(loop.run())
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_nothing_runs_before_the_moment_and_next_run_says_when(tmp_path):
    async def main() -> None:
        loop, jobs = _loop(tmp_path, "10m", T0 + timedelta(minutes=5))
        await _one_pass(loop)
        assert jobs.store.job_rows() == []
        assert loop.next_run(jobs.store.destination_row("a")) == iso(T0 + timedelta(minutes=10))
    asyncio.run(main())


def test_a_due_schedule_starts_one_sync_triggered_by_the_schedule(tmp_path):
    async def main() -> None:
        loop, jobs = _loop(tmp_path, "10m", T0 + timedelta(minutes=11))
        await _one_pass(loop)
        rows = jobs.store.job_rows()
        assert [(r["kind"], r["trigger"]) for r in rows] == [("sync", "schedule")]
        state = jobs.store.destination_row("a")["schedule_state"]
        assert state.get("last_scheduled")  # the bookkeeping moved on: no second start for the same moment
    asyncio.run(main())


def test_a_stored_interval_below_todays_minimum_still_computes(tmp_path, monkeypatch):
    """Issue 13: next_occurrence re-validated a stored interval against the
    current minimum, so `dest list` could fail with a request error."""
    monkeypatch.setenv("ANEMONED_MIN_INTERVAL_S", "60")
    schedule = parse_schedule({"kind": "interval", "every": "2m"})
    monkeypatch.setenv("ANEMONED_MIN_INTERVAL_S", "300")
    store = store_with(tmp_path, "a", schedule=schedule, schedule_state={"anchor": iso(T0)})
    loop = ScheduleLoop(store, JobQueue(store, 1, {}), lambda: "UTC", lambda: None, clock=lambda: T0)
    assert loop.next_run(store.destination_row("a")) == iso(T0 + timedelta(minutes=2))
    assert loop.warnings("a") == []
