"""Stage 2, targets: per node, the wanted images whose placement fits, within its disk budget
(which gives way to the images of the node's own pods)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from imagesync.config import Config
from prefetcher import budget as budgets
from prefetcher import eligibility
from prefetcher.model import NodeInfo, Snapshot
from prefetcher.planning.demand import DemandIndex, demand_nodes
from prefetcher.planning.images import MergedImage, placement, recent

NOT_PREDICTED = "placement Demand: not where its pods are predicted to run"
NONE: frozenset[str] = frozenset()


class PodImages(NamedTuple):
    """The wanted images a node's disk budget gives way to: those of its pods now, and those
    its pods used within budgetHold and no longer use (`every`: both)."""

    using: frozenset[str] = NONE
    used: frozenset[str] = NONE
    every: frozenset[str] = NONE


NO_POD_IMAGES = PodImages()


def pod_images_of(using: frozenset[str], used: frozenset[str] = NONE) -> PodImages:
    """The node's pods' images, `used` lately besides those `using` now."""
    if not used:
        return PodImages(using, NONE, using)
    return PodImages(using, used - using, using | used)


@dataclass
class NodeTarget:
    """What one node should hold, and why it holds nothing more."""

    node: NodeInfo
    problem: str | None
    urgent_recent: bool
    budget: int | None = None
    budget_used: int = 0
    fitted: list[str] = field(default_factory=list)  # rank order
    not_placed: dict[str, str] = field(default_factory=dict)  # image -> why
    left_out: dict[str, str] = field(default_factory=dict)  # image -> why (budget)
    fitted_set: frozenset[str] = frozenset()
    budget_reason: str = ""
    room: budgets.NodeRoom | None = None
    budget_alone: int = 0  # bytes of fitted images the node's pods do not use
    # The inputs of the budget beside the node and the images: the wanted images the node's
    # pods use (or used lately), and the images present there when that decided what fits
    # (else None).
    pod_images: PodImages = NO_POD_IMAGES
    held: frozenset[str] | None = None


def node_target(
    node: NodeInfo,
    wanted: Sequence[MergedImage],
    managed: Collection[str],
    config: Config,
    now: datetime,
    limited: Mapping[str, frozenset[str]] | None = None,
    placements: dict[str, str | None] | None = None,
    pod_images: PodImages = NO_POD_IMAGES,
    held: frozenset[str] = NONE,
) -> NodeTarget:
    """The target of `node` for the wanted images in rank order (`managed`: their refs;
    `limited`: the nodes images placed by demand are limited to; `pod_images`: the wanted
    images its own pods use or used lately; `held`: the images present there). An image
    the pods used lately and no longer use keeps its room while the keeper does not hold
    it, and is an image like any other while it does (it counts once either way).
    `placements` (placement key → why not, None: fits) is filled as the images are placed."""
    entry = NodeTarget(
        node=node,
        problem=eligibility.node_problem(node, config),
        urgent_recent=recent(node.ready_since or node.created, now, config.urgent_window),
    )
    items: list[budgets.BudgetItem] = []
    seen = {} if placements is None else placements
    hinted = node.hinted_images
    pods_bytes = lately = 0
    using, used = pod_images.using, pod_images.used
    reserved: dict[str, int] = {}  # used lately, not held: bytes kept for them
    for image in wanted:
        if using and image.image in using:
            pods_bytes += hinted.get(image.image) or image.size
        elif used and image.image in used and image.image not in held:
            reserved[image.image] = hinted.get(image.image) or image.size
            pods_bytes += reserved[image.image]
            lately += 1
        key = image.placement_key
        if key in seen:
            why = seen[key]
        else:
            why = seen[key] = placement(image, node, config)
        ref = image.image
        if why is None and limited and ref in limited and node.name not in limited[ref]:
            why = NOT_PREDICTED
        if why is not None:
            entry.not_placed[ref] = why
            continue
        items.append(budgets.BudgetItem(ref, hinted.get(ref) or image.size, image.score))
    room = budgets.node_room(node, config, managed, pods_bytes, len(using), lately)
    result = budgets.fit(room, items, using, held)
    if reserved:
        result = _stays_once_pulled(
            node, config, managed, items, using, held, reserved, room, result
        )
    entry.budget, entry.budget_used = result.budget, result.used
    entry.budget_reason, entry.room, entry.budget_alone = result.reason, room, result.alone
    entry.pod_images = pod_images
    entry.held = held if result.held_matters or used else None
    entry.fitted = list(result.fitted)
    entry.fitted_set = frozenset(result.fitted)
    entry.left_out = {item.image: why for item, why in result.left_out}
    return entry


def _stays_once_pulled(
    node: NodeInfo,
    config: Config,
    managed: Collection[str],
    items: list[budgets.BudgetItem],
    using: frozenset[str],
    held: frozenset[str],
    reserved: Mapping[str, int],
    room: budgets.NodeRoom | None,
    result: budgets.BudgetResult,
) -> budgets.BudgetResult:
    """`result` (what fits in `room`), without the images used lately (`reserved`: the
    bytes kept for them) that it would pull back but leave out once held (an image like any
    other then, its room no longer kept): else each pass would pull one, leave it out, let
    the keeper drop it, and pull it again."""
    if room is None:
        return result
    dropped: set[str] = set()
    while back := [ref for ref in result.fitted if ref in reserved]:
        freed = sum(reserved[ref] for ref in back)
        as_held = budgets.node_room(
            node, config, managed, room.pods - freed, room.pod_images, room.lately - len(back)
        )
        kept = [item for item in items if item.image not in dropped]
        pulled = budgets.fit(as_held, kept, using, held | frozenset(back))
        out = {ref for ref in back if ref not in pulled.fitted}
        if not out:
            break
        dropped |= out
        result = budgets.fit(room, [item for item in kept if item.image not in out], using, held)
    if not dropped:
        return result
    why = "disk budget: its room is kept (used within budgetHold), but once pulled it would not fit"
    left = tuple((item, why) for item in items if item.image in dropped)
    return dataclasses.replace(result, left_out=result.left_out + left)


def plan_targets(
    nodes: list[NodeInfo],
    wanted: list[MergedImage],
    config: Config,
    now: datetime,
    demand: DemandIndex,
    pod_images: Mapping[str, PodImages],
    present: Mapping[str, frozenset[str]],
) -> dict[str, NodeTarget]:
    """Every node's target, by node name (`pod_images`: the wanted images each node's pods
    use, `present`: the images present on each)."""
    managed = {i.image for i in wanted}
    limited = limited_nodes(nodes, wanted, config, demand)
    return {
        node.name: node_target(
            node,
            wanted,
            managed,
            config,
            now,
            limited,
            pod_images=pod_images.get(node.name, NO_POD_IMAGES),
            held=present.get(node.name, NONE),
        )
        for node in nodes
    }


def node_pod_images(snapshot: Snapshot, managed: Collection[str]) -> dict[str, PodImages]:
    """Per node, the wanted images of the workload pods running on it or bound to it (their
    bytes are on its disk, or about to land), and of those that used it within budgetHold
    (the kubelet keeps them for the next such pod): its disk budget gives way to them."""
    found: dict[str, set[str]] = {}
    for pod in snapshot.demand.running:
        for image in pod.images:
            if image in managed:
                found.setdefault(pod.node, set()).add(image)
    for starting in snapshot.starting:
        for image in starting.images:
            if image in managed:
                found.setdefault(starting.node, set()).add(image)
    out = {node: pod_images_of(frozenset(images)) for node, images in found.items()}
    for node, images in snapshot.demand.pods_used.items():
        used = frozenset(image for image in images if image in managed)
        if used:
            out[node] = pod_images_of(out.get(node, NO_POD_IMAGES).using, used)
    return out


def limited_nodes(
    nodes: list[NodeInfo], wanted: list[MergedImage], config: Config, demand: DemandIndex
) -> dict[str, frozenset[str]]:
    """For each image placed by demand, the eligible nodes it is limited to."""
    usable = [n for n in nodes if eligibility.node_problem(n, config) is None]
    out: dict[str, frozenset[str]] = {}
    for image in wanted:
        if image.by_demand:
            eligible = [n.name for n in usable if placement(image, n, config) is None]
            chosen = demand_nodes(demand, image.image, eligible)
            if chosen is not None:
                out[image.image] = chosen
    return out
