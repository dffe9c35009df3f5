"""The simulated clock keeps time continuous when its speed changes."""

from __future__ import annotations

import time

import pytest

from simulator.clock import SimClock, rfc3339


def test_set_speed_keeps_time_continuous() -> None:
    clock = SimClock(speed=10_000.0, start=1_000.0)
    time.sleep(0.01)
    before = clock.now()
    assert before >= 1_100.0  # 0.01 s of wall time at 10,000x
    clock.set_speed(1.0)
    after = clock.now()
    # No jump back to 1x since the start, and no jump forward either.
    assert before <= after < before + 5.0
    assert clock.speed == 1.0 and clock.wall_seconds(3.0) == 3.0
    with pytest.raises(ValueError):
        clock.set_speed(0)


def test_rfc3339_keeps_the_whole_second_of_any_timestamp() -> None:
    # Formatted once per second and reused: a fraction never rounds up to the next second.
    assert rfc3339(1_700_000_000.0) == "2023-11-14T22:13:20Z"
    assert rfc3339(1_700_000_000.999) == "2023-11-14T22:13:20Z"
    assert rfc3339(1_700_000_001.0) == "2023-11-14T22:13:21Z"
    assert rfc3339(-0.5) == "1969-12-31T23:59:59Z"
