"""The api handlers through dispatch, with a small context: a temporary
store, the real queue and schedule loop with fake jobs, a stub monitor."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from anemoned import service  # noqa: F401  (registers every handler)
from anemoned.api.context import Context, Runtime
from anemoned.api.dispatch import dispatch
from anemoned.jobs import JobOutcome, JobQueue, JobState
from anemoned.protocol import ErrorCode, Request, RpcError
from anemoned.protocol.methods import StatusResult
from anemoned.schedule_loop import ScheduleLoop

from _inprocess import store_with

ADMIN_UID, OTHER_UID = 0, 4242


class StubMonitor:
    def view(self, dest: Any) -> dict[str, Any]:
        return {"overdue_warning": None, "overdue": None, "max_age": None}

    def overdue_of(self, dest: Any) -> None:
        return None


async def quick(job: dict[str, Any], report: Any) -> JobOutcome:
    return JobOutcome(JobState.SUCCEEDED)


@pytest.fixture
def ctx(tmp_path) -> Context:
    store = store_with(tmp_path, "a")
    jobs = JobQueue(store, 1, {"sync": quick, "usage": quick, "verify": quick})
    config = SimpleNamespace(certs_dir=tmp_path / "certs", users_dir=tmp_path / "users", timezone="UTC")
    return Context(Runtime(config, "rclone", "rclone v1.68"), store, jobs,  # type: ignore[arg-type]
                   ScheduleLoop(store, jobs, lambda: "UTC", lambda: None), StubMonitor(),  # type: ignore[arg-type]
                   lambda: None)


def call(ctx: Context, method: str, uid: int = ADMIN_UID, **params: Any) -> Any:
    return asyncio.run(dispatch(ctx, Request(1, method, params), uid, own_uid=999))


def error_of(ctx: Context, method: str, uid: int = ADMIN_UID, **params: Any) -> RpcError:
    with pytest.raises(RpcError) as info:
        call(ctx, method, uid, **params)
    return info.value


def test_status_has_the_result_class_shape(ctx):
    assert set(call(ctx, "status")) == set(StatusResult.__dataclass_fields__)


def test_not_found_names_the_field(ctx):
    err = error_of(ctx, "dest.show", name="nope")
    assert (err.code, err.data) == (ErrorCode.NOT_FOUND, {"field": "name"})
    err = error_of(ctx, "sync", destination="nope")
    assert (err.code, err.data) == (ErrorCode.NOT_FOUND, {"field": "destination"})


def test_a_destination_view_has_the_contract_fields(ctx):
    view = call(ctx, "dest.show", name="a")
    assert set(view) >= {"name", "host", "port", "user", "auth", "key_file", "remote_path", "enabled",
                         "host_key_fingerprint", "schedule", "next_run", "last_sync", "warnings"}


def test_admin_methods_refuse_other_users_before_reading_params(ctx):
    err = error_of(ctx, "dest.remove", uid=OTHER_UID, surprise=1)
    assert err.code == ErrorCode.PERMISSION_DENIED
    assert call(ctx, "dest.show", uid=OTHER_UID, name="a")["name"] == "a"


def test_bad_params_are_refused_naming_the_field(ctx):
    err = error_of(ctx, "sync", destination="a", allow_empty=["../etc"])
    assert (err.code, err.data) == (ErrorCode.INVALID_PARAMS, {"field": "allow_empty"})
    err = error_of(ctx, "dest.schedule", name="a", schedule={"kind": "interval", "every": "soon"})
    assert err.data == {"field": "schedule.every"}


def test_conflicts(ctx):
    call(ctx, "dest.disable", name="a")
    assert error_of(ctx, "sync", destination="a").code == ErrorCode.CONFLICT

    async def finished_job() -> int:
        ctx.store.update_destination("a", {"enabled": True})
        job, _ = ctx.jobs.submit("a", "usage", False, trigger="manual")
        await ctx.jobs.wait(job.id, 5)
        return job.id
    job_id = asyncio.run(finished_job())
    err = error_of(ctx, "job.cancel", id=job_id)
    assert err.code == ErrorCode.CONFLICT and "already ended" in err.message


def test_schedule_is_stored_and_shown(ctx):
    view = call(ctx, "dest.schedule", name="a", schedule={"kind": "daily", "time": "02:30"})
    assert view["schedule"]["kind"] == "daily" and view["next_run"] is not None
