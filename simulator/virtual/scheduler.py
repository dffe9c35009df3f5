"""A scheduler like kube-scheduler's default profile, in virtual time.

Filters: the node is Ready and not cordoned (unless tolerated), the pod tolerates its
NoSchedule/NoExecute taints, its nodeSelector matches, and its requests (cpu, memory,
`nvidia.com/gpu`, pods) fit what is left. Scores: NodeResourcesFit with the scenario's
`scoringStrategy` (`simulator.scoring`: LeastAllocated over cpu and memory by default,
MostAllocated to bin-pack) plus ImageLocality as kube-scheduler computes it
(`pkg/scheduler/framework/plugins/imagelocality`): for each of the pod's images that the node
lists in `status.images` (the 50 largest), its size scaled by the share of all nodes that
have it, summed and mapped from [23 MiB, 1000 MiB x containers] onto [0, 100]. The highest
total wins; the node name breaks ties, or, given a seed (the scenario's `scheduler_seed`), a
draw among the equals as kube-scheduler's `selectHost` makes it: the same seed, the same run.
A pod that fits nowhere waits and is tried again when capacity frees or a node joins or turns
Ready.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from simulator.nodes import GPU_RESOURCE
from simulator.scheduling import UNSCHEDULABLE_TAINT, parse_quantity, tolerates
from simulator.scoring import DEFAULT_SCORING, ScoringStrategy, resource_fit_score
from simulator.virtual.node import VirtualNode
from simulator.virtual.pods import Pod

MIB = 1024 * 1024
MIN_THRESHOLD = 23 * MIB
MAX_CONTAINER_THRESHOLD = 1000 * MIB
MAX_NODE_SCORE = 100.0
RESOURCES = ("cpu", "memory", GPU_RESOURCE, "pods")


def allocatable(node: VirtualNode) -> dict[str, float]:
    config = node.config
    return {
        "cpu": parse_quantity(config.cpu),
        "memory": parse_quantity(config.memory),
        GPU_RESOURCE: float(config.gpus),
        "pods": float(config.max_pods),
    }


def image_locality(
    images: tuple[str, ...], node_images: Mapping[str, int], spread: Mapping[str, float]
) -> float:
    """kube-scheduler's ImageLocality score (0 to 100) of one node for a pod's images."""
    total = sum(node_images[i] * spread.get(i, 0.0) for i in images if i in node_images)
    high = MAX_CONTAINER_THRESHOLD * max(1, len(images))
    total = min(max(total, MIN_THRESHOLD), high)
    return MAX_NODE_SCORE * (total - MIN_THRESHOLD) / (high - MIN_THRESHOLD)


def filter_problem(pod: Pod, node: VirtualNode, free: Mapping[str, float]) -> str | None:
    """Why the pod cannot go to the node now, or None."""
    spec = pod.spec
    tolerations = spec.tolerations if spec is not None else ()
    if node.removed or not node.ready:
        return "node(s) were not ready"
    if node.unschedulable and not tolerates(
        tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    ):
        return "node(s) were unschedulable"
    for taint in node.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return "node(s) had untolerated taint"
    if spec is not None:
        labels = node.labels
        for key, value in spec.node_selector.items():
            if labels.get(key) != value:
                return "node(s) didn't match Pod's node affinity/selector"
    for resource, amount in pod.requests.items():
        if amount > 0 and amount > free.get(resource, 0.0) + 1e-9:
            return f"Insufficient {resource}"
    return None


@dataclass
class Scheduler:
    """Binds pods to nodes; keeps the requests of the pods bound to each node."""

    nodes: dict[str, VirtualNode]
    scoring: ScoringStrategy = DEFAULT_SCORING
    ties: random.Random | None = None  # None: the first node by name among equal scores
    used: dict[str, dict[str, float]] = field(default_factory=dict)
    pending: list[Pod] = field(default_factory=list)
    _alloc: dict[str, dict[str, float]] = field(default_factory=dict)
    _images: dict[str, tuple[tuple[int, int], dict[str, int]]] = field(default_factory=dict)
    _live: list[VirtualNode] | None = None  # the nodes not removed, by name

    def nodes_changed(self) -> None:
        """A node joined or was removed."""
        self._live = None

    def free(self, name: str) -> dict[str, float]:
        alloc = self._alloc.get(name)
        if alloc is None:
            alloc = self._alloc[name] = allocatable(self.nodes[name])
        used = self.used.get(name, {})
        return {r: alloc[r] - used.get(r, 0.0) for r in RESOURCES}

    def node_images(self, node: VirtualNode) -> dict[str, int]:
        """`status.images` of a node, recomputed only when its store changed."""
        store = node.store
        fingerprint = (len(store.images), store.used)
        cached = self._images.get(node.name)
        if cached is None or cached[0] != fingerprint:
            cached = (fingerprint, node.top_images())
            self._images[node.name] = cached
        return cached[1]

    def choose(self, pod: Pod) -> str | None:
        """The node kube-scheduler would bind `pod` to now, or None."""
        if self._live is None:
            self._live = [node for _, node in sorted(self.nodes.items()) if not node.removed]
        live = self._live
        feasible: list[tuple[VirtualNode, dict[str, float]]] = []
        for node in live:  # (a removed node is never feasible)
            free = self.free(node.name)
            if filter_problem(pod, node, free) is None:
                feasible.append((node, free))
        if not feasible:
            return None
        images = pod.spec.images if pod.spec is not None else ()
        listed = {n.name: self.node_images(n) for n in live}
        spread = {
            image: sum(1 for held in listed.values() if image in held) / len(live)
            for image in images
        }
        best = -1.0
        equals: list[str] = []  # the nodes of the best score, by name
        for node, free in feasible:
            fit = resource_fit_score(self.scoring, free, self._alloc[node.name], pod.requests)
            score = fit + image_locality(images, listed.get(node.name, {}), spread)
            if score > best:
                best, equals = score, [node.name]
            elif score == best:
                equals.append(node.name)
        if self.ties is None or len(equals) == 1:
            return equals[0]
        return self.ties.choice(equals)

    def bind(self, pod: Pod, node: str) -> None:
        used = self.used.setdefault(node, {})
        for resource, amount in pod.requests.items():
            used[resource] = used.get(resource, 0.0) + amount
        pod.node = node

    def release(self, pod: Pod) -> None:
        used = self.used.get(pod.node)
        if used is None:
            return
        for resource, amount in pod.requests.items():
            used[resource] = used.get(resource, 0.0) - amount

    def fits_somewhere_new(self, pod: Pod, candidates: list[str]) -> bool:
        return any(
            name in self.nodes and filter_problem(pod, self.nodes[name], self.free(name)) is None
            for name in candidates
        )
