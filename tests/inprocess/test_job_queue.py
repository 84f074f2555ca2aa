"""The job queue against a temporary store and fake job functions: no
daemon, no rclone, no server."""
from __future__ import annotations

import asyncio
from typing import Any

from anemoned.jobs import JobOutcome, JobQueue, JobState
from anemoned.jobtypes import Job, JobKind, Trigger

from _inprocess import store_with


class Gate:
    """A fake job kind whose jobs run until released."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.release = asyncio.Event()

    async def __call__(self, job: Job, report: Any) -> JobOutcome:
        self.started.append(job.id)
        report({"bytes": 1})
        await self.release.wait()
        return JobOutcome(JobState.SUCCEEDED, None, {"files_transferred": 1})


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_transitions_dedup_and_concurrency(tmp_path):
    async def main() -> None:
        store = store_with(tmp_path, "a", "b")
        gate = Gate()
        jobs = JobQueue(store, 1, {"sync": gate})
        first, created = jobs.submit("a", "sync", False, trigger="manual")
        again, created_again = jobs.submit("a", "sync", False, trigger="manual")
        assert created and not created_again and again.id == first.id  # one sync per destination
        other, _ = jobs.submit("b", "sync", False, trigger="manual")
        await settle()
        assert gate.started == [first.id]  # one at a time
        assert jobs.get(first.id).state == "running" and jobs.get(other.id).state == "queued"
        assert jobs.view(jobs.get(first.id))["progress"] == {"bytes": 1}
        gate.release.set()
        done = await jobs.wait(other.id, 5)
        assert done.state == "succeeded" and jobs.get(first.id).state == "succeeded"
        assert done.stats == {"files_transferred": 1} and done.started_at and done.finished_at
        assert jobs.counts() == (0, 0)
    asyncio.run(main())


def test_cancel_a_running_and_a_queued_job(tmp_path):
    async def main() -> None:
        store = store_with(tmp_path, "a", "b")
        jobs = JobQueue(store, 1, {"sync": Gate()})
        running, _ = jobs.submit("a", "sync", False, trigger="manual")
        queued, _ = jobs.submit("b", "sync", False, trigger="manual")
        await settle()
        assert (await jobs.cancel(queued.id)).state == "cancelled"
        cancelled = await jobs.cancel(running.id)
        assert cancelled.state == "cancelled" and cancelled.error == "cancelled by the operator"
    asyncio.run(main())


def test_a_crashing_job_fails_alone_with_an_error_id(tmp_path):
    async def boom(job: Job, report: Any) -> JobOutcome:
        raise RuntimeError("secret-value-never-shown")

    async def main() -> None:
        jobs = JobQueue(store_with(tmp_path, "a"), 2, {"sync": boom})
        row, _ = jobs.submit("a", "sync", False, trigger="manual")
        done = await jobs.wait(row.id, 5)
        assert done.state == "failed" and "error id" in done.error
        assert "secret-value-never-shown" not in done.error
    asyncio.run(main())


def test_recover_marks_running_jobs_interrupted(tmp_path):
    store = store_with(tmp_path, "a")
    job_id = store.insert_job({"destination": "a", "kind": "sync", "state": "running", "dry_run": False,
                               "trigger": "manual", "queued_at": "2026-01-01T00:00:00+00:00", "options": {}})
    assert JobQueue(store, 1, {}).recover() == [job_id]
    assert store.job_row(job_id)["state"] == "interrupted"


def test_bookkeeping_that_fails_is_told_not_swallowed(tmp_path):
    """The final transition raising must not leave the job running with
    nobody told (issue 13: the queue stalled silently)."""
    crashes: list[BaseException] = []

    def finished(job: Job) -> None:
        raise RuntimeError("on_finished broke")

    async def quick(job: Job, report: Any) -> JobOutcome:
        return JobOutcome(JobState.SUCCEEDED)

    async def main() -> None:
        jobs = JobQueue(store_with(tmp_path, "a", "b"), 1, {"sync": quick}, on_finished=finished,
                        on_crash=crashes.append)
        jobs.submit("a", "sync", False, trigger="manual")
        second, _ = jobs.submit("b", "sync", False, trigger="manual")
        for _ in range(50):
            await asyncio.sleep(0.01)
            if len(crashes) >= 2:
                break
        assert crashes and isinstance(crashes[0], RuntimeError)
        assert jobs.get(second.id).state != "queued"  # the queue went on
    asyncio.run(main())


def test_a_job_is_shown_as_the_contract_says_whatever_its_types(tmp_path):
    """Job is typed inside the daemon; `job show --json` is the same object,
    with plain strings and a bool, as when rows travelled as dicts."""
    store = store_with(tmp_path, "a")
    job_id = store.insert_job({"destination": "a", "kind": "verify", "state": "queued", "dry_run": 1,
                               "trigger": "catch-up", "queued_at": "2026-01-01T00:00:00+00:00",
                               "options": {"user": "alice"}})
    job = JobQueue(store, 1, {}).get(job_id)
    assert (job.kind, job.trigger, job.state) == (JobKind.VERIFY, Trigger.CATCH_UP, JobState.QUEUED)
    shown = JobQueue(store, 1, {}).view(job)
    assert shown == {"id": job_id, "destination": "a", "kind": "verify", "state": "queued", "dry_run": True,
                     "trigger": "catch-up", "options": {"user": "alice"}, "queued_at": "2026-01-01T00:00:00+00:00",
                     "started_at": None, "finished_at": None, "error": None, "stats": None}
    assert all(type(shown[k]) is str for k in ("kind", "state", "trigger")) and shown["dry_run"] is True
