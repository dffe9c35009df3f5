"""The event loop of the virtual evaluation: callbacks on a heap of virtual seconds.

Events at the same moment run in the order they were scheduled (a sequence number breaks
ties), so a run is a pure function of its inputs.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Timer:
    """A scheduled callback; `cancel()` makes the loop skip it."""

    at: float
    action: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class EventLoop:
    """Runs callbacks in time order; `now` is the virtual clock (seconds)."""

    now: float = 0.0
    processed: int = 0
    _heap: list[tuple[float, int, Timer]] = field(default_factory=list)
    _sequence: int = 0

    def at(self, moment: float, action: Callable[[], None]) -> Timer:
        """Run `action` at `moment` (never in the past: a late moment runs now)."""
        timer = Timer(max(moment, self.now), action)
        self._sequence += 1
        heapq.heappush(self._heap, (timer.at, self._sequence, timer))
        return timer

    def after(self, delay: float, action: Callable[[], None]) -> Timer:
        return self.at(self.now + max(0.0, delay), action)

    def run(self, until: float) -> None:
        """Run every event due at or before `until`, then set the clock to `until`."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            moment, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            self.now = moment
            self.processed += 1
            timer.action()
        self.now = max(self.now, until)

    def pending(self) -> int:
        return sum(1 for _, _, timer in self._heap if not timer.cancelled)
