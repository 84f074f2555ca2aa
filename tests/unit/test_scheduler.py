"""Schedule maths with fixed clocks, across zones with DST, month ends and
leap years, plus properties that must hold for any input."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anemoned.api.dispatch import to_rpc_error
from anemoned.errors import AnemoneError
from anemoned.scheduler import (ScheduleError, after_scheduled_finish, after_scheduled_start, check_horizon,
                                next_occurrence, next_run, parse_schedule, resolve_wall_time, skip_missed)

UTC = timezone.utc
PARIS, NY, LORD_HOWE, Z_UTC = (ZoneInfo(z) for z in ("Europe/Paris", "America/New_York", "Australia/Lord_Howe", "UTC"))


def local(tz, *args):
    return datetime(*args, tzinfo=tz).astimezone(UTC)


def daily(t):
    return parse_schedule({"kind": "daily", "time": t})


def test_daily_in_a_spring_forward_gap_runs_at_the_first_valid_moment_after():
    # Paris 2026-03-29: 02:00 -> 03:00. 02:30 does not exist.
    got = next_occurrence(daily("02:30"), local(PARIS, 2026, 3, 29, 0, 0), PARIS)
    assert got == local(PARIS, 2026, 3, 29, 3, 0)
    # New York 2026-03-08: 02:00 -> 03:00
    assert next_occurrence(daily("02:15"), local(NY, 2026, 3, 8, 1, 0), NY) == local(NY, 2026, 3, 8, 3, 0)
    # Lord Howe shifts by 30 minutes: 2026-10-04 02:00 -> 02:30
    assert next_occurrence(daily("02:10"), local(LORD_HOWE, 2026, 10, 4, 1, 0), LORD_HOWE) == local(LORD_HOWE, 2026, 10, 4, 2, 30)


def test_daily_at_a_repeated_time_runs_once():
    # Paris 2026-10-25: 03:00 -> 02:00, so 02:30 happens twice.
    first = next_occurrence(daily("02:30"), local(PARIS, 2026, 10, 25, 0, 0), PARIS)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    second = next_occurrence(daily("02:30"), first, PARIS)
    assert second == local(PARIS, 2026, 10, 26, 2, 30)  # the next day, not the second 02:30


def test_daily_lands_on_the_wall_clock_time_in_every_zone():
    for tz in (PARIS, NY, LORD_HOWE, Z_UTC):
        got = next_occurrence(daily("07:45"), local(tz, 2026, 6, 1, 8, 0), tz)
        assert got.astimezone(tz).replace(tzinfo=None) == datetime(2026, 6, 2, 7, 45)


def test_monthly_uses_the_last_day_of_short_months_and_leap_years():
    s = parse_schedule({"kind": "monthly", "day": 31, "time": "04:00"})
    assert next_occurrence(s, local(PARIS, 2026, 4, 1, 0, 0), PARIS) == local(PARIS, 2026, 4, 30, 4, 0)
    assert next_occurrence(s, local(Z_UTC, 2028, 2, 1, 0, 0), Z_UTC) == local(Z_UTC, 2028, 2, 29, 4, 0)
    assert next_occurrence(s, local(Z_UTC, 2027, 2, 1, 0, 0), Z_UTC) == local(Z_UTC, 2027, 2, 28, 4, 0)
    s29 = parse_schedule({"kind": "monthly", "day": "29", "time": "00:00"})
    assert next_occurrence(s29, local(Z_UTC, 2027, 2, 28, 1, 0), Z_UTC) == local(Z_UTC, 2027, 3, 29, 0, 0)


def test_weekly_accepts_day_names():
    s = parse_schedule({"kind": "weekly", "day": "Sunday", "time": "3:05"})
    assert s == {"kind": "weekly", "day": "sun", "time": "03:05", "catch_up": True}
    got = next_occurrence(s, local(NY, 2026, 11, 27, 12, 0), NY)  # a Friday
    assert got == local(NY, 2026, 11, 29, 3, 5)


def test_cron_wall_times_run_once_across_fall_back():
    s = parse_schedule({"kind": "cron", "expr": "30 * * * *"})
    t = local(PARIS, 2026, 10, 25, 1, 0)
    runs = []
    for _ in range(4):
        t = next_occurrence(s, t, PARIS)
        runs.append(t.astimezone(PARIS).strftime("%H:%M%z"))
    assert runs == ["01:30+0200", "02:30+0200", "03:30+0100", "04:30+0100"]


def test_interval_counts_from_the_last_scheduled_run():
    s = parse_schedule({"kind": "interval", "every": "2h"})
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert next_run(s, {"anchor": now.isoformat()}, now, Z_UTC) == now + timedelta(hours=2)
    state = after_scheduled_start({"anchor": now.isoformat()}, now + timedelta(hours=2), is_retry=False)
    assert next_run(s, state, now + timedelta(hours=2, minutes=1), Z_UTC) == now + timedelta(hours=4)


def test_downtime_runs_once_when_catching_up_and_not_at_all_when_skipping():
    set_at = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    back = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # four 02:00 moments missed
    catch = parse_schedule({"kind": "daily", "time": "02:00"})
    assert next_run(catch, {"anchor": set_at.isoformat()}, back, Z_UTC) <= back  # run now
    state = after_scheduled_start({"anchor": set_at.isoformat()}, back, is_retry=False)
    assert next_run(catch, state, back, Z_UTC) == datetime(2026, 1, 6, 2, 0, tzinfo=UTC)  # once, then normal
    assert skip_missed(catch, {"anchor": set_at.isoformat()}, back, Z_UTC) is None  # catch-up keeps them
    skip = parse_schedule({"kind": "daily", "time": "02:00"}, catch_up=False)
    state = skip_missed(skip, {"anchor": set_at.isoformat()}, back, Z_UTC)
    assert next_run(skip, state, back, Z_UTC) == datetime(2026, 1, 6, 2, 0, tzinfo=UTC)
    every = parse_schedule({"kind": "interval", "every": "3h"}, catch_up=False)
    state = skip_missed(every, {"anchor": set_at.isoformat()}, back, Z_UTC)
    # the grid stays put: 00:00 + 3h * k
    assert next_run(every, state, back, Z_UTC) == datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert skip_missed(every, state, back, Z_UTC) is None  # nothing more to skip


def test_failed_runs_retry_with_growing_delays_then_wait_for_the_schedule():
    s = parse_schedule({"kind": "daily", "time": "02:00"})
    t = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    state = after_scheduled_start({}, t, is_retry=False)
    delays = []
    for _ in range(4):
        finished = t + timedelta(minutes=1)
        state = after_scheduled_finish(s, state, succeeded=False, finished=finished, tz=Z_UTC)
        retry = next_run(s, state, finished, Z_UTC)
        delays.append(retry - finished)
        t = retry
        state = after_scheduled_start(state, t, is_retry=state.get("retry_at") is not None)
    assert delays[:3] == [timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1)]
    assert t == datetime(2026, 1, 2, 2, 0, tzinfo=UTC)  # after three retries: the next scheduled moment
    state = after_scheduled_finish(s, state, succeeded=True, finished=t, tz=Z_UTC)
    assert state["failures"] == 0 and state["retry_at"] is None


@pytest.mark.parametrize("raw, field", [
    ({"kind": "interval", "every": "1m"}, "schedule.every"),
    ({"kind": "interval", "every": "soon"}, "schedule.every"),
    ({"kind": "daily", "time": "24:00"}, "schedule.time"),
    ({"kind": "daily", "time": "01:00\n"}, "schedule.time"),
    ({"kind": "weekly", "day": "someday", "time": "01:00"}, "schedule.day"),
    ({"kind": "monthly", "day": 32, "time": "01:00"}, "schedule.day"),
    ({"kind": "cron", "expr": "* * *"}, "schedule.expr"),
    ({"kind": "cron", "expr": "61 * * * *"}, "schedule.expr"),
    ({"kind": "hourly"}, "schedule.kind"),
])
def test_bad_schedules_name_the_field(raw, field):
    with pytest.raises(AnemoneError) as info:
        parse_schedule(raw)
    assert to_rpc_error(info.value).data == {"field": field}


ZONES = st.sampled_from([PARIS, NY, LORD_HOWE, Z_UTC])
MOMENTS = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)).map(lambda d: d.replace(tzinfo=UTC))
TIMES = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
SCHEDULES = st.one_of(
    st.builds(lambda t: {"kind": "daily", "time": t}, TIMES),
    st.builds(lambda d, t: {"kind": "weekly", "day": d, "time": t}, st.sampled_from(["mon", "sun", "wed"]), TIMES),
    st.builds(lambda d, t: {"kind": "monthly", "day": d, "time": t}, st.integers(1, 31), TIMES),
    st.sampled_from([{"kind": "cron", "expr": e} for e in ("*/7 * * * *", "30 2 * * *", "0 0 29 2 *", "15 1-3 * * 0")]),
)


@settings(max_examples=300, deadline=None)
@given(SCHEDULES, MOMENTS, ZONES)
def test_next_is_after_now_and_a_real_local_time(raw, after, tz):
    s = parse_schedule(raw)
    got = next_occurrence(s, after, tz)
    assert got is not None and got > after
    wall = got.astimezone(tz).replace(tzinfo=None)
    assert resolve_wall_time(wall, tz) == got  # exists, and is its first occurrence
    if s["kind"] == "daily":
        hh, mm = map(int, s["time"].split(":"))
        wanted = wall.replace(hour=hh, minute=mm)
        # on the requested wall time, or moved forward out of a DST gap
        assert wall == wanted or (wall > wanted and wall - wanted <= timedelta(hours=1)
                                  and resolve_wall_time(wanted, tz) == got)
        assert got - after <= timedelta(days=1, hours=1)


# -- schedules that never come (finding 7 of issue 11) -----------------------------

@pytest.mark.parametrize("expr", ["0 3 31 2 *", "0 0 30 2 *", "15 4 31 4,6,9,11 *"])
def test_a_cron_date_that_never_comes_is_refused_naming_the_field(expr):
    s = parse_schedule({"kind": "cron", "expr": expr})  # syntactically fine
    with pytest.raises(AnemoneError) as info:
        check_horizon(s, datetime(2026, 11, 28, tzinfo=UTC), PARIS)
    assert to_rpc_error(info.value).data == {"field": "schedule.expr"} and "never comes" in info.value.message
    with pytest.raises(ScheduleError):
        next_occurrence(s, datetime(2026, 11, 28, tzinfo=UTC), PARIS)


def test_dates_that_do_come_rarely_are_within_the_horizon():
    now = datetime(2026, 11, 28, tzinfo=UTC)
    for expr in ("0 0 29 2 *", "0 3 31 12 *", "0 3 31 1-12 *"):
        check_horizon(parse_schedule({"kind": "cron", "expr": expr}), now, PARIS)
    leap = next_occurrence(parse_schedule({"kind": "cron", "expr": "0 0 29 2 *"}), datetime(2024, 3, 1, tzinfo=UTC), Z_UTC)
    assert leap == datetime(2028, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize("schedule, state", [
    (None, {}),  # a cell that was not JSON reads as None
    ({"kind": "cron", "expr": "0 3 31 2 *"}, {}),
    ({"kind": "weekly", "day": "mon"}, {}),
    ({"kind": "daily", "time": "03:00"}, None),
    ({"kind": "sometimes"}, {}),
])
def test_a_stored_schedule_that_cannot_be_computed_raises_rather_than_guesses(schedule, state):
    with pytest.raises(Exception):
        next_run(schedule, state, datetime(2026, 11, 28, tzinfo=UTC), PARIS)
