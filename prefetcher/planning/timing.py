"""When pulls may start: quiet hours and the backoff after failures."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from imagesync.config import Config
from prefetcher.model import PullRecord


def in_quiet_hours(now: datetime, window: str) -> bool:
    """True when `now` (UTC) falls in `HH:MM-HH:MM` (which may wrap past midnight)."""
    if not window:
        return False
    start_text, end_text = window.split("-")
    start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
    moment = now.time().replace(tzinfo=None)
    if start == end:
        return False
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def backoff_delay(attempts: int, config: Config) -> float:
    """Seconds to wait after `attempts` failures."""
    if attempts <= 0:
        return 0.0
    exponent = min(attempts - 1, 40)
    return float(min(config.pull_backoff_base * 2**exponent, config.pull_backoff_max))


def retry_at(record: PullRecord, config: Config) -> datetime:
    """When the next pull of a failed (node, image) may start."""
    return record.last_failure + timedelta(seconds=backoff_delay(record.attempts, config))
