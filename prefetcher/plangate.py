"""Watch events wait while a plan runs: the informers' threads decode them between plans, not
against the planner for the interpreter lock.

The informers' threads decode every watch event (a puller of 200 images is 200 kB of JSON
each time its status changes or it goes) and share one interpreter lock with the pass. At
1,000 nodes x 200 images, while a thousand finished pullers were deleted, those threads
used 0.3 to 1.7 s of CPU during each plan, and the plan waited for them. A plan reads a
snapshot taken before it starts, so nothing it does needs an event that arrives meanwhile:
the informers stop reading their streams while it runs (what arrives waits in the socket,
and the API server holds the rest) and catch up as soon as it ends. The changes they then
see trigger the next pass as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

# A plan never holds the watches back longer than this (wall seconds): past it, a thread
# decodes anyway, so a plan that hangs does not stop the caches.
MAX_WAIT = 30.0


class PlanGate:
    """Closed while a plan runs; an informer's thread waits at it before decoding what it
    read."""

    def __init__(self, max_wait: float = MAX_WAIT) -> None:
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._plans = 0
        self._max_wait = max_wait
        self.waiting = 0  # threads waiting at the gate now

    @contextmanager
    def closed(self) -> Iterator[None]:
        """Hold the watches back for the duration of the block (a plan)."""
        with self._lock:
            self._plans += 1
            self._open.clear()
        try:
            yield
        finally:
            with self._lock:
                self._plans -= 1
                if not self._plans:
                    self._open.set()

    def wait(self) -> None:
        """Return once no plan runs, or after `max_wait`."""
        if self._open.is_set():
            return
        with self._lock:
            self.waiting += 1
        try:
            self._open.wait(self._max_wait)
        finally:
            with self._lock:
                self.waiting -= 1
