"""Backfill ranges: a schedule's slots between two dates (both inclusive), or fixed steps with
--every, oldest first or reversed; a range with no slot is an error naming the range."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from batchpilot.errors import SlotRangeError, SpecError
from batchpilot.scheduler import MAX_BACKFILL_SLOTS, backfill_slots
from batchpilot.spec.schedule import parse_schedule


def test_the_default_limit_is_a_hundred_thousand_slots():
    assert MAX_BACKFILL_SLOTS == 100_000


def test_a_schedules_slots_in_a_range_of_dates_include_both_end_days():
    nightly = parse_schedule({"cron": "0 2 * * *", "timezone": "Europe/Paris"})
    slots = backfill_slots(nightly, date(2024, 1, 1), date(2024, 1, 31))
    assert [s.ds for s in slots] == [f"2024-01-{d:02d}" for d in range(1, 32)]
    assert slots[0].at == datetime(2024, 1, 1, 1, 0, tzinfo=UTC)


def test_reverse_gives_the_newest_slot_first():
    weekly = parse_schedule("@weekly")
    slots = backfill_slots(weekly, date(2024, 1, 1), date(2024, 1, 31), reverse=True)
    assert [s.ds for s in slots] == ["2024-01-28", "2024-01-21", "2024-01-14", "2024-01-07"]


def test_every_one_day_keeps_the_local_time_across_dst():
    paris = parse_schedule({"cron": "0 6 * * 1", "timezone": "Europe/Paris"})
    slots = backfill_slots(paris, date(2024, 3, 30), date(2024, 4, 1), every=timedelta(days=1))
    assert [s.local.isoformat() for s in slots] == [
        "2024-03-30T00:00:00+01:00",
        "2024-03-31T00:00:00+01:00",
        "2024-04-01T00:00:00+02:00",
    ]


def test_without_a_schedule_every_steps_in_utc_from_the_start():
    slots = backfill_slots(None, date(2024, 1, 1), date(2024, 1, 1), every=timedelta(hours=6))
    assert [s.at.hour for s in slots] == [0, 6, 12, 18]
    assert {s.timezone for s in slots} == {"UTC"}


def test_date_time_bounds_are_exact_instants_both_included():
    hourly = parse_schedule("@hourly")
    slots = backfill_slots(hourly, datetime(2024, 1, 1, 3), datetime(2024, 1, 1, 6))
    assert [s.at.hour for s in slots] == [3, 4, 5, 6]


@pytest.mark.parametrize(
    ("schedule", "start", "end", "every", "words"),
    [
        (
            "0 0 1 * *",
            date(2024, 3, 2),
            date(2024, 3, 20),
            None,
            "no slot of schedule '0 0 1 * *' (UTC) falls between 2024-03-02 and 2024-03-20",
        ),
        (
            "@daily",
            date(2024, 3, 20),
            date(2024, 3, 2),
            None,
            "the backfill range ends (2024-03-02) before it starts (2024-03-20)",
        ),
        (None, date(2024, 1, 1), date(2024, 1, 2), None, "the pipeline has no schedule"),
        (None, date(2024, 1, 1), date(2024, 1, 2), timedelta(0), "must be positive"),
        (
            "* * * * *",
            date(2024, 1, 1),
            date(2024, 12, 31),
            None,
            "holds more than 500 slots",
        ),
    ],
)
def test_a_range_with_no_slot_or_too_many_is_refused_naming_the_range(
    schedule: str | None, start: date, end: date, every: timedelta | None, words: str
):
    spec = parse_schedule(schedule) if schedule else None
    with pytest.raises(SlotRangeError) as caught:
        backfill_slots(spec, start, end, every=every, limit=500)
    assert words in str(caught.value)
    assert isinstance(caught.value, SpecError)  # the CLI's exit 2
    assert (caught.value.start, caught.value.end) == (start.isoformat(), end.isoformat())
