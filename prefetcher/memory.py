"""The process's memory: RSS that follows what is live, and no full collection inside a plan.

A pass at 1,000 nodes x 200 images allocates and frees tens of MiB (the candidates, the
outcomes of finished pullers, the report's JSON), and the informers' threads decode every
watch event, of which the cache keeps a small part. Python's own small-object allocator
(pymalloc) hands an arena of 1 MiB back only once every object in it is gone: one cached
object among a watch event's garbage keeps its arena, and the process's RSS stayed at
three times its live heap. So the prefetcher runs on the C library's malloc
(`PYTHONMALLOC=malloc`, set by its Deployment: ALLOCATOR_ENV), and `malloc_trim(0)` hands
the free pages of every malloc arena back after a pass, at most every `every` seconds (it
takes milliseconds), once more when the passes stop, and after a cache's relist. Where the C library has no `malloc_trim` (musl, macOS) it does nothing.

The garbage collector's full passes are kept out of the planning passes: one full
collection per sweep, between passes, instead of whenever enough objects have piled up.

The informer caches hold every Node, pod and CachedImage as parsed JSON, and the planner's
memory its per-node results: hundreds of thousands of objects at 300 nodes, millions at
1,000. CPython's automatic full (generation 2) collection scans all of them, and it comes
when enough new objects have survived: most often inside a pass's planning, which makes
the most objects. At 300 nodes x 60 images, with the caches churning while the cluster
converged, such collections took 1 to 2 s of wall time of a pass's plan under load (0.1 to
0.25 s of CPU each), against 70 ms for the plan itself.

Nearly all of those objects are in no reference cycle (parsed JSON, dataclasses):
reference counting frees them the moment the caches drop them, without the collector. What
cycles there are (a client's exceptions and their tracebacks) wait for the sweep's
collection.

The young collections are spaced out too. Python collects its youngest generation each time
700 more container objects were made than freed. A pass makes tens of thousands and drops
most of them (a new image's pass at 1,000 x 200 holds 10,000 to 20,000 more at its peak,
about 7,000 more after it: the nodes' new rows and targets, the old ones freed at the next
pass), so it ran 17 young collections and one middle one, 4 to 5 ms of its 45 ms of CPU,
each scanning objects that reference counting frees moments later anyway. With a threshold
of YOUNG_THRESHOLD (50,000) such a pass runs with none (none in twelve passes in a row of
the planner bench), and when one comes most of what the passes made is freed. (10,000 was
too low: one collection a pass, of long lists, 2 to 3.5 ms.) What it may leave waiting is
cyclic garbage only, a few MiB at most.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Above any count of young collections a process reaches between two sweeps.
NEVER = 2**31 - 1
# Container objects made (less those freed) before a young collection: above what a pass
# holds at once at 1,000 x 200 (see the module's docstring).
YOUNG_THRESHOLD = 50_000
# Wall seconds between two trims: a busy cluster runs a pass every second or two.
TRIM_EVERY = 10.0
# The environment the prefetcher runs in (its Deployment sets it; Python and the C library
# read it at start). A fixed mmap threshold: every block of 256 KiB or more (a list page's
# bytes, the report's JSON, a response being sent) is mapped apart and unmapped when freed.
# By default glibc raises the threshold after each such block is freed, up to 32 MiB, and
# later ones came from the heaps, where what they left stayed until the next trim (at
# 1,000 x 200 a /report request added 36 MiB of RSS).
ALLOCATOR_ENV = {"PYTHONMALLOC": "malloc", "MALLOC_MMAP_THRESHOLD_": "262144"}


def allocator_note() -> str:
    """A line for the log when the process runs on Python's own allocator, "" otherwise."""
    if os.environ.get("PYTHONMALLOC") == ALLOCATOR_ENV["PYTHONMALLOC"]:
        return ""
    return (
        "running on Python's small-object allocator: set PYTHONMALLOC=malloc (the Deployment "
        "does) so that memory freed after a pass goes back to the system"
    )


def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's `malloc_trim`, or None when it has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class FreedMemory:
    """Gives freed memory back after a pass, at most every `every` wall seconds."""

    def __init__(self, every: float = TRIM_EVERY) -> None:
        self._trim = _malloc_trim()
        self._every = every
        self._last = -float("inf")
        self._owed = False  # a pass freed memory since the last trim
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def release(self, *, force: bool = False) -> None:
        """Trim now, unless the last trim was less than `every` seconds ago (`force`: now
        in any case, after a rare large release such as a cache's relist)."""
        now = time.monotonic()
        if self._trim is None:
            return
        if not force and now - self._last < self._every:
            self._owed = True
            return
        self._last, self._owed = now, False
        try:
            self._trim(0)
        except OSError:  # a C library that refuses: nothing is lost but the saving
            log.debug("malloc_trim failed", exc_info=True)
            self._trim = None
            return
        self.trims += 1

    def settle(self) -> None:
        """Trim what the last passes freed once they are over: a burst of passes trims at
        most every `every` seconds, and its last pass's memory would otherwise wait for the
        next burst (the allocator keeps hundreds of MiB free at 1,000 nodes)."""
        if self._owed:
            self.release(force=True)


def keep_collections_out_of_passes() -> None:
    """Turn off the automatic full collections, and collect the youngest generation after
    YOUNG_THRESHOLD new objects instead of Python's 700."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, NEVER)


def collect() -> None:
    """The sweep's full collection."""
    gc.collect()
