"""The clocks the scheduler reads, and the jitter it adds to a slot."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from batchpilot.scheduler import FakeClock, SystemClock, jitter_delay

START = datetime(2026, 3, 29, 0, 59, 30, tzinfo=UTC)


def test_a_fake_clock_moves_only_when_told_and_sleeps_without_waiting():
    clock = FakeClock(START)
    assert clock.now() == START
    assert clock.sleep(3600) is False  # an hour, at once
    assert clock.now() == START + timedelta(hours=1)
    clock.advance(timedelta(minutes=1))
    clock.advance(0.5)
    assert clock.now() == START + timedelta(hours=1, minutes=1, seconds=0.5)
    assert clock.sleeps == [3600.0]


def test_a_fake_clock_reports_a_stop_and_refuses_naive_times_and_going_back():
    clock = FakeClock(START)
    stop = threading.Event()
    stop.set()
    assert clock.sleep(10, stop=stop) is True
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="aware"):
        FakeClock(datetime(2026, 1, 1))
    clock.set(datetime(2020, 1, 1, tzinfo=UTC))  # set by hand, as an operator can
    assert clock.now() == datetime(2020, 1, 1, tzinfo=UTC)


def test_the_system_clock_is_aware_utc_and_wakes_on_stop():
    clock = SystemClock()
    assert clock.now().tzinfo is UTC
    stop = threading.Event()
    stop.set()
    assert clock.sleep(30, stop=stop) is True  # returns at once: the stop is already set


def test_jitter_is_within_bounds_and_the_same_for_the_same_slot():
    slot = datetime(2026, 1, 1, 2, tzinfo=UTC)
    delays = [jitter_delay("nightly", slot + timedelta(days=d), 30.0) for d in range(200)]
    assert all(0.0 <= d < 30.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 150  # spread, not one value
    assert jitter_delay("nightly", slot, 30.0) == delays[0]
    assert jitter_delay("hourly", slot, 30.0) != delays[0]
    assert jitter_delay("nightly", slot, 0.0) == 0.0
