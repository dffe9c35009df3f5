"""Where each image's pods ran before, by node pool: `placement: demand` keeps an image in
those pools once its pods are gone (a finished Job, a Deployment scaled to zero), instead of
falling back to every node its pods could be scheduled on.

The runtime feeds it the workload pods it sees running — as the watch shows them (`saw_on`:
a Job of a few seconds between two passes counts too), resolved to pools with the nodes'
labels at the next pass (`place`) — and hands `pools()` to the planner as `Demand.ran_in`.
It lives in memory (after a restart, the pods running then teach it again) and forgets a
pool where none of the image's pods ran for `imageRetention`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prefetcher.model import RunningPod

Pool = tuple[str, ...]


def pool_of(labels: Mapping[str, str], pool_labels: Iterable[str]) -> Pool:
    """The values of the pool labels in `labels` ("" where one is missing)."""
    return tuple(labels.get(label, "") for label in pool_labels)


@dataclass
class PoolHistory:
    """Per image, the pools its pods were seen running in, and when last."""

    pool_labels: tuple[str, ...]
    keep: timedelta
    _seen: dict[str, dict[Pool, datetime]] = field(default_factory=dict)
    # Node name → image → when, for pods seen before their node's labels were looked up.
    _unplaced: dict[str, dict[str, datetime]] = field(default_factory=dict)

    def saw(self, images: Iterable[str], node_labels: Mapping[str, str], now: datetime) -> None:
        """A pod using `images` runs on a node with these labels."""
        pool = pool_of(node_labels, self.pool_labels)
        for image in images:
            self._seen.setdefault(image, {})[pool] = now

    def saw_on(self, pod: RunningPod, now: datetime) -> None:
        """A workload pod runs on `pod.node`: its pool is looked up at the next `place`."""
        images = self._unplaced.setdefault(pod.node, {})
        for image in pod.images:
            images[image] = now

    def place(self, labels: Mapping[str, Mapping[str, str]]) -> None:
        """Resolve the pods seen since the last call to pools (`labels`: node name → its
        labels); those on nodes no longer known are dropped."""
        for node, images in self._unplaced.items():
            node_labels = labels.get(node)
            if node_labels is None:
                continue
            for image, at in images.items():
                self.saw((image,), node_labels, at)
        self._unplaced.clear()

    def pools(self, now: datetime) -> dict[str, frozenset[Pool]]:
        """Image → the pools its pods ran in within `keep` (older ones are forgotten)."""
        oldest = now - self.keep
        out: dict[str, frozenset[Pool]] = {}
        for image in list(self._seen):
            pools = {p: at for p, at in self._seen[image].items() if at >= oldest}
            if pools:
                self._seen[image] = pools
                out[image] = frozenset(pools)
            else:
                del self._seen[image]
        return out
