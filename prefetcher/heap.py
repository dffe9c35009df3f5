"""Keeps the garbage collector's full passes out of the planning passes: one full collection
per sweep, between passes, instead of whenever enough objects have piled up.

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
"""

from __future__ import annotations

import gc

# Above any count of young collections a process reaches between two sweeps.
NEVER = 2**31 - 1


def leave_full_collections_to_sweeps() -> None:
    """Turn off the automatic full collections; the young generations collect as before."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, NEVER)


def collect() -> None:
    """The sweep's full collection."""
    gc.collect()
