"""The prefetch report: a JSON-able dict built from a Plan, the one source of `/report` and `/`.

The JSON keeps camelCase keys like the Kubernetes API; its shape is documented in
docs/prefetcher.md ("The report"). Failures are also grouped: one image failing on a thousand
nodes for one reason is one group with the node list, which is what a person acts on.
`prefetcher.report_query` filters it, `prefetcher.report_page` renders it as HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from imagesync.cachedimage import format_time
from imagesync.config import Config
from prefetcher.cellgrid import Cell, rows_of
from prefetcher.learnlimits import (
    LEFT_OUT_REASONS,
    NAMESPACE_LIMIT,
    TOTAL_LIMIT,
    UNCONFIRMED,
    LearnedSelection,
)
from prefetcher.model import Plan


@dataclass(frozen=True)
class SweepInfo:
    """What the runtime did with the last plan: when, how long, and the outcome."""

    started: datetime
    seconds: float
    trigger: str = "sweep"  # sweep | node | image | pod | startup
    done: Mapping[str, int] = field(default_factory=dict)  # e.g. {"podsCreated": 3}
    errors: tuple[str, ...] = ()


def _cell(cell: Cell, shared: dict[Cell, dict[str, Any]]) -> dict[str, Any]:
    """The JSON of a cell. Equal cells share one dict (most of a large fleet's pairs are a
    plain `present`), which makes building the report several times cheaper; the report is
    read-only."""
    out = shared.get(cell)
    if out is not None:
        return out
    out = {"state": cell.state}
    if cell.reason:
        out["reason"] = cell.reason
    if cell.message:
        out["message"] = cell.message
    if cell.kind:
        out["kind"] = cell.kind
    if cell.attempts:
        out["attempts"] = cell.attempts
    if cell.retry_at is not None:
        out["retryAt"] = format_time(cell.retry_at)
    shared[cell] = out
    return out


def build_report(plan: Plan, sweep: SweepInfo | None = None) -> dict[str, Any]:
    """The report for `plan` (and what the runtime did with it, when known)."""
    summary = plan.summary
    per_node: dict[str, dict[str, Any]] = {n.name: {} for n in plan.nodes}
    per_image: dict[str, dict[str, Any]] = {i.image: {} for i in plan.images if i.wanted}
    failures = []
    shared: dict[Cell, dict[str, Any]] = {}
    for node, image, cell in rows_of(plan.cells):
        entry = _cell(cell, shared)
        per_node.setdefault(node, {})[image] = entry
        per_image.setdefault(image, {})[node] = entry
        if cell.state == "failed":
            failures.append({"node": node, "image": image, **entry})
    failures.sort(key=lambda f: (f["image"], f["node"]))

    report: dict[str, Any] = {
        "generatedAt": format_time(plan.now),
        "summary": {
            "coverage": round(summary.coverage, 4) if summary else 1.0,
            "nodes": summary.nodes if summary else 0,
            "images": summary.images if summary else 0,
            "wantedPairs": summary.wanted_pairs if summary else 0,
            "presentPairs": summary.present_pairs if summary else 0,
            "pullingPairs": summary.pulling_pairs if summary else 0,
            "missingPairs": summary.missing_pairs if summary else 0,
            "failedPairs": summary.failed_pairs if summary else 0,
            "ineligiblePairs": summary.ineligible_pairs if summary else 0,
            "budgetLeftOut": summary.budget_left_out if summary else 0,
            "quietHours": summary.quiet_hours if summary else False,
        },
        "lastSweep": sweep_section(plan, sweep),
        "failures": failures,
        "failureGroups": group_failures(failures),
        "nodes": [
            {
                "name": n.name,
                "eligible": n.eligible,
                "why": n.why,
                "urgent": n.urgent,
                "budgetBytes": n.budget,
                "budgetUsedBytes": n.budget_used,
                "budgetReason": n.budget_reason,
                "wanted": n.wanted,
                "present": n.present,
                "pulling": n.pulling,
                "failed": n.failed,
                "coverage": round(n.present / n.wanted, 4) if n.wanted else 1.0,
                "images": per_node.get(n.name, {}),
            }
            for n in plan.nodes
        ],
        "images": [
            {
                "name": i.name,
                "image": i.image,
                "source": i.source,
                "score": i.score,
                "wanted": i.wanted,
                "nodesWanted": i.nodes_wanted,
                "nodesPresent": i.nodes_present,
                "nodesPulling": i.nodes_pulling,
                "nodesFailed": i.nodes_failed,
                "lastError": i.last_error,
                "nodes": per_image.get(i.image, {}),
            }
            for i in plan.images
        ],
        "budgetLeftOut": [
            {
                "node": b.node,
                "image": b.image,
                "sizeBytes": b.size,
                "score": b.score,
                "why": b.why,
            }
            for b in plan.budget_left_out
        ],
        "pullsStarted": [
            {
                "node": p.node,
                "images": list(p.images),
                "pod": p.pod_name,
                "why": p.why,
                "urgent": p.urgent,
                "attempt": p.attempt,
                "sizeBytes": p.size,
                "deadlineSeconds": p.deadline_seconds,
            }
            for p in plan.pulls
        ],
    }
    return report


LEFT_OUT_SHOWN = 20


def learning_section(selection: LearnedSelection, config: Config) -> dict[str, Any]:
    """`report["learning"]`: learned images left out, and a line when a bound bites."""
    counts = {reason: selection.count(reason) for reason in LEFT_OUT_REASONS}
    lines = []
    if counts[NAMESPACE_LIMIT]:
        lines.append(
            f"{counts[NAMESPACE_LIMIT]} learned image(s) not prefetched: namespace(s) "
            f"{', '.join(selection.full_namespaces)} reached maxLearnedImagesPerNamespace "
            f"({config.max_learned_images_per_namespace}); the best-scored images are kept"
        )
    if counts[TOTAL_LIMIT]:
        lines.append(
            f"{counts[TOTAL_LIMIT]} learned image(s) not prefetched: the cluster reached "
            f"maxLearnedImages ({config.max_learned_images}); the best-scored images are kept"
        )
    return {
        "maxLearnedImages": config.max_learned_images,
        "maxLearnedImagesPerNamespace": config.max_learned_images_per_namespace,
        "unconfirmed": counts[UNCONFIRMED],
        "overNamespaceLimit": counts[NAMESPACE_LIMIT],
        "overTotalLimit": counts[TOTAL_LIMIT],
        "fullNamespaces": list(selection.full_namespaces),
        "leftOut": {
            reason: list(selection.left_out.get(reason, ())[:LEFT_OUT_SHOWN])
            for reason in LEFT_OUT_REASONS
        },
        "boundReached": lines,
    }


def sweep_section(plan: Plan, sweep: SweepInfo | None) -> dict[str, Any]:
    """`report["lastSweep"]`: what the plan asked for and what the runtime did with it."""
    out: dict[str, Any] = {
        "at": format_time(sweep.started if sweep else plan.now),
        "seconds": round(sweep.seconds, 3) if sweep else None,
        "trigger": sweep.trigger if sweep else None,
        "planned": {
            "pullsStarted": len(plan.pulls),
            "keepersCreated": len(plan.keepers),
            "podsDeleted": len(plan.deletions),
            "taintsRemoved": len(plan.taint_removals),
            "statusUpdates": len(plan.status_updates),
        },
        "done": dict(sweep.done) if sweep else {},
        "errors": list(sweep.errors) if sweep else [],
    }
    return out


def group_failures(failures: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Failed pairs grouped by (image, kind, reason), the largest group first.

    Each group holds the count and names of its nodes, the message of its first node, the
    most attempts any node made and the earliest next try.
    """
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for failure in failures:
        key = (failure["image"], failure.get("kind", ""), failure.get("reason", ""))
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "image": key[0],
                "kind": key[1],
                "reason": key[2],
                "message": failure.get("message", ""),
                "nodeCount": 0,
                "nodes": [],
                "attempts": 0,
                "retryAt": None,
            }
        group["nodeCount"] += 1
        group["nodes"].append(failure["node"])
        group["attempts"] = max(group["attempts"], failure.get("attempts", 0))
        retry_at = failure.get("retryAt")
        if retry_at and (group["retryAt"] is None or retry_at < group["retryAt"]):
            group["retryAt"] = retry_at  # RFC 3339 UTC strings sort in time order
    return sorted(groups.values(), key=lambda g: (-g["nodeCount"], g["image"], g["kind"]))
