"""Which cluster changes need a pass now, and when a plan changes by itself."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from imagesync.cachedimage import planning_spec
from imagesync.names import COMPONENT_PULLER, LABEL_COMPONENT
from prefetcher import observe
from prefetcher.informer import Change
from prefetcher.model import Plan

# Triggers planned without the coalescing wait: a node that can pull now should not wait for
# the pass slot (they are rare next to pod changes, which make most passes).
PLANNED_AT_ONCE = frozenset({"node joined", "node ready"})


def _ready(obj: Mapping[str, Any] | None) -> bool:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _node_shape(obj: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What about a node changes a plan (heartbeats do not): allocatable too, since a device
    plugin that registers after the node is Ready makes it fit GPU images."""
    obj = obj or {}
    spec = obj.get("spec") or {}
    return (
        _ready(obj),
        bool(spec.get("unschedulable")),
        repr(spec.get("taints") or []),
        repr(sorted(((obj.get("metadata") or {}).get("labels") or {}).items())),
        repr(sorted(((obj.get("status") or {}).get("allocatable") or {}).items())),
    )


def node_trigger(change: Change) -> str | None:
    """Why a node change needs a pass now, or None (a heartbeat, an image list refresh)."""
    if change.new is None:
        return "node removed"
    if change.old is None:
        return "node joined"
    if _ready(change.new) and not _ready(change.old):
        return "node ready"
    if _node_shape(change.old) != _node_shape(change.new):
        return "node changed"
    return None


def image_trigger(change: Change) -> str | None:
    """A new, removed or re-specified CachedImage needs a pass now; a status update does not."""
    if change.new is None:
        return "image removed"
    if change.old is None:
        return "new image"
    if planning_spec(change.old.get("spec")) != planning_spec(change.new.get("spec")):
        return "image changed"
    return None


def pulling_on(node: str, pods: Iterable[Mapping[str, Any]]) -> bool:
    """Does one of our pullers (`pods`: our pods) still run on `node`? A workload pod that
    starts there may need it to yield at once, not at the next pass."""
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if (
            labels.get(LABEL_COMPONENT) == COMPONENT_PULLER
            and (pod.get("spec") or {}).get("nodeName") == node
            and (pod.get("status") or {}).get("phase", "Pending") in ("Pending", "Running")
        ):
            return True
    return False


def keeper_holds(pod: Mapping[str, Any], ours: Iterable[Mapping[str, Any]]) -> bool:
    """Does our keeper on the node a workload pod was bound to hold every image it still
    waits for? If not, the node's disk budget may have to give way to it now."""
    starting = observe.starting_pod(pod)
    if starting is None or not starting.images:
        return True
    held: set[str] = set()
    for obj in ours:
        keeper = observe.managed_pod(obj)
        if keeper is not None and keeper.role == "keeper" and keeper.node == starting.node:
            held.update(keeper.images)
    return held.issuperset(starting.images)


def wake_time(plan: Plan) -> float:
    """When `plan` says it would change by itself (epoch seconds), or infinity.

    A retry already due but held back (caps, quiet hours) is started by the pass that a
    freed slot triggers, not by spinning here: the planner only names future moments."""
    return plan.wake_at.timestamp() if plan.wake_at is not None else math.inf
