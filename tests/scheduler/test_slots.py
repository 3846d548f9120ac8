"""Slots of a schedule: each row of the DST table in the docs, the bounds, the logical date,
and the arithmetic that never raises on any zone or date."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import available_timezones

import pytest

from batchpilot.scheduler import (
    is_interval_hour_field,
    iter_slots,
    latest_slot,
    next_slot,
    slots_between,
)
from batchpilot.spec.schedule import ScheduleSpec, parse_schedule


def schedule(cron: str, timezone: str = "UTC", **fields: object) -> ScheduleSpec:
    return parse_schedule({"cron": cron, "timezone": timezone, **fields})


def local_times(spec: ScheduleSpec, start: datetime, end: datetime) -> list[str]:
    return [s.local.strftime("%m-%d %H:%M%z") for s in slots_between(spec, start, end)]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_a_time_inside_the_spring_forward_gap_runs_at_the_first_valid_instant_after_it():
    paris = schedule("30 2 * * *", "Europe/Paris")
    assert local_times(paris, utc(2024, 3, 29), utc(2024, 4, 2)) == [
        "03-29 02:30+0100",
        "03-30 02:30+0100",
        "03-31 03:00+0200",  # 02:30 does not exist that night: the clocks jumped at 03:00
        "04-01 02:30+0200",
    ]
    lord_howe = schedule("15 2 * * *", "Australia/Lord_Howe")  # a 30-minute jump
    assert local_times(lord_howe, utc(2024, 10, 4), utc(2024, 10, 7)) == [
        "10-05 02:15+1030",
        "10-06 02:30+1100",
        "10-07 02:15+1100",
    ]


def test_a_time_inside_the_repeated_hour_runs_once_at_its_first_occurrence():
    new_york = schedule("30 1 * * *", "America/New_York")
    assert local_times(new_york, utc(2024, 11, 2), utc(2024, 11, 5)) == [
        "11-02 01:30-0400",
        "11-03 01:30-0400",  # 01:30 happens twice that night; the EDT one runs, alone
        "11-04 01:30-0500",
    ]


def test_two_times_inside_one_gap_are_one_slot():
    paris = schedule("0,30 2 * * *", "Europe/Paris")
    assert local_times(paris, utc(2024, 3, 30), utc(2024, 4, 1)) == [
        "03-30 02:00+0100",
        "03-30 02:30+0100",
        "03-31 03:00+0200",
    ]


def test_interval_crons_keep_even_spacing_in_utc_across_dst_changes():
    every_4h = schedule("0 */4 * * *", "Europe/Paris")
    spring = slots_between(every_4h, utc(2024, 3, 30, 12), utc(2024, 4, 1))
    assert {b.at - a.at for a, b in itertools.pairwise(spring)} == {timedelta(hours=4)}
    assert local_times(every_4h, utc(2024, 3, 30, 21), utc(2024, 3, 31, 6)) == [
        "03-31 00:00+0100",
        "03-31 05:00+0200",  # read on standard time: 04:00 CET is 05:00 CEST
    ]
    quarter = schedule("*/15 * * * *", "America/New_York")
    autumn = slots_between(quarter, utc(2024, 11, 3, 4), utc(2024, 11, 3, 8))
    assert len(autumn) == 16  # through both passes of the repeated hour, none skipped
    assert {b.at - a.at for a, b in itertools.pairwise(autumn)} == {timedelta(minutes=15)}
    assert [s.local.minute for s in autumn[:4]] == [0, 15, 30, 45]


def test_interval_crons_read_their_day_fields_on_the_local_calendar():
    weekdays = schedule("0 * * * 1-5", "Europe/Paris")  # hourly, Monday to Friday
    slots = slots_between(weekdays, utc(2024, 6, 7, 20), utc(2024, 6, 10, 1))
    assert [s.local.strftime("%a %H:%M") for s in slots] == [
        "Fri 22:00",
        "Fri 23:00",
        "Mon 00:00",
        "Mon 01:00",
        "Mon 02:00",
    ]


def test_a_slots_logical_date_is_its_date_in_the_schedules_zone():
    tokyo = schedule("0 1 * * *", "Asia/Tokyo")
    slot = next_slot(tokyo, utc(2024, 5, 1, 12))
    assert slot is not None
    assert slot.at == utc(2024, 5, 1, 16)  # 01:00 in Tokyo is 16:00 UTC the day before
    assert (slot.ds, slot.logical_date) == ("2024-05-02", date(2024, 5, 2))


def test_next_is_strictly_after_and_latest_is_at_or_before():
    daily = schedule("0 2 * * *")
    on_the_slot = utc(2024, 1, 10, 2)
    assert next_slot(daily, on_the_slot).at == utc(2024, 1, 11, 2)  # type: ignore[union-attr]
    assert latest_slot(daily, on_the_slot).at == on_the_slot  # type: ignore[union-attr]
    assert latest_slot(daily, on_the_slot - timedelta(microseconds=1)).at == utc(  # type: ignore[union-attr]
        2024, 1, 9, 2
    )


def test_start_and_end_dates_bound_the_slots_inclusively():
    bounded = schedule("0 2 * * *", "UTC", start_date="2024-01-10", end_date="2024-01-12")
    assert [s.ds for s in iter_slots(bounded, utc(2000, 1, 1))] == [
        "2024-01-10",
        "2024-01-11",
        "2024-01-12",
    ]
    assert latest_slot(bounded, utc(2030, 1, 1)).ds == "2024-01-12"  # type: ignore[union-attr]
    assert latest_slot(bounded, utc(2024, 1, 10, 1)) is None
    assert next_slot(bounded, utc(2024, 1, 12, 2)) is None


def test_sparse_and_exotic_day_fields():
    leap = schedule("0 0 29 2 *")
    assert [s.ds for s in slots_between(leap, utc(2024, 1, 1), utc(2033, 1, 1))] == [
        "2024-02-29",
        "2028-02-29",
        "2032-02-29",
    ]
    last_day = schedule("0 3 L * *", "Europe/Paris")
    assert [s.ds for s in slots_between(last_day, utc(2024, 1, 1), utc(2024, 4, 1))] == [
        "2024-01-31",
        "2024-02-29",
        "2024-03-31",
    ]
    second_monday = schedule("0 9 * * 1#2")
    assert next_slot(second_monday, utc(2024, 1, 1)).ds == "2024-01-08"  # type: ignore[union-attr]
    either = schedule("0 0 13 * 5")  # the 13th or any Friday, as cron reads both day fields
    days = [s.logical_date for s in slots_between(either, utc(2024, 9, 1), utc(2024, 10, 1))]
    assert date(2024, 9, 13) in days and date(2024, 9, 6) in days and len(days) == 4


@pytest.mark.parametrize(
    ("field", "interval"),
    [("*", True), ("*/4", True), ("0-23/6", True), ("2", False), ("9-17", False), ("1,13", False)],
)
def test_the_hour_field_says_whether_a_cron_is_an_interval(field: str, interval: bool):
    assert is_interval_hour_field(field) is interval


def test_no_zone_and_no_date_makes_the_arithmetic_raise():
    crons = [schedule(c) for c in ("30 2 * * *", "*/20 * * * *", "0 0 L 2 *", "0 0,12 * * 0")]
    instants = [utc(1, 1, 2), utc(1895, 3, 1), utc(2011, 12, 29, 12), utc(9999, 12, 31, 23)]
    for name in sorted(available_timezones()):
        for cron in crons:
            spec = ScheduleSpec(cron=cron.cron, expression=cron.cron, timezone=name)
            for instant in instants:
                after = next_slot(spec, instant)
                before = latest_slot(spec, instant)
                assert after is None or after.at > instant, (name, cron.cron, instant)
                assert before is None or before.at <= instant, (name, cron.cron, instant)


def test_a_skipped_calendar_day_still_gives_increasing_slots():
    apia = schedule("0 12 * * *", "Pacific/Apia")  # Samoa skipped 30 December 2011
    slots = slots_between(apia, utc(2011, 12, 27), utc(2012, 1, 2))
    assert all(a.at < b.at for a, b in itertools.pairwise(slots))
    assert "2011-12-30" not in [s.ds for s in slots]
