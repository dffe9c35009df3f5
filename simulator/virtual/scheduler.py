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
from collections.abc import Hashable, Mapping
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
    problem = node_problem(pod, node)
    if problem is not None:
        return problem
    for resource, amount in pod.requests.items():
        if amount > 0 and amount > free.get(resource, 0.0) + 1e-9:
            return f"Insufficient {resource}"
    return None


def node_problem(pod: Pod, node: VirtualNode) -> str | None:
    """Why the node's state, taints or labels keep the pod out, or None."""
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
    return None


def shape_key(pod: Pod) -> Hashable:
    """What the node-state filters read of a pod (tolerations and nodeSelector), hashable:
    pods of one shape pass them on the same nodes."""
    spec = pod.spec
    if spec is None:
        return ()
    return (
        tuple(tuple(sorted(t.items())) for t in spec.tolerations),
        tuple(sorted(spec.node_selector.items())),
    )


@dataclass(eq=False, slots=True)
class NodeView:
    """What the scheduler derived from one node, kept until the node changes."""

    name: str
    node: VirtualNode
    alloc: dict[str, float]
    free: dict[str, float] | None = None  # None: a pod was bound or released since
    fit: dict[tuple[tuple[str, float], ...], float] = field(default_factory=dict)
    images_version: int = -1  # the store's version when `images` was last read
    fingerprint: tuple[int, int] = (-1, -1)  # its image count and bytes then
    images: dict[str, int] = field(default_factory=dict)  # `status.images` as last read


@dataclass
class Scheduler:
    """Binds pods to nodes; keeps the requests of the pods bound to each node.

    What it derives from a node is kept until that node changes: its free resources and
    NodeResourcesFit scores until a pod is bound to it or released from it, its
    `status.images` until its image store changes, the nodes each pod shape may go to (the
    filters that do not read resources) until a node joins, leaves or changes state
    (`nodes_changed`). Choices are those of checking and scoring every node anew."""

    nodes: dict[str, VirtualNode]
    scoring: ScoringStrategy = DEFAULT_SCORING
    ties: random.Random | None = None  # None: the first node by name among equal scores
    used: dict[str, dict[str, float]] = field(default_factory=dict)
    pending: list[Pod] = field(default_factory=list)
    _views: dict[str, NodeView] = field(default_factory=dict)
    _live: list[NodeView] | None = None  # the nodes not removed, by name
    _eligible: dict[Hashable, list[NodeView]] = field(default_factory=dict)

    def nodes_changed(self) -> None:
        """A node joined or was removed, turned Ready or NotReady, or was (un)cordoned."""
        self._live = None
        self._eligible.clear()

    def _view(self, name: str) -> NodeView:
        view = self._views.get(name)
        if view is None:
            node = self.nodes[name]
            view = self._views[name] = NodeView(name, node, allocatable(node))
        return view

    def free(self, name: str) -> dict[str, float]:
        """What is left of the node's allocatable (kept until a pod is bound or released
        there: not to be changed by the caller)."""
        view = self._view(name)
        free = view.free
        if free is None:
            alloc = view.alloc
            used = self.used.get(name, {})
            free = view.free = {r: alloc[r] - used.get(r, 0.0) for r in RESOURCES}
        return free

    def _resources_changed(self, name: str) -> None:
        view = self._view(name)
        view.free = None
        view.fit = {}

    def node_images(self, node: VirtualNode) -> dict[str, int]:
        """`status.images` of a node, read now: recomputed when its image count or bytes
        changed since the last read (a store unchanged since then is not looked at)."""
        view = self._view(node.name)
        store = node.store
        if view.images_version != store.version:
            view.images_version = store.version
            fingerprint = (len(store.images), store.used)
            if fingerprint != view.fingerprint:
                view.fingerprint = fingerprint
                view.images = node.top_images()
        return view.images

    def _live_views(self) -> list[NodeView]:
        if self._live is None:
            names = sorted(name for name, node in self.nodes.items() if not node.removed)
            self._live = [self._view(name) for name in names]
        return self._live

    def _candidates(self, pod: Pod) -> list[NodeView]:
        """The live nodes whose state, taints and labels let the pod in, by name."""
        key = shape_key(pod)
        views = self._eligible.get(key)
        if views is None:
            views = [v for v in self._live_views() if node_problem(pod, v.node) is None]
            self._eligible[key] = views
        return views

    def choose(self, pod: Pod) -> str | None:
        """The node kube-scheduler would bind `pod` to now, or None."""
        requests = pod.requests
        asked = [(r, amount) for r, amount in requests.items() if amount > 0]
        feasible: list[NodeView] = []
        for view in self._candidates(pod):
            free = view.free if view.free is not None else self.free(view.name)
            for resource, amount in asked:
                if amount > free.get(resource, 0.0) + 1e-9:
                    break
            else:
                feasible.append(view)
        if not feasible:
            return None
        live = self._live_views()
        for view in live:  # every node's `status.images` is read at each choice
            if view.images_version != view.node.store.version:
                self.node_images(view.node)
        images = pod.spec.images if pod.spec is not None else ()
        requested = tuple(requests.items())
        spread: dict[str, float] | None = None
        best = -1.0
        equals: list[str] = []  # the nodes of the best score, by name
        for view in feasible:
            score = view.fit.get(requested)
            if score is None:
                free = view.free if view.free is not None else self.free(view.name)
                score = resource_fit_score(self.scoring, free, view.alloc, requests)
                view.fit[requested] = score
            listed = view.images
            if any(image in listed for image in images):  # (else ImageLocality adds 0.0)
                if spread is None:
                    spread = {
                        image: sum(1 for v in live if image in v.images) / len(live)
                        for image in images
                    }
                score += image_locality(images, listed, spread)
            if score > best:
                best, equals = score, [view.name]
            elif score == best:
                equals.append(view.name)
        if self.ties is None or len(equals) == 1:
            return equals[0]
        return self.ties.choice(equals)

    def bind(self, pod: Pod, node: str) -> None:
        used = self.used.setdefault(node, {})
        for resource, amount in pod.requests.items():
            used[resource] = used.get(resource, 0.0) + amount
        self._resources_changed(node)
        pod.node = node

    def release(self, pod: Pod) -> None:
        used = self.used.get(pod.node)
        if used is None:
            return
        for resource, amount in pod.requests.items():
            used[resource] = used.get(resource, 0.0) - amount
        self._resources_changed(pod.node)

    def fits_somewhere_new(self, pod: Pod, candidates: list[str]) -> bool:
        return any(
            name in self.nodes and filter_problem(pod, self.nodes[name], self.free(name)) is None
            for name in candidates
        )
