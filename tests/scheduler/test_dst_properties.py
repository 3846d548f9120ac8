"""The DST rules as properties, over ten years (2026-2035) in Europe/Paris, America/New_York and
Australia/Lord_Howe (whose clocks move by 30 minutes):

- a fixed-time cron runs exactly once per local day, at the wall time when it exists, at the
  first valid instant after it inside a spring-forward gap, at the first occurrence inside a
  repeated hour;
- an interval cron keeps even spacing in UTC;
- slots strictly increase; next/latest agree; nothing raises, in any zone, on any date.

The expected instants come from an oracle that scans UTC minute by minute, independent of the
code under test.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import example, given, settings
from hypothesis import strategies as st

from batchpilot.scheduler import iter_slots, latest_slot, next_slot, slots_between
from batchpilot.spec.schedule import ScheduleSpec

ZONES = ("Europe/Paris", "America/New_York", "Australia/Lord_Howe")
FIRST_DAY, LAST_DAY = date(2026, 1, 1), date(2035, 12, 31)
PROPERTY = settings(max_examples=200, deadline=None, database=None)


def spec(cron: str, timezone: str) -> ScheduleSpec:
    return ScheduleSpec(cron=cron, expression=cron, timezone=timezone)


def dst_change_days(timezone: str) -> list[date]:
    """Days on which the zone's UTC offset changes, found by comparing noons."""
    zone, days = ZoneInfo(timezone), []
    day = FIRST_DAY
    previous = datetime.combine(day, time(12), zone).utcoffset()
    while day <= LAST_DAY:
        day += timedelta(days=1)
        offset = datetime.combine(day, time(12), zone).utcoffset()
        if offset != previous:
            days.append(day)
        previous = offset
    return days


CHANGE_DAYS = {zone: dst_change_days(zone) for zone in ZONES}


def first_instant_at_or_after(wall: datetime, timezone: str) -> datetime:
    """Oracle: the first UTC minute whose local wall time is at or after ``wall``."""
    zone = ZoneInfo(timezone)
    # start two hours before the reading with the earlier offset: before any answer here
    instant = wall.replace(tzinfo=zone).astimezone(UTC) - timedelta(hours=2)
    assert instant.astimezone(zone).replace(tzinfo=None) < wall
    while instant.astimezone(zone).replace(tzinfo=None) < wall:
        instant += timedelta(minutes=1)
    return instant


def slots_on(schedule: ScheduleSpec, day: date) -> list[datetime]:
    window = slots_between(
        schedule,
        datetime.combine(day - timedelta(days=1), time(), UTC),
        datetime.combine(day + timedelta(days=2), time(), UTC),
    )
    return [s.at for s in window if s.logical_date == day]


def zone_and_day() -> st.SearchStrategy[tuple[str, date]]:
    def day_in(zone: str) -> st.SearchStrategy[tuple[str, date]]:
        days = st.one_of(st.sampled_from(CHANGE_DAYS[zone]), st.dates(FIRST_DAY, LAST_DAY))
        return days.map(lambda day: (zone, day))

    return st.sampled_from(ZONES).flatmap(day_in)


# Hours around 01:00-03:00 hold every DST change of the three zones: draw them often.
HOURS = st.one_of(st.integers(0, 3), st.integers(0, 23))


@PROPERTY
@given(zone_day=zone_and_day(), hour=HOURS, minute=st.integers(0, 59))
@example(zone_day=("Europe/Paris", date(2026, 3, 29)), hour=2, minute=30)  # in the gap
@example(zone_day=("Europe/Paris", date(2026, 10, 25)), hour=2, minute=30)  # repeated
@example(zone_day=("America/New_York", date(2026, 3, 8)), hour=2, minute=0)  # in the gap
@example(zone_day=("America/New_York", date(2026, 11, 1)), hour=1, minute=59)  # repeated
@example(zone_day=("Australia/Lord_Howe", date(2026, 10, 4)), hour=2, minute=15)  # in the gap
@example(zone_day=("Australia/Lord_Howe", date(2026, 4, 5)), hour=1, minute=45)  # repeated
def test_a_fixed_time_cron_runs_exactly_once_per_local_day(
    zone_day: tuple[str, date], hour: int, minute: int
):
    timezone, day = zone_day
    (slot,) = slots_on(spec(f"{minute} {hour} * * *", timezone), day)
    assert slot == first_instant_at_or_after(datetime.combine(day, time(hour, minute)), timezone)


@PROPERTY
@given(
    zone_day=zone_and_day(),
    hours=st.sets(HOURS, min_size=1, max_size=3),
    minutes=st.sets(st.integers(0, 59), min_size=1, max_size=3),
    weekdays=st.sets(st.integers(0, 6), min_size=1, max_size=7),
)
def test_a_fixed_time_cron_with_several_times_runs_each_once_on_its_days(
    zone_day: tuple[str, date], hours: set[int], minutes: set[int], weekdays: set[int]
):
    timezone, day = zone_day
    cron = f"{_field(minutes)} {_field(hours)} * * {_field(weekdays)}"
    expected: set[datetime] = set()
    if day.isoweekday() % 7 in weekdays:
        walls = [datetime.combine(day, time(h, m)) for h in hours for m in minutes]
        expected = {first_instant_at_or_after(wall, timezone) for wall in walls}
    assert slots_on(spec(cron, timezone), day) == sorted(expected)


INTERVALS = {
    "*/15 * * * *": timedelta(minutes=15),
    "*/30 * * * *": timedelta(minutes=30),
    "0 * * * *": timedelta(hours=1),
    "0 */4 * * *": timedelta(hours=4),
    "0 */6 * * *": timedelta(hours=6),
}


@PROPERTY
@given(
    zone_day=zone_and_day(),
    cron=st.sampled_from(sorted(INTERVALS)),
    seconds_into_day=st.integers(0, 86399),
)
def test_an_interval_cron_keeps_even_spacing_in_utc(
    zone_day: tuple[str, date], cron: str, seconds_into_day: int
):
    timezone, day = zone_day
    start = datetime.combine(day, time(), UTC) + timedelta(seconds=seconds_into_day - 43200)
    slots = []
    for slot in iter_slots(spec(cron, timezone), start):
        slots.append(slot.at)
        if len(slots) == 40:
            break
    assert slots[0] - start <= INTERVALS[cron]
    assert {b - a for a, b in itertools.pairwise(slots)} == {INTERVALS[cron]}


def test_ten_years_of_fixed_time_crons_have_each_local_day_exactly_once():
    times = {"Europe/Paris": ("30 2", "0 3"), "America/New_York": ("30 2", "30 1")}
    times["Australia/Lord_Howe"] = ("15 2", "45 1")  # in its gap; in its repeated half hour
    start = datetime.combine(FIRST_DAY, time(), UTC) - timedelta(days=1)
    end = datetime.combine(LAST_DAY, time(), UTC) + timedelta(days=2)
    every_day = [FIRST_DAY + timedelta(days=n) for n in range((LAST_DAY - FIRST_DAY).days + 1)]
    for timezone, crons in times.items():
        for minute_hour in crons:
            slots = slots_between(spec(f"{minute_hour} * * *", timezone), start, end)
            days = [s.logical_date for s in slots if FIRST_DAY <= s.logical_date <= LAST_DAY]
            assert days == every_day, (timezone, minute_hour)


def test_ten_years_of_an_interval_cron_are_evenly_spaced():
    start = datetime.combine(FIRST_DAY, time(), UTC)
    end = datetime.combine(LAST_DAY, time(), UTC)
    for timezone in ZONES:
        slots = slots_between(spec("0 */4 * * *", timezone), start, end)
        gaps = {b.at - a.at for a, b in itertools.pairwise(slots)}
        assert gaps == {timedelta(hours=4)}, timezone
        assert len(slots) == (end - start) // timedelta(hours=4)


def _field(values: set[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


CRON_FIELD = st.one_of(
    st.just("*"),
    st.integers(2, 20).map(lambda step: f"*/{step}"),
    st.sets(st.integers(0, 23), min_size=1, max_size=4).map(_field),
)
ANY_CRON = st.tuples(
    st.one_of(st.just("0"), st.just("*/15"), st.sets(st.integers(0, 59), min_size=1).map(_field)),
    CRON_FIELD,
    st.sampled_from(["*", "1", "15", "L", "29", "1,15"]),
    st.sampled_from(["*", "2", "3,10"]),
    st.sampled_from(["*", "0", "1-5", "6"]),
).map(" ".join)


@settings(max_examples=200, deadline=None, database=None)
@given(
    cron=ANY_CRON,
    timezone=st.sampled_from(sorted(available_timezones())),
    instant=st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)),
)
def test_next_and_latest_never_raise_and_agree_in_any_zone(
    cron: str, timezone: str, instant: datetime
):
    schedule = spec(cron, timezone)
    after, before = next_slot(schedule, instant), latest_slot(schedule, instant)
    assert after is not None and before is not None  # every cron here fires at least yearly
    assert before.at <= instant < after.at
    assert latest_slot(schedule, after.at) == after
    assert next_slot(schedule, before.at) == after  # no slot between the two
    assert after.at < next_slot(schedule, after.at).at  # type: ignore[union-attr]
