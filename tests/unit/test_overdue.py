from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from anemoned.overdue import evaluate, format_duration, parse_max_age, schedule_period
from anemoned.api.dispatch import to_rpc_error
from anemoned.errors import AnemoneError

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # a Monday
CREATED = "2026-10-01T00:00:00+00:00"
DAILY = {"kind": "daily", "time": "02:30", "catch_up": True}


def check(schedule=None, state=None, max_age_s=0, last=None, now=T0, enabled=True):
    return evaluate(enabled, schedule or {"kind": "off"}, state or {}, CREATED, max_age_s, last, now, PARIS)


def test_periods_of_each_kind():
    assert schedule_period({"kind": "interval", "every": "2h"}, T0, PARIS) == timedelta(hours=2)
    assert schedule_period(DAILY, T0, PARIS) == timedelta(days=1)
    assert schedule_period({"kind": "weekly", "day": "sun", "time": "04:00"}, T0, PARIS) == timedelta(days=7)
    # the longest month, with the hour that winter time adds in March
    assert schedule_period({"kind": "monthly", "day": 31, "time": "04:00"}, T0, PARIS) == timedelta(days=31, hours=1)
    # weekdays only: the weekend is the longest gap, so it is allowed
    assert schedule_period({"kind": "cron", "expr": "30 2 * * 1-5"}, T0, PARIS) == timedelta(days=3)
    assert schedule_period({"kind": "off"}, T0, PARIS) is None


def test_daily_is_overdue_after_two_days_without_success():
    last = T0 - timedelta(days=2) + timedelta(minutes=1)
    assert check(DAILY, last=last) is None
    late = check(DAILY, last=last, now=T0 + timedelta(minutes=2))
    assert late is not None and late.since == last + timedelta(days=2) and late.rule == "schedule"
    assert late.allowed == timedelta(days=2) and "allowed age 2d" in late.message()


def test_dst_day_does_not_make_a_daily_schedule_overdue():
    # the 25-hour day when Paris leaves summer time counts as the period
    last = datetime(2026, 10, 24, 0, 30, tzinfo=UTC)
    assert check(DAILY, last=last, now=last + timedelta(hours=49, minutes=30)) is None


def test_unscheduled_needs_max_age_and_disabled_never_is():
    last = T0 - timedelta(days=400)
    assert check(last=last) is None
    assert check(max_age_s=86400, last=last) is not None
    assert check(max_age_s=86400, last=last, enabled=False) is None
    assert check(DAILY, last=last, enabled=False) is None


def test_max_age_wins_over_the_schedule():
    last = T0 - timedelta(days=3)
    assert check(DAILY, last=last) is not None
    assert check(DAILY, max_age_s=7 * 86400, last=last) is None


def test_clock_starts_at_creation_or_at_a_new_schedule():
    assert check(max_age_s=3600, now=datetime(2026, 10, 1, 0, 59, tzinfo=UTC)) is None
    never = check(max_age_s=3600, now=datetime(2026, 10, 1, 1, 1, tzinfo=UTC))
    assert never is not None and never.last_success is None and "no successful sync yet" in never.message()
    # a schedule set yesterday has a full allowance, even after old successes
    state = {"anchor": (T0 - timedelta(days=1)).isoformat()}
    assert check(DAILY, state, last=T0 - timedelta(days=30)) is None
    assert check(DAILY, state, last=T0 - timedelta(days=30), now=T0 + timedelta(days=1, minutes=1)) is not None


@pytest.mark.parametrize("text,seconds", [("36h", 129600), ("2d", 172800), ("90m", 5400), ("off", 0), ("0", 0)])
def test_max_age_parses(text, seconds):
    assert parse_max_age(text) == seconds


@pytest.mark.parametrize("bad", ["", "1w", "2 days", "-1h", "1m", 5, None])
def test_bad_max_age_names_the_field(bad):
    with pytest.raises(AnemoneError) as err:
        parse_max_age(bad)
    assert to_rpc_error(err.value).data == {"field": "max_age"}


def test_durations_read_back_the_way_they_were_written():
    assert [format_duration(timedelta(seconds=s)) for s in (172800, 129600, 5400, 45)] == ["2d", "36h", "90m", "45s"]
