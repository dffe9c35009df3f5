"""Stage 5, keepers: one per node for its present target images, replaced make-before-break."""

from __future__ import annotations

from datetime import timedelta

from prefetcher.model import ManagedPod
from prefetcher.planning.state import PlanState
from prefetcher.planning.targets import NodeTarget

# Longest a pulled image waits for the keeper while its node's puller pulls the rest.
KEEPER_BATCH_WAIT = 300.0


def plan_keepers(state: PlanState) -> None:
    """One keeper per node for present and target images, replaced make-before-break."""
    config = state.config
    by_node: dict[str, list[ManagedPod]] = {}
    for keeper in state.keepers:
        if keeper.node not in state.node_names:
            state.delete(keeper, "node no longer exists")
        elif keeper.phase in ("Failed", "Succeeded"):
            state.delete(keeper, f"keeper ended ({keeper.reason or keeper.phase})")
        elif not config.keeper_enabled:
            state.delete(keeper, "keepers are turned off")
        elif not keeper.deleting:
            by_node.setdefault(keeper.node, []).append(keeper)
    if not config.keeper_enabled:
        return
    names = {k.name for k in state.keepers}
    # Nodes still pulling: a puller flies there or starts now.
    busy = {pod.node for pod, _ in state.in_flight.values()} | {p.node for p in state.pulls}
    for entry in state.targets.values():
        if entry.node.ready:
            desired, name = state.keeper_for(entry)
            active = by_node.get(entry.node.name, [])
            _node_keeper(state, entry, desired, name, active, names, busy)


def _node_keeper(
    state: PlanState,
    entry: NodeTarget,
    desired: list[str],
    name: str,
    active: list[ManagedPod],
    names: set[str],
    busy: set[str],
) -> None:
    node = entry.node
    if not desired:
        for keeper in active:
            state.delete(keeper, "no cached image left to guard")
        return
    current = next((k for k in active if k.name == name), None) if active else None
    guarded: frozenset[str] = frozenset()
    if current is not None:
        guarded = state.running_images(current)
    elif node.name in busy and _defer_keeper(state, node.name, desired, active):
        return
    elif name not in names:  # (a namesake still terminating: wait for it)
        state.keeper_actions.append(
            state.keeper_action(node, name, desired, tuple(k.name for k in active))
        )
    waits = state.guard_waits
    for keeper in active:
        if keeper is not current:
            kept = state.running_images(keeper) & set(desired)
            if kept <= guarded:
                state.delete(keeper, f"replaced by {name}")
            else:
                waits[(name, frozenset(kept))] = None
    for images in state.unguarded.get(node.name, ()):
        waits[(name, images)] = None


def _defer_keeper(
    state: PlanState, node: str, desired: list[str], active: list[ManagedPod]
) -> bool:
    """Wait with a new keeper while the node is still pulling (a puller runs or starts now),
    so a node's pulls cost one keeper replacement every KEEPER_BATCH_WAIT, not one per
    image or per puller. Safe: every image the running keepers do not hold yet is
    held by its finished puller's container (pullers stay until a keeper holds their
    images), and no image waits longer than KEEPER_BATCH_WAIT. A keeper that lets images
    go is not deferred: the node's own pods may need their disk now."""
    wait = state.keeper_wait(node, desired, active)
    if not wait.deferrable:
        return False
    if wait.earliest is None and not wait.untimed:
        return True  # it adds no image
    start = state.now if wait.earliest is None else wait.earliest
    if wait.untimed:
        start = min(start, state.now)
    due = start + timedelta(seconds=KEEPER_BATCH_WAIT)
    if due <= state.now:
        return False
    state.wake(due)
    return True
