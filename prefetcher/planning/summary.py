"""Stage 8, summaries: per image (with CachedImage status patches), per node, cluster-wide."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from prefetcher.model import (
    ImageSummary,
    NodeSummary,
    Plan,
    PullKey,
    PullRecord,
    StatusUpdate,
    Summary,
    WantedImage,
)
from prefetcher.planning.images import MergedImage
from prefetcher.planning.state import PlanState
from prefetcher.planning.targets import NodeTarget
from prefetcher.pulloutcomes import PullOutcomes

LAST_ERROR_MAX = 512
WANTED_STATES = ("present", "pulling", "missing", "failed")
NOTHING_WANTED = (0, 0, 0, 0)


def status_and_images(state: PlanState) -> tuple[list[StatusUpdate], list[ImageSummary]]:
    """Status patches (only changed fields) and the per-image summary."""
    latest: dict[str, PullRecord] = {}
    for record in state.records.values():
        best = latest.get(record.image)
        if best is None or (record.last_failure, record.node) > (best.last_failure, best.node):
            latest[record.image] = record
    updates: list[StatusUpdate] = []
    summaries: list[ImageSummary] = []
    counts = state.counts
    for image in state.images:
        ref = image.image
        if image.wanted:  # by WANTED_STATES
            states = (
                counts[(ref, "present")],
                counts[(ref, "pulling")],
                counts[(ref, "missing")],
                counts[(ref, "failed")],
            )
        else:
            states = NOTHING_WANTED
        failure = latest.get(ref)
        last_error = ""
        if failure is not None:
            last_error = f"{failure.node}: {failure.reason}: {failure.message}"
            last_error = last_error[:LAST_ERROR_MAX]
        patches, summary = state.image_status(image, states, last_error, image_status)
        updates += patches
        summaries.append(summary)
    return updates, summaries


def image_status(
    image: MergedImage, states: tuple[int, ...], last_error: str
) -> tuple[tuple[StatusUpdate, ...], ImageSummary]:
    """One image's status patches and summary (`states`: its cells by WANTED_STATES)."""
    present, pulling, _, failed = states
    nodes_wanted = sum(states)
    updates = []
    for obj, score in zip(image.objects, image.scores, strict=True):
        patch = status_patch(obj, score, nodes_wanted, present, last_error)
        if patch:
            updates.append(StatusUpdate(obj.name, patch))
    summary = ImageSummary(
        name=image.primary.name,
        image=image.image,
        source=image.primary.source,
        score=image.score,
        wanted=image.wanted,
        nodes_wanted=nodes_wanted,
        nodes_present=present,
        nodes_pulling=pulling,
        nodes_failed=failed,
        last_error=last_error,
    )
    return tuple(updates), summary


def node_summaries(state: PlanState) -> list[NodeSummary]:
    return [node_summary(e, state.node_counts[e.node.name]) for e in state.targets.values()]


def node_summary(entry: NodeTarget, tally: Mapping[str, int]) -> NodeSummary:
    """One node's eligibility, budget and counts (`tally`: its cells by state)."""
    present, pulling, failed = tally["present"], tally["pulling"], tally["failed"]
    wanted_here = present + pulling + failed + tally["missing"]
    return NodeSummary(
        name=entry.node.name,
        eligible=entry.problem is None,
        why=entry.problem or "",
        urgent=entry.urgent_recent and present < wanted_here,
        budget=entry.budget,
        budget_used=entry.budget_used,
        budget_reason=entry.budget_reason,
        wanted=wanted_here,
        present=present,
        pulling=pulling,
        failed=failed,
    )


def result(state: PlanState, nodes: list[NodeSummary] | None = None) -> Plan:
    """The Plan of a state whose stages have all run (`nodes`: its node summaries, when
    already made)."""
    status_updates, image_summaries = status_and_images(state)
    totals = state.totals
    if totals is None:
        totals = Counter()
        for tally in state.node_counts.values():
            totals.update(tally)
    wanted_pairs = sum(totals[s] for s in WANTED_STATES)
    summary = Summary(
        nodes=len(state.nodes),
        images=len(state.wanted),
        wanted_pairs=wanted_pairs,
        present_pairs=totals["present"],
        pulling_pairs=totals["pulling"],
        failed_pairs=totals["failed"],
        missing_pairs=totals["missing"],
        ineligible_pairs=totals["ineligible"],
        coverage=totals["present"] / wanted_pairs if wanted_pairs else 1.0,
        pulls_started=len(state.pulls),
        keepers_created=len(state.keeper_actions),
        pods_deleted=len(state.deletions),
        taints_removed=len(state.taint_removals),
        status_updates=len(status_updates),
        budget_left_out=len(state.left_out),
        quiet_hours=state.quiet,
    )
    return Plan(
        now=state.now,
        pulls=tuple(state.pulls),
        keepers=tuple(state.keeper_actions),
        deletions=tuple(state.deletions),
        taint_removals=tuple(state.taint_removals),
        status_updates=tuple(status_updates),
        cells=state.cells,
        budget_left_out=tuple(state.left_out),
        outcomes=PullOutcomes(state.outcomes),
        pull_records=_sorted_records(state.records),
        pull_throughput=measured_throughput(state),
        images=tuple(image_summaries),
        nodes=tuple(node_summaries(state) if nodes is None else nodes),
        summary=summary,
        wake_at=state.wake_at,
        holding=frozenset(state.holding),
        guard_waits=tuple(state.guard_waits),
    )


def status_patch(
    obj: WantedImage, score: float, nodes_wanted: int, nodes_present: int, last_error: str
) -> dict[str, Any]:
    """The status fields whose stored value differs (a converged image gets an empty patch)."""
    reported = obj.reported
    patch: dict[str, Any] = {}
    if reported.score is None or abs(reported.score - score) > 0.0005:
        patch["score"] = score
    if reported.nodes_wanted != nodes_wanted:
        patch["nodesWanted"] = nodes_wanted
    if reported.nodes_present != nodes_present:
        patch["nodesPresent"] = nodes_present
    if reported.last_error != last_error:
        patch["lastError"] = last_error
    return patch


def _sorted_records(records: Mapping[PullKey, PullRecord]) -> dict[PullKey, PullRecord]:
    return {key: records[key] for key in sorted(records)}


def measured_throughput(state: PlanState) -> dict[str, float]:
    """Per registry, the median rate of the finished pullers seen this pass, else the last
    measured one."""
    out = dict(state.throughput)
    for registry, samples in state.throughput_samples.items():
        out[registry] = state.median_rate(samples)
    return dict(sorted(out.items()))
