"""Scores decay with a half-life, are stable within a day; retention releases learned images."""

from __future__ import annotations

from datetime import timedelta

from prefetcher.scoring import is_wanted, rank_key, score
from tests.prefetcher.test_core_fixtures import APP, NOW, image

DAY = 86400.0


def test_score_decays_by_half_life() -> None:
    uses = {
        NOW.strftime("%Y-%m-%d"): 8,
        (NOW - timedelta(days=3)).strftime("%Y-%m-%d"): 8,
    }
    img = image(APP, daily_uses=uses)
    assert score(img, NOW, 3 * DAY) == 12.0  # 8 + 8 * 0.5
    # Stable within the day, so status is not rewritten every sweep.
    assert score(img, NOW + timedelta(hours=20), 3 * DAY) == 12.0
    assert score(img, NOW + timedelta(days=3), 3 * DAY) == 6.0


def test_score_without_daily_counts_uses_last_seen() -> None:
    img = image(APP, uses=0, use_count=10, last_seen=NOW - timedelta(days=6))
    assert score(img, NOW, 3 * DAY) == 2.5


def test_recent_and_frequent_rank_first() -> None:
    busy = score(image(APP, uses=40), NOW, 3 * DAY)
    quiet = score(image(APP, uses=2), NOW, 3 * DAY)
    assert busy > quiet
    assert rank_key("b", 0, 0.0) < rank_key("a", 1, 99.0)  # the better source first
    assert rank_key("a", 1, 5.0) < rank_key("b", 1, 1.0)


def test_retention() -> None:
    retention = 14 * DAY
    assert is_wanted(image(APP, last_seen=NOW - timedelta(days=13)), NOW, retention)
    assert not is_wanted(
        image(APP, last_seen=NOW - timedelta(days=15), age=timedelta(days=30)), NOW, retention
    )
    assert is_wanted(
        image(APP, source="Declared", last_seen=NOW - timedelta(days=99)), NOW, retention
    )
