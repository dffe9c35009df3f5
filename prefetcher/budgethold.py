"""The hold on a node's disk budget: the images its workload pods used lately keep their room.

The budget gives way to the images of the pods running on or bound to a node. Without a
memory it would grow back the moment they leave, and the prefetched images the kubelet's
image GC removed meanwhile would be pulled again, in the way of the next pod's pull, only to
be dropped for it once more. So, as kube's HorizontalPodAutoscaler holds a scale-down for its
stabilization window, the budget keeps the room of every image the node's pods used within
`budgetHold`: it grows back once they have needed less room for that long.

The runtime feeds it the workload pods it sees on nodes (`saw`: when bound and when gone) and
hands `used(now)` to the planner as `Demand.pods_used`. It lives in memory (after a restart,
the pods running then teach it again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class BudgetHold:
    """Per node, the images its workload pods used, and when last."""

    keep: timedelta
    _seen: dict[str, dict[str, datetime]] = field(default_factory=dict)

    def saw(self, node: str, images: Iterable[str], now: datetime) -> None:
        """A workload pod using `images` is bound to `node` (or has just left it)."""
        if self.keep <= timedelta(0) or not node:
            return
        seen = self._seen.setdefault(node, {})
        for image in images:
            seen[image] = now

    def used(self, now: datetime) -> dict[str, frozenset[str]]:
        """Node → the images its pods used within `keep` (older ones are forgotten)."""
        oldest = now - self.keep
        out: dict[str, frozenset[str]] = {}
        for node in list(self._seen):
            images = {i: at for i, at in self._seen[node].items() if at > oldest}
            if images:
                self._seen[node] = images
                out[node] = frozenset(images)
            else:
                del self._seen[node]
        return out
