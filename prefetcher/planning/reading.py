"""What a puller pod object alone says, read once per object: the incremental planner keeps
it while the object is the same, so a running puller of 200 images costs a look-up a pass,
not a walk over its containers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from prefetcher import presence
from prefetcher.model import ManagedPod
from prefetcher.planning.images import registry_of


class PullerReading(NamedTuple):
    """A puller's results, the images it still has to pull, and when its current image could
    start pulling as far as the pod alone tells."""

    results: Mapping[str, presence.PullResult]
    pending: tuple[str, ...]  # images without a result yet, in pull order
    pending_set: frozenset[str]
    failed: tuple[tuple[str, presence.PullResult], ...]  # (image, result) of failed pulls
    # The pod's creation or its last image's end, whichever is later (None: not created)
    clock_start: datetime | None
    registries: frozenset[str]  # of the pending images


def read_puller(pod: ManagedPod, results: Mapping[str, presence.PullResult]) -> PullerReading:
    """`pod`'s reading, from its results (`presence.puller_results`)."""
    pending = tuple(image for image in pod.images if image not in results)
    failed = tuple((image, r) for image, r in results.items() if not r.succeeded)
    clock_start = None
    if pod.created is not None:
        ends = [r.finished_at for r in results.values() if r.finished_at is not None]
        clock_start = max([pod.created, *ends])
    registries = frozenset(registry_of(image)[0] for image in pending)
    return PullerReading(results, pending, frozenset(pending), failed, clock_start, registries)
