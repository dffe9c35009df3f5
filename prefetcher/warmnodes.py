"""Time to warm: from a node joining (or turning Ready) to every image it wants present.

The figure admins read to see whether a new GPU node is ready for its jobs when they come
(the `node_warm_seconds` histogram, the report's `nodeWarmSeconds`, and the nodes still
waiting as `node_warming_since_timestamp_seconds`).
"""

from __future__ import annotations

import logging

from prefetcher.metrics import Metrics
from prefetcher.model import Plan

log = logging.getLogger(__name__)


class WarmNodes:
    """The nodes warming since they joined, and how long the warm ones took."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._since: dict[str, float] = {}
        self.times: dict[str, float] = {}  # node -> seconds it took

    def node_changed(self, reason: str | None, node: str, initial: bool, now: float) -> None:
        """Start timing a node that joined or turned Ready (not one the first list shows);
        forget one that left."""
        if reason in ("node joined", "node ready") and not initial:
            self._since.setdefault(node, now)
        elif reason == "node removed":
            self._since.pop(node, None)
            self.times.pop(node, None)

    def observe(self, plan: Plan, now: float) -> None:
        """Stop timing the nodes that now hold every image they want. A node that wants
        nothing yet (or is not eligible) keeps its start time but is not shown as waiting."""
        waiting: dict[str, float] = {}
        for node in plan.nodes if self._since else ():
            since = self._since.get(node.name)
            if since is None or not node.eligible or node.wanted == 0:
                continue
            if node.present >= node.wanted:
                self._metrics.node_warm_seconds.observe(now - since)
                self.times[node.name] = now - since
                del self._since[node.name]
                log.info(
                    "node %s warm after %.0fs: %d images present",
                    node.name,
                    now - since,
                    node.present,
                    extra={"node": node.name, "seconds": round(now - since, 3)},
                )
            else:
                waiting[node.name] = since
        self._metrics.observe_warming(waiting)
