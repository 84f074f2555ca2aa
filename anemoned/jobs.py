"""The job queue: states, transitions, and the runner that honours
max_concurrent_syncs and "one job per destination".

All state transitions live in TRANSITIONS; JobQueue._transition is the only
code that changes a job's state, and it persists every change before anyone
can observe it. Jobs that were running when the daemon died come back as
`interrupted`; queued jobs stay queued and run (an operator asked for them).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from . import crash
from .logs import event
from .errors import AnemoneError, Conflict, NotFound
from .jobtypes import Job, JobKind, JobState, Trigger
from .store import Store
from .timeutil import iso, utc_now

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.INTERRUPTED}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.INTERRUPTED: frozenset(),
}
ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)
#: Kinds of which a destination has at most one queued or running job.
DEDUPLICATED = (JobKind.SYNC, JobKind.VERIFY, JobKind.USAGE)
#: Finished jobs kept per destination (with their logs).
HISTORY_PER_DESTINATION = 100


class InvalidTransition(Exception):
    pass


def check_transition(current: JobState, new: JobState) -> None:
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"job cannot go from {current.value} to {new.value}")


class JobOutcome:
    """What a job function returns: the final state, an error, stats."""

    def __init__(self, state: JobState, error: str | None = None, stats: dict[str, Any] | None = None) -> None:
        self.state = state
        self.error = error
        self.stats = stats


#: kind -> async fn(job, progress callback) -> JobOutcome
JobFunction = Callable[[Job, Callable[[dict[str, Any]], None]], Awaitable[JobOutcome]]


class JobQueue:
    def __init__(self, store: Store, max_concurrent: int, functions: dict[JobKind, JobFunction],
                 on_change: Callable[[], None] = lambda: None, on_finished: Callable[[Job], None] = lambda j: None,
                 on_prune: Callable[[list[int]], None] = lambda ids: None,
                 on_started: Callable[[Job], None] = lambda j: None,
                 on_crash: Callable[[BaseException], None] = lambda exc: None) -> None:
        self.store = store
        self.max_concurrent = max_concurrent
        self.functions = functions
        self.on_change = on_change
        self.on_finished = on_finished
        self.on_prune = on_prune
        self.on_started = on_started
        #: told when the queue's own bookkeeping fails (the daemon stops: a
        #: queue that cannot record states must not look healthy)
        self.on_crash = on_crash
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.progress: dict[int, dict[str, Any]] = {}
        # Replaced on every change; waiters hold the old one, which is set.
        self.change = asyncio.Event()
        self.cancel_requested: set[int] = set()
        self.stopping = False

    # -- start-up and shutdown -------------------------------------------------

    def recover(self) -> list[int]:
        """After a crash: jobs recorded as running were interrupted."""
        ids = []
        for job in self._jobs(limit=10_000, states=(JobState.RUNNING.value,)):
            self._transition(job, JobState.INTERRUPTED, error="the daemon stopped while the job ran")
            ids.append(job.id)
        return ids

    async def shutdown(self) -> None:
        """Stop every running job and record it as interrupted."""
        self.stopping = True
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    # -- queries -----------------------------------------------------------------

    def view(self, job: Job) -> dict[str, Any]:
        """A job as `job show --json` prints it: with its progress while it runs."""
        shown = job.view()
        if job.id in self.progress:
            shown["progress"] = self.progress[job.id]
        return shown

    def get(self, job_id: int) -> Job:
        row = self.store.job_row(job_id)
        if row is None:
            raise NotFound(f"no job with id {job_id}", field="id")
        return Job.from_row(row)

    def recent(self, destination: str | None = None, limit: int = 50) -> list[Job]:
        """Jobs, newest first."""
        return self._jobs(destination=destination, limit=limit)

    def active_for(self, destination: str, kind: JobKind | None = None) -> Job | None:
        jobs = [j for j in self._jobs(destination=destination, limit=1000, states=ACTIVE) if kind in (None, j.kind)]
        return jobs[0] if jobs else None

    def _jobs(self, destination: str | None = None, limit: int = 50, states: tuple[str, ...] = ()) -> list[Job]:
        return [Job.from_row(r) for r in self.store.job_rows(destination=destination, limit=limit, states=states)]

    def counts(self) -> tuple[int, int]:
        """(running, queued)"""
        rows = self.store.job_rows(limit=100_000, states=ACTIVE)
        running = sum(1 for r in rows if r["state"] == JobState.RUNNING.value)
        return running, len(rows) - running

    # -- changes -------------------------------------------------------------------

    def submit(self, destination: str, kind: JobKind, dry_run: bool, trigger: Trigger,
               options: dict[str, Any] | None = None) -> tuple[Job, bool]:
        """Queue a job, or return the destination's queued/running job of
        the same kind (asking twice for a sync gives one sync); a restore is
        always a job of its own. Returns (job, created)."""
        existing = self.active_for(destination, kind)
        if existing is not None and kind in DEDUPLICATED:
            return existing, False
        job_id = self.store.insert_job({
            "destination": destination, "kind": kind, "state": JobState.QUEUED.value, "dry_run": dry_run,
            "trigger": trigger, "queued_at": iso(utc_now()), "options": options or {},
        })
        event(logging.INFO, "job queued", job=job_id, dest=destination, kind=kind, trigger=trigger,
              dry_run=dry_run or None)
        self._changed()
        self.pump()
        return self.get(job_id), True

    async def cancel(self, job_id: int) -> Job:
        job = self.get(job_id)
        if job.state == JobState.QUEUED and job_id not in self.tasks:
            self._transition(job, JobState.CANCELLED, error="cancelled before it started")
        elif job_id in self.tasks:
            self.cancel_requested.add(job_id)
            task = self.tasks[job_id]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return self.get(job_id)

    def remove_destination(self, destination: str) -> None:
        """Refuse while a job runs; cancel what is queued."""
        active = self._jobs(destination=destination, limit=1000, states=ACTIVE)
        for job in active:
            if job.state == JobState.RUNNING:
                raise Conflict(f"job {job.id} is running for {destination!r}; "
                               f"cancel it first (anemonectl job cancel {job.id})")
        for job in active:
            self._transition(job, JobState.CANCELLED, error="its destination was removed")

    async def wait(self, job_id: int, timeout_s: float) -> Job:
        """The job once it has finished, or as it is after timeout_s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            change = self.change
            job = self.get(job_id)
            remaining = deadline - loop.time()
            if not job.active or remaining <= 0:
                return job
            try:
                await asyncio.wait_for(change.wait(), remaining)
            except asyncio.TimeoutError:
                return self.get(job_id)

    def set_max_concurrent(self, n: int) -> None:
        self.max_concurrent = n
        self.pump()

    def pump(self) -> None:
        """Start queued jobs, oldest first, while there are free slots."""
        if self.stopping:
            return
        queued = sorted(self._jobs(limit=100_000, states=(JobState.QUEUED.value,)), key=lambda j: j.id)
        for job in queued:
            if len(self.tasks) >= self.max_concurrent:
                return
            if job.id not in self.tasks:
                task = asyncio.get_running_loop().create_task(self._run(job))
                task.add_done_callback(self._task_done)
                self.tasks[job.id] = task

    # -- running -----------------------------------------------------------------

    def _task_done(self, task: "asyncio.Task[None]") -> None:
        """_run handles the job's own errors; anything that still escapes is
        the queue's bookkeeping failing, never to be ignored."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None
        error_id, where = crash.describe(exc)
        event(logging.CRITICAL, "job queue failed", error=type(exc).__name__, where=where, error_id=error_id)
        self.on_crash(exc)

    def _changed(self) -> None:
        self.on_change()
        change, self.change = self.change, asyncio.Event()
        change.set()

    def _transition(self, job: Job, new: JobState, error: str | None = None,
                    stats: dict[str, Any] | None = None) -> None:
        check_transition(job.state, new)
        changes: dict[str, Any] = {"state": new.value}
        now = iso(utc_now())
        if new == JobState.RUNNING:
            changes["started_at"] = now
        else:
            changes["finished_at"] = now
            changes["error"] = error
            if stats is not None:
                changes["stats"] = stats
        self.store.update_job(job.id, changes)
        if new != JobState.RUNNING:
            event(logging.INFO if new == JobState.SUCCEEDED else logging.WARNING, f"job {new.value}", job=job.id,
                  dest=job.destination, kind=job.kind.value, outcome=new.value, error=error)
            self.on_finished(self.get(job.id))
            pruned = self.store.prune_jobs(job.destination, HISTORY_PER_DESTINATION)
            if pruned:
                self.on_prune(pruned)
        self._changed()

    async def _run(self, job: Job) -> None:
        job_id = job.id
        self._transition(job, JobState.RUNNING)
        event(logging.INFO, "job started", job=job_id, dest=job.destination, kind=job.kind.value)
        self.on_started(self.get(job_id))
        self.progress[job_id] = {}

        def report(progress: dict[str, Any]) -> None:
            # Only stored: job.wait returns on state changes, and nothing
            # else (status line, waiters) depends on progress.
            self.progress[job_id] = progress

        try:
            outcome = await self.functions[job.kind](self.get(job_id), report)
        except asyncio.CancelledError:
            if job_id in self.cancel_requested:
                outcome = JobOutcome(JobState.CANCELLED, "cancelled by the operator")
            else:
                outcome = JobOutcome(JobState.INTERRUPTED, "the daemon stopped while the job ran")
        except AnemoneError as err:  # an operator-facing failure (a password that cannot be decrypted, ...)
            outcome = JobOutcome(JobState.FAILED, err.message)
        except Exception as exc:  # a bug fails one job, never the daemon
            error_id, where = crash.describe(exc)
            event(logging.ERROR, "job crashed", job=job_id, error=type(exc).__name__, where=where, error_id=error_id)
            outcome = JobOutcome(JobState.FAILED,
                                 f"internal error ({type(exc).__name__}, error id {error_id}); see the daemon log")
        finally:
            self.tasks.pop(job_id, None)
            self.progress.pop(job_id, None)
            self.cancel_requested.discard(job_id)
        try:
            self._transition(self.get(job_id), outcome.state, outcome.error, outcome.stats)
        except Exception as exc:  # the state cannot be written: carrying on would leave the job running forever
            error_id, where = crash.describe(exc)
            event(logging.CRITICAL, "job outcome could not be recorded", job=job_id, error=type(exc).__name__,
                  where=where, error_id=error_id)
            self.on_crash(exc)
        finally:
            self.pump()
