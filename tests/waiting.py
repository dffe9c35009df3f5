"""The one polling helper of the suite: tests wait for what a process or a server does
next, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `condition` until it returns something truthy, and return that; fail after a
    generous `timeout` with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what or condition} (last value: {last!r})"
            )
        time.sleep(interval)
