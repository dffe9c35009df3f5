"""Stage 2, targets: per node, the wanted images whose placement fits, within its disk budget."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from imagesync.config import Config
from prefetcher import budget as budgets
from prefetcher import eligibility
from prefetcher.model import NodeInfo
from prefetcher.planning.demand import DemandIndex, demand_nodes
from prefetcher.planning.images import MergedImage, placement, recent

NOT_PREDICTED = "placement Demand: not where its pods are predicted to run"


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


def node_target(
    node: NodeInfo,
    wanted: Sequence[MergedImage],
    managed: Collection[str],
    config: Config,
    now: datetime,
    limited: Mapping[str, frozenset[str]] | None = None,
    placements: dict[str, str | None] | None = None,
) -> NodeTarget:
    """The target of `node` for the wanted images in rank order (`managed`: their refs;
    `limited`: the nodes images placed by demand are limited to). `placements` (placement
    key → why not, None: fits) is filled as the images are placed."""
    entry = NodeTarget(
        node=node,
        problem=eligibility.node_problem(node, config),
        urgent_recent=recent(node.ready_since or node.created, now, config.urgent_window),
    )
    items: list[budgets.BudgetItem] = []
    seen = {} if placements is None else placements
    hinted = node.hinted_images
    for image in wanted:
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
    result = budgets.fit(budgets.node_budget(node, config, managed), items)
    entry.budget, entry.budget_used = result.budget, result.used
    entry.fitted = list(result.fitted)
    entry.fitted_set = frozenset(result.fitted)
    entry.left_out = {item.image: why for item, why in result.left_out}
    return entry


def plan_targets(
    nodes: list[NodeInfo],
    wanted: list[MergedImage],
    config: Config,
    now: datetime,
    demand: DemandIndex,
) -> dict[str, NodeTarget]:
    """Every node's target, by node name."""
    managed = {i.image for i in wanted}
    limited = limited_nodes(nodes, wanted, config, demand)
    return {node.name: node_target(node, wanted, managed, config, now, limited) for node in nodes}


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
