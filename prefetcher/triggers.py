"""Which cluster changes need a pass now, and when a plan changes by itself.

Most changes are triggers. Two frequent ones are not, unless the last plan waits for them
(`Plan.holding`, `Plan.guard_waits`): a workload pod starting that held nothing back, and a
keeper's container coming up that completes no guard a deletion waits for. Either would
give the plan it had (only the report's counts lag until the next pass); on a busy cluster
they were more than half of all passes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from imagesync.cachedimage import planning_spec
from imagesync.names import COMPONENT_KEEPER, COMPONENT_PULLER, LABEL_COMPONENT
from prefetcher import observe, presence
from prefetcher.informer import Change
from prefetcher.model import ContainerObservation, ManagedPod, Plan

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


def started_trigger(pod: str, plan: Plan | None) -> str | None:
    """Why a workload pod (namespace/name) that started, or went, while starting needs a
    pass: the last plan held a pull back for it (`Plan.holding`). Another's start changes
    no plan."""
    return "workload pod started" if plan is None or pod in plan.holding else None


def _not_running(container: ContainerObservation) -> tuple[str, str, str, str]:
    return (container.name, container.image, container.state, container.reason)


def keeper_came_up(old: ManagedPod, new: ManagedPod) -> bool:
    """Did only containers of a keeper come up (start running, or its init container
    complete), with nothing else about the pod changed?"""
    if new.role != "keeper" or (old.uid, old.phase, old.reason, old.deleting, old.images) != (
        new.uid,
        new.phase,
        new.reason,
        new.deleting,
        new.images,
    ):
        return False
    before = {_not_running(c) for c in old.containers if c.state != "running"}
    return all(
        c.state == "running"
        or _not_running(c) in before
        or (c.init and c.state == "terminated" and c.exit_code == 0)
        for c in new.containers
    ) and presence.keeper_running_images(old) <= presence.keeper_running_images(new)


def guard_met(plan: Plan, keeper: ManagedPod) -> bool:
    """Does `keeper` now run every image of one of `plan`'s guard waits?"""
    running = presence.keeper_running_images(keeper)
    return any(name == keeper.name and images <= running for name, images in plan.guard_waits)


def own_pod_trigger(
    old: ManagedPod | None, new: ManagedPod | None, plan: Plan | None
) -> str | None:
    """Why a change of one of our pods needs a pass, or None: a keeper whose containers
    only came up needs one only once it runs the images a deletion of the last plan waits
    for."""
    if plan is None or old is None or new is None or not keeper_came_up(old, new):
        return "pod changed"
    return "keeper holds the images" if guard_met(plan, new) else None


def own_pod_change(change: Change, plan: Plan | None) -> str | None:
    """`own_pod_trigger` of an informer change (only keepers are read)."""
    if change.old is None or change.new is None:
        return "pod changed"
    labels = (change.new.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_COMPONENT) != COMPONENT_KEEPER:
        return "pod changed"
    return own_pod_trigger(observe.managed_pod(change.old), observe.managed_pod(change.new), plan)


def missed_while_planning(
    plan: Plan, starting: Callable[[str], object], ours: Iterable[Mapping[str, Any]]
) -> str | None:
    """A change the plan waits for that came while it was made (its snapshot did not see
    it, and the check against the previous plan let it pass): a pod it holds a pull back
    for no longer starting (`starting(key)` is None), or a keeper running a guard's images."""
    if any(starting(pod) is None for pod in plan.holding):
        return "workload pod started"
    if plan.guard_waits:
        names = {name for name, _ in plan.guard_waits}
        for obj in ours:
            if str((obj.get("metadata") or {}).get("name") or "") in names:
                keeper = observe.managed_pod(obj)
                if keeper is not None and guard_met(plan, keeper):
                    return "keeper holds the images"
    return None


def wake_time(plan: Plan) -> float:
    """When `plan` says it would change by itself (epoch seconds), or infinity.

    A retry already due but held back (caps, quiet hours) is started by the pass that a
    freed slot triggers, not by spinning here: the planner only names future moments."""
    return plan.wake_at.timestamp() if plan.wake_at is not None else math.inf
