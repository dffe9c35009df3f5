"""Workload pods starting now go first: new pulls wait on their node and at their registries,
and a puller pulling another image on their node yields (is deleted) when they miss an image."""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from prefetcher.model import ManagedPod
from prefetcher.planning.state import PlanState

# A workload pod starting on a node holds back new pulls there for at most this long.
HOLD_BACK_MAX = 1200.0


class Starting(NamedTuple):
    """Workload pods starting now, whose pulls go first: on their node, and at the registries
    they pull from (a prefetch elsewhere would share that registry's bandwidth)."""

    by_node: dict[str, str]  # node → a pod starting there
    by_registry: dict[str, str]  # registry → a pod waiting for an image from it
    needs: dict[str, list[tuple[str, tuple[str, ...]]]]  # node → (pod, images it waits for)


def starting_pods(state: PlanState) -> Starting:
    """The workload pods starting now, while not stale."""
    by_node: dict[str, str] = {}
    by_registry: dict[str, str] = {}
    needs: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for pod in sorted(state.snapshot.starting, key=lambda p: p.pod):
        if pod.since is not None:
            until = pod.since + timedelta(seconds=HOLD_BACK_MAX)
            if state.now >= until:
                continue
            state.wake(until)
        by_node.setdefault(pod.node, pod.pod)
        for registry in pod.registries:
            by_registry.setdefault(registry, pod.pod)
        if pod.images:
            needs.setdefault(pod.node, []).append((pod.pod, pod.images))
    return Starting(by_node, by_registry, needs)


def on_node(state: PlanState, node: str, image: str) -> bool:
    """Is `image` on `node` as far as the planner can tell: pulled or held by our pods, or
    listed in the node's status (a hint, but enough not to interrupt a prefetch for it)?"""
    if state.is_present(node, image):
        return True
    target = state.targets.get(node)
    return target is not None and image in target.node.hinted_images


def yields_to(state: PlanState, starting: Starting, pod: ManagedPod, current: str) -> str:
    """The workload pod (namespace/name) starting on `pod`'s node that this puller, pulling
    `current`, must make way for: one that waits for another image missing on the node (the
    kubelet pulls one image at a time, so its pull would queue behind ours). "" for none."""
    for name, images in starting.needs.get(pod.node, ()):
        if current in images:
            continue  # it waits for the very image we pull: stopping would only delay it
        if any(not on_node(state, pod.node, image) for image in images):
            return name
    return ""
