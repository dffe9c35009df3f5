"""Where each image's pods ran before, by node pool: `placement: demand` keeps an image in
those pools once its pods are gone (a finished Job, a Deployment scaled to zero), instead of
falling back to every node its pods could be scheduled on.

The runtime feeds it the workload pods it sees running and hands `pools()` to the planner as
`Demand.ran_in`; it lives in memory (after a restart, the pods running then teach it again)
and forgets a pool where none of the image's pods ran for `imageRetention`.
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

    def saw(self, images: Iterable[str], node_labels: Mapping[str, str], now: datetime) -> bool:
        """A pod using `images` runs on a node with these labels; whether a pool is new."""
        pool = pool_of(node_labels, self.pool_labels)
        new = False
        for image in images:
            pools = self._seen.setdefault(image, {})
            new = new or pool not in pools
            pools[pool] = now
        return new

    def saw_running(
        self, running: Iterable[RunningPod], labels: Mapping[str, Mapping[str, str]], now: datetime
    ) -> None:
        """The running pods of a pass (`labels`: node name → its labels; pods on nodes not
        known are skipped)."""
        for pod in running:
            node_labels = labels.get(pod.node)
            if node_labels is not None:
                self.saw(pod.images, node_labels, now)

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
