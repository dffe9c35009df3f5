"""One planning step: from what is observed (Snapshot) to what to do (Plan), as a pure function.

    plan(snapshot, config) -> Plan

0. Demand: where each image is needed now and soon, from `Snapshot.demand` (workload
   templates, the pods running and waiting, rollouts; `planning.demand`).
1. Wanted: every CachedImage not released (`scoring.is_wanted`; a live template keeps a
   learned image, a rollout releases the image it dropped); objects naming the same
   image are merged (declared wins, highest score).
2. Target: for each node, the wanted images whose placement fits (`eligibility`; with
   `placement: demand`, and on a predicted node), taken
   in rank order while they fit the node's disk budget (`budget`: it gives way to the
   images of the node's own pods, running or bound there). Only nodes without a
   node problem (not Ready, cordoned, DiskPressure, not Linux) get pulls.
3. Present: keepers' running containers + puller containers that ran (`observe`).
4. Pulls: target - present - pulling - in backoff, ordered urgent first (a workload's
   need: a rollout, a CronJob's next run, pods waiting for capacity; then a node that
   joined or turned Ready within `urgent_window`, an image first seen that recently and
   in use), then by demand tier, then by score, then node and the node's own order of its
   equal images (a hash, so a fleet does not pull in lockstep). A puller takes up to `pull_batch_size`
   first-try images of one registry (a retry goes alone); each start must fit every cap
   (per node, per registry, per image, cluster-wide), counting pullers already running.
   In quiet hours only urgent pulls start; on a node where a workload pod is starting
   none do, nor at the registries it pulls from. A puller pulling another image on a node
   where a workload pod starts and misses an image yields: it is deleted, with no backoff,
   and its images are planned again once the pod started. A failed (node, image) waits
   min(pull_backoff_base * 2**(attempts-1), pull_backoff_max) before the next try.
5. Keepers: per node, the keeper for present & target (same set, same name). A changed
   set creates the new keeper first, once the node is done pulling (or KEEPER_BATCH_WAIT
   after the first image it adds was pulled); an old keeper is deleted only when every
   target image it guards is running in the new one (make-before-break).
6. Clean-up: finished pullers once keepers run every image they pulled (or those left
   the target), pods on nodes that no longer exist, pullers of images no longer wanted,
   ended keepers.
7. Startup taint: removed when the node's top `startup_taint_images` target images are
   present (or it has none).
8. CachedImage status (score, nodesWanted, nodesPresent, lastError): only fields that
   changed, so a converged cluster sees no writes.

The runtime calls it with a fresh Snapshot after watch events, on every sweep and at
`Plan.wake_at`, carries out the Plan, and keeps `Plan.pull_records` for the next call. The same Snapshot always
gives the same Plan. Each stage lives in its own module under `prefetcher.planning`;
`prefetcher.planning.incremental` runs them on what the previous pass computed, for the
passes between sweeps, and returns the same Plan.
"""

from __future__ import annotations

from imagesync.config import Config
from prefetcher import presence
from prefetcher.model import Plan, Snapshot
from prefetcher.planning.cells import fill_cells
from prefetcher.planning.demand import demand_index
from prefetcher.planning.images import merge_images
from prefetcher.planning.keepers import KEEPER_BATCH_WAIT, plan_keepers
from prefetcher.planning.pullers import STUCK_GRACE, read_pullers
from prefetcher.planning.pulls import choose_pulls
from prefetcher.planning.starting import HOLD_BACK_MAX
from prefetcher.planning.state import PlanState
from prefetcher.planning.summary import LAST_ERROR_MAX, result
from prefetcher.planning.taints import plan_startup_taints
from prefetcher.planning.targets import node_pod_images, plan_targets
from prefetcher.planning.timing import backoff_delay, in_quiet_hours, retry_at

__all__ = [
    "HOLD_BACK_MAX",
    "KEEPER_BATCH_WAIT",
    "LAST_ERROR_MAX",
    "STUCK_GRACE",
    "backoff_delay",
    "in_quiet_hours",
    "plan",
    "retry_at",
]


def plan(snapshot: Snapshot, config: Config) -> Plan:
    """Decide the pulls, keepers, deletions, taint removals and status writes for `snapshot`."""
    nodes = sorted({n.name: n for n in snapshot.nodes}.values(), key=lambda n: n.name)
    demand = demand_index(snapshot.demand, nodes, config, snapshot.now)
    images = merge_images(snapshot, config, demand)
    wanted = [i for i in images if i.wanted]
    pods = sorted(snapshot.pods, key=lambda p: (p.node, p.role, p.name, p.uid))
    present = presence.present_images(pods)
    pod_images = node_pod_images(snapshot, {i.image for i in wanted})
    state = PlanState(
        snapshot,
        config,
        nodes=nodes,
        images=images,
        targets=plan_targets(nodes, wanted, config, snapshot.now, demand, pod_images, present),
        pods=pods,
        present=present,
        demand=demand,
    )
    for moment in demand.release_at:
        state.wake(moment)
    run_stages(state)
    return result(state)


def run_stages(state: PlanState) -> None:
    """The stages after the targets, in order: each reads what the earlier ones decided."""
    read_pullers(state)
    choose_pulls(state)
    plan_keepers(state)
    plan_startup_taints(state)
    fill_cells(state)
