"""The cache policies image-sync is compared with, in virtual time (as bench/evaluate.py runs
them on the wall-clock simulator):

- `static-list`: a fixed list of images pulled to every node by one puller pod per node,
  re-created every 30 minutes; a node that joins waits for the next refresh;
- `everything`: every image of the managed registries to every node, every 30 minutes and at
  once on a node that joins (the registries' listing at each refresh: a tag pushed during the
  run joins the list from then on).

Their pods pull with `IfNotPresent` one image after another through the node's queue, and
nothing guards what they pulled from image GC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from simulator.virtual.pods import IF_NOT_PRESENT, Container, Pod
from simulator.virtual.policy import Policy

if TYPE_CHECKING:
    from simulator.virtual.cluster import VirtualCluster
    from simulator.virtual.node import VirtualNode

REFRESH_SECONDS = 1800.0
# The images to pull at a moment (virtual seconds): a fixed list, or a registry's listing.
Listing = Callable[[float], Sequence[str]]


class ListPuller(Policy):
    """A fixed list of images to every node, refreshed every `refresh` seconds."""

    def __init__(
        self,
        name: str,
        images: Sequence[str] | Listing,
        refresh: float,
        follow_new_nodes: bool,
    ) -> None:
        self.name = name
        fixed = () if callable(images) else tuple(images)
        self.listing: Listing = images if callable(images) else (lambda _: fixed)
        self.images: tuple[str, ...] = fixed
        self.refresh = refresh
        self.follow_new_nodes = follow_new_nodes
        self.cluster: VirtualCluster | None = None
        self.generation = 0
        self.pods: dict[str, Pod] = {}
        self.covered: set[str] = set()

    def attach(self, cluster: VirtualCluster) -> None:
        self.cluster = cluster
        cluster.loop.at(0.0, self._refresh)

    def _refresh(self) -> None:
        assert self.cluster is not None
        self.generation += 1
        self.images = tuple(self.listing(self.cluster.loop.now))
        for node in self.cluster.live_nodes():
            if node.ready:
                self._pull(node)
        self.cluster.loop.after(self.refresh, self._refresh)

    def _pull(self, node: VirtualNode) -> None:
        assert self.cluster is not None
        if not self.images:
            return
        previous = self.pods.get(node.name)
        if previous is not None:
            self.cluster.delete_pod(previous)
        containers = [Container(image=i, policy=IF_NOT_PRESENT, exits=True) for i in self.images]
        self.pods[node.name] = self.cluster.own_pod(
            node.name,
            "puller",
            f"pull-{node.name}-{self.generation}",
            containers,
            images=self.images,
            namespace="cache-baseline",
        )
        self.covered.add(node.name)

    def node_added(self, node: VirtualNode) -> None:
        if self.follow_new_nodes:
            self._pull(node)

    def targeted(self, node: str, image: str) -> bool:
        return node in self.covered and image in self.images
