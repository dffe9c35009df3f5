"""Stage 6, startup taint: removed once a node's top target images are present."""

from __future__ import annotations

from prefetcher.model import TaintRemoval
from prefetcher.planning.state import PlanState


def plan_startup_taints(state: PlanState) -> None:
    """A removal for each Ready node with the startup taint whose top images are present."""
    key = state.config.startup_taint
    if not key:
        return
    for entry in state.targets.values():
        node = entry.node
        if not node.ready or not any(t.key == key for t in node.taints):
            continue
        top = entry.fitted[: state.config.startup_taint_images]
        if all(state.is_present(node.name, ref) for ref in top):
            why = f"top {len(top)} image(s) present" if top else "no eligible image to wait for"
            state.taint_removals.append(TaintRemoval(node.name, key, why))
