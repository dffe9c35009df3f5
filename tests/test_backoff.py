"""The one jittered backoff every retry loop uses."""

from __future__ import annotations

import pytest

from imagesync.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset_after_a_success() -> None:
    backoff = Backoff(1.0, 5.0, random=lambda: 0.0)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 1.0


def test_jitter_adds_up_to_its_fraction_of_the_delay() -> None:
    top = Backoff(1.0, 8.0, jitter=0.2, random=lambda: 0.999999)
    assert [round(top.next(), 3) for _ in range(3)] == [1.2, 2.4, 4.8]
    spread = {round(Backoff(10.0, 10.0).next(), 6) for _ in range(50)}
    assert len(spread) > 1 and all(10.0 <= d <= 12.0 for d in spread)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration": -1, "cap": 1},
        {"duration": 2, "cap": 1},
        {"duration": 1, "cap": 2, "factor": 0.5},
    ],
)
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]
