"""Simulated time: every duration in the simulator is simulated, and the clock maps it to wall time.

A speed-up factor lets a scenario with 20 GB images run in seconds of wall time: at `speed=60`
one wall second is one simulated minute. The clock is passed to every component, never read
from a global, so tests can use a `ManualClock` and step time by hand.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the simulator needs from time: now (simulated epoch seconds) and a way to wait."""

    @property
    def speed(self) -> float: ...

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wall_seconds(self, seconds: float) -> float: ...


class SimClock:
    """Simulated time running `speed` times faster than the wall clock, from the current date."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._speed = float(speed)
        self._start = time.time() if start is None else float(start)
        self._origin = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        """Simulated seconds since the epoch."""
        return self._start + (time.monotonic() - self._origin) * self._speed

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of simulated time."""
        if seconds > 0:
            time.sleep(seconds / self._speed)

    def wall_seconds(self, seconds: float) -> float:
        """How many wall seconds `seconds` of simulated time take."""
        return seconds / self._speed

    def set_speed(self, speed: float) -> None:
        """Run at `speed` from now on; time stays continuous. A benchmark fills a cluster
        fast, then measures what wall-clock latencies matter to (a joining node) at 1x."""
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._start, self._origin = self.now(), time.monotonic()
        self._speed = float(speed)


class ManualClock:
    """A clock that only moves when told to: for pure tests of time-dependent logic."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    @property
    def speed(self) -> float:
        return 1.0

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def wall_seconds(self, seconds: float) -> float:
        return 0.0


def rfc3339(timestamp: float) -> str:
    """`2024-01-02T03:04:05Z`, the format of Kubernetes `metav1.Time` fields."""
    return _rfc3339_second(math.floor(timestamp))


@functools.lru_cache(maxsize=4096)
def _rfc3339_second(second: int) -> str:
    # Pod and node statuses repeat the same few seconds in every write: format each once.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(timestamp: float) -> str:
    """`2024-01-02T03:04:05.123456Z`, the format of `metav1.MicroTime` (Lease renewTime)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """Epoch seconds from an RFC 3339 timestamp as the API server writes them."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
