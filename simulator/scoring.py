"""NodeResourcesFit's score and its `scoringStrategy`, as kube-scheduler computes them: spread
pods over nodes (`LeastAllocated`, the default) or pack them onto the fewest (`MostAllocated`,
what GPU clusters configure so that whole nodes stay free for jobs that need all their GPUs).

In a scenario (the simulator's and the virtual evaluation's schedulers):

    scheduler:
      scoringStrategy:
        type: MostAllocated
        resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}, {name: nvidia.com/gpu, weight: 3}]

the same shape as the plugin's arguments in a KubeSchedulerConfiguration (default resources:
cpu and memory, weight 1 each). NodeResourcesFit and ImageLocality each weigh 1 in the total,
as in kube-scheduler's default profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LEAST_ALLOCATED, MOST_ALLOCATED = "LeastAllocated", "MostAllocated"
SCORING_TYPES = (LEAST_ALLOCATED, MOST_ALLOCATED)
DEFAULT_RESOURCES = (("cpu", 1), ("memory", 1))
# Resources every pod is scored on, requested or not; any other (an extended resource such as
# `nvidia.com/gpu`) counts only for a pod that requests it.
NATIVE_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
MAX_NODE_SCORE = 100.0


@dataclass(frozen=True, slots=True)
class ScoringStrategy:
    """`type` and the weighted resources it scores."""

    type: str = LEAST_ALLOCATED
    resources: tuple[tuple[str, int], ...] = DEFAULT_RESOURCES


DEFAULT_SCORING = ScoringStrategy()
# Bin packing as GPU clusters configure it: GPUs weigh three times cpu or memory.
GPU_BIN_PACKING = ScoringStrategy(MOST_ALLOCATED, (*DEFAULT_RESOURCES, ("nvidia.com/gpu", 3)))


def parse_scoring_strategy(raw: Mapping[str, Any] | None) -> ScoringStrategy:
    """A scenario's `scheduler.scoringStrategy` (None or empty: the default)."""
    if not raw:
        return DEFAULT_SCORING
    kind = str(raw.get("type", LEAST_ALLOCATED))
    if kind not in SCORING_TYPES:
        raise ValueError(f"scoringStrategy.type must be one of {', '.join(SCORING_TYPES)}")
    resources = tuple((str(r["name"]), int(r.get("weight", 1))) for r in raw.get("resources") or ())
    if any(weight < 1 for _, weight in resources):
        raise ValueError("scoringStrategy.resources: weights must be at least 1")
    return ScoringStrategy(kind, resources or DEFAULT_RESOURCES)


def resource_fit_score(
    strategy: ScoringStrategy,
    free: Mapping[str, float],
    allocatable: Mapping[str, float],
    requests: Mapping[str, float],
) -> float:
    """NodeResourcesFit's score (0 to 100) of a node for a pod that fits it: per resource, what
    would be requested once the pod is bound over allocatable (MostAllocated) or what would
    stay free over allocatable (LeastAllocated), averaged with the weights; a resource the
    node does not have, or an extended one the pod does not request, is left out."""
    total = weights = 0.0
    for name, weight in strategy.resources:
        capacity = allocatable.get(name, 0.0)
        asked = requests.get(name, 0.0)
        if capacity <= 0 or (not asked and name not in NATIVE_RESOURCES):
            continue
        left = max(free.get(name, 0.0) - asked, 0.0)  # what stays free once the pod is bound
        share = (capacity - left if strategy.type == MOST_ALLOCATED else left) / capacity
        total += share * weight
        weights += weight
    return MAX_NODE_SCORE * total / weights if weights else 0.0
