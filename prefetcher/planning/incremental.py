"""Planning in proportion to what changed: each pass reuses the previous pass's per-node and
per-image work wherever its inputs are the same, and returns the Plan `plan()` would.

What is kept between passes, and what makes it stale:

- per image: the merged facts of its CachedImages (same objects, same size hint, same UTC
  day) — a new, re-specified or re-scored image is merged again; the merged image itself
  while its demand holds and no retention or urgent-window moment passed; its status
  patches and summary while its counts are the same;
- per pod: a keeper's running images, a puller's results (same object); what a finished
  puller gives each pass (outcomes, pull times, throughput samples) while its images keep
  their sizes;
- per node: its target (placement and disk budget), the keeper it should run, the images
  it misses, and its report cells with their counts. A node that joined or changed is
  planned from scratch; an image added, removed or re-ranked is patched into every node
  (its cells inserted or removed in place) unless the node's disk budget leaves images
  out and the change touches an image it places; a node's cells are rebuilt only for the images whose inputs changed there
  (present, pulling, started, failed, waiting) or whose place in its target moved;
- per node also: its placements (while labels, taints, arch, GPUs and allocatable are the
  same), its pool, its share of the image size hints.

The stages that decide writes (pullers, pulls, keepers, taints) run every pass over the
remembered per-node results, so their cost follows the pods and the missing images, not
nodes x images. `full()` forgets everything first but what a pod object alone decides (a
puller is read once, not at every sweep): the controller runs it at every sweep.
What is kept per image is `imagebook.ImageBook`; per pod, `podbook.PodBook`; per node,
`memo.NodeMemo`; the cells and their counts, `cellbook.CellBook`; targets patched and the
image lists they share, `targetbook.TargetBook`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from operator import is_

from imagesync.config import Config
from prefetcher import eligibility, presence
from prefetcher.model import (
    KeeperAction,
    ManagedPod,
    NodeInfo,
    NodeSummary,
    Plan,
    Snapshot,
)
from prefetcher.planning.cellbook import CellBook
from prefetcher.planning.demand import DemandIndex, DemandMemo, demand_index, demand_nodes
from prefetcher.planning.imagebook import ImageBook
from prefetcher.planning.images import MergedImage, placement, recent
from prefetcher.planning.keepers import plan_keepers
from prefetcher.planning.memo import (
    EMPTY,
    ImageEdit,
    NodeMemo,
    same_cells,
    same_placement,
    with_scores,
)
from prefetcher.planning.podbook import PodBook
from prefetcher.planning.pullers import Finished, read_pullers
from prefetcher.planning.pulls import choose_pulls
from prefetcher.planning.reading import PullerReading
from prefetcher.planning.state import (
    ImageStatus,
    KeeperWait,
    MakeImageStatus,
    PlanState,
    ReadFinished,
)
from prefetcher.planning.summary import node_summary, result
from prefetcher.planning.taints import plan_startup_taints
from prefetcher.planning.targetbook import TargetBook
from prefetcher.planning.targets import (
    NO_POD_IMAGES,
    NodeTarget,
    PodImages,
    node_pod_images,
)


class _MemoState(PlanState):
    """A PlanState whose pod and per-node answers come from the planner's memory."""

    def __init__(
        self,
        planner: IncrementalPlanner,
        snapshot: Snapshot,
        *,
        nodes: list[NodeInfo],
        images: list[MergedImage],
        targets: dict[str, NodeTarget],
        pods: list[ManagedPod],
        present: Mapping[str, frozenset[str]],
        demand: DemandIndex,
    ) -> None:
        super().__init__(
            snapshot,
            planner.config,
            nodes=nodes,
            images=images,
            targets=targets,
            pods=pods,
            present=present,
            demand=demand,
        )
        self._planner = planner

    def running_images(self, pod: ManagedPod) -> frozenset[str]:
        return self._planner.pods.pod_facts(pod)[0]

    def puller_results(self, pod: ManagedPod) -> Mapping[str, presence.PullResult]:
        return self._planner.pods.pod_facts(pod)[1]

    def puller_reading(self, pod: ManagedPod) -> PullerReading:
        return self._planner.pods.reading(pod)

    def finished_puller(self, pod: ManagedPod, read: ReadFinished) -> Finished | None:
        return self._planner.pods.finished_puller(pod, self, read)

    def image_status(
        self, image: MergedImage, states: tuple[int, ...], last_error: str, make: MakeImageStatus
    ) -> ImageStatus:
        return self._planner.images.image_status(image, states, last_error, make)

    def keeper_for(self, entry: NodeTarget) -> tuple[list[str], str]:
        return self._planner.memo[entry.node.name].keeper

    def missing(self, entry: NodeTarget) -> list[str]:
        return self._planner.memo[entry.node.name].missing

    def keeper_action(
        self, node: NodeInfo, name: str, desired: list[str], replaces: tuple[str, ...]
    ) -> KeeperAction:
        return self._planner.pods.keeper_action(self, node, name, desired, replaces)

    def flight_counts(self) -> tuple[Counter[str], Counter[str]]:
        return self._planner.pods.flight_counts(self.in_flight)

    def keeper_wait(
        self, node: str, desired: list[str], active: Sequence[ManagedPod]
    ) -> KeeperWait:
        return self._planner.pods.keeper_wait(self, node, desired, active)

    def median_rate(self, rates: Sequence[tuple[float, ...]]) -> float:
        return self._planner.pods.median_rate(rates, super().median_rate)


class IncrementalPlanner:
    """`plan(snapshot)` equals `prefetcher.planner.plan(snapshot, config)`, computed from
    the previous pass's results where they still hold. One caller at a time."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.memo: dict[str, NodeMemo] = {}
        self._sources: dict[str, tuple[str, ...]] = {}  # image → sources that count (config's)
        self.pods = PodBook()
        self._forget()

    def _forget(self) -> None:
        """Forget every result but what pod objects alone decide (`self.pods`)."""
        self.memo = {}
        self.images = ImageBook(self.config, self._sources)
        self._pod_images_hit: (
            tuple[tuple[object, object, object, object], Mapping[str, PodImages]] | None
        ) = None
        self._demand_memo = DemandMemo()
        self._fresh_placements: dict[str, dict[str, str | None]] = {}  # this pass's, by node
        # node → the image sets its pods hold, and their union (last pass's)
        self._present_parts: dict[str, tuple[list[frozenset[str]], frozenset[str]]] = {}
        self.cellbook = CellBook()
        self.book = TargetBook(self.config)

    def full(self, snapshot: Snapshot) -> Plan:
        """Forget every remembered result and plan from scratch (but for what a pod object
        alone decides)."""
        self._forget()
        return self.plan(snapshot)

    def plan(self, snapshot: Snapshot) -> Plan:
        """The plan of `snapshot`, reusing what the previous pass computed."""
        try:
            return self._plan(snapshot)
        except BaseException:
            self.pods = PodBook()  # half-updated memory must not shape the next pass
            self._forget()
            raise

    def _plan(self, snapshot: Snapshot) -> Plan:
        config, now = self.config, snapshot.now
        nodes = sorted({n.name: n for n in snapshot.nodes}.values(), key=lambda n: n.name)
        demand = demand_index(snapshot.demand, nodes, config, now, self._demand_memo)
        images = self.images.merge(snapshot, nodes, demand)
        self.pods.new_pass(images, len(snapshot.pods))
        wanted = [i for i in images if i.wanted]
        edit = self.images.edit(wanted, self._limited(nodes, wanted, demand))
        self.book.new_pass(len(nodes))
        ordered = sorted(snapshot.pods, key=lambda p: (p.node, p.role, p.name, p.uid))
        present = self._present(ordered)
        pod_images = self._pod_images(snapshot, edit)
        targets = self._targets(nodes, wanted, edit, present, pod_images, snapshot.now)
        state = _MemoState(
            self,
            snapshot,
            nodes=nodes,
            images=images,
            targets=targets,
            pods=ordered,
            present=present,
            demand=demand,
        )
        for moment in demand.release_at:
            state.wake(moment)
        read_pullers(state)
        choose_pulls(state)
        plan_keepers(state)
        plan_startup_taints(state)
        self.cellbook.fill(self.memo, state, edit)
        made = result(state, [self._node_summary(memo) for memo in self.memo.values()])
        self.pods.end_pass()
        self.images.end_pass()
        return made

    # --- placements -----------------------------------------------------------------------

    def _limited(
        self, nodes: list[NodeInfo], wanted: list[MergedImage], demand: DemandIndex
    ) -> dict[str, frozenset[str]]:
        """limited_nodes(): the eligible nodes of each placement key found once, from the
        placements the nodes' memos hold."""
        by_demand = [i for i in wanted if i.by_demand]
        if not by_demand:
            return {}
        config = self.config
        usable = [n for n in nodes if eligibility.node_problem(n, config) is None]
        known = [self._placements(node) for node in usable]
        eligible_by_key: dict[str, list[str]] = {}
        out: dict[str, frozenset[str]] = {}
        for image in by_demand:
            key = image.placement_key
            eligible = eligible_by_key.get(key)
            if eligible is None:
                eligible = eligible_by_key[key] = []
                for node, placements in zip(usable, known, strict=True):
                    if key not in placements:
                        placements[key] = placement(image, node, config)
                    if placements[key] is None:
                        eligible.append(node.name)
            chosen = demand_nodes(demand, image.image, eligible)
            if chosen is not None:
                out[image.image] = chosen
        return out

    def _placements(self, node: NodeInfo) -> dict[str, str | None]:
        """Where the node's memo keeps its placements (placement key → why not), when they
        hold for `node`; else a new dict, which the node's memo takes this pass."""
        memo = self.memo.get(node.name)
        if memo is not None and (memo.node is node or same_placement(memo.node, node)):
            return memo.placements
        return self._fresh_placements.setdefault(node.name, {})

    # --- pods -----------------------------------------------------------------------------

    def _present(self, ordered: list[ManagedPod]) -> dict[str, frozenset[str]]:
        """presence.present_images(), sharing one pod's set when a node has only that, and the
        last pass's set when a node's pods hold the same sets."""
        parts: dict[str, list[frozenset[str]]] = {}
        for pod in ordered:
            running, _, pulled = self.pods.pod_facts(pod)
            images = running if pod.role == "keeper" else pulled
            if images:
                parts.setdefault(pod.node, []).append(images)
        known, self._present_parts = self._present_parts, {}
        present: dict[str, frozenset[str]] = {}
        for node, sets in parts.items():
            hit = known.get(node)
            if hit is None or len(hit[0]) != len(sets) or not all(map(is_, hit[0], sets)):
                union = sets[0] if len(sets) == 1 else frozenset().union(*sets)
                hit = (sets, union)
            self._present_parts[node] = hit
            present[node] = hit[1]
        return present

    # --- targets --------------------------------------------------------------------------

    def _pod_images(self, snapshot: Snapshot, edit: ImageEdit) -> Mapping[str, PodImages]:
        """node_pod_images(), the last pass's while the running pods (the same object), the
        starting ones, the images the pods used lately and the wanted images are the same."""
        demand = snapshot.demand
        key = (demand.running, snapshot.starting, edit.position, demand.pods_used)
        hit = self._pod_images_hit
        if (
            hit is None
            or hit[0][0] is not key[0]
            or hit[0][2] is not key[2]
            or hit[0][1] != key[1]
            or hit[0][3] != key[3]
        ):
            hit = self._pod_images_hit = (key, node_pod_images(snapshot, edit.position))
        return hit[1]

    def _targets(
        self,
        nodes: list[NodeInfo],
        wanted: list[MergedImage],
        edit: ImageEdit,
        present: Mapping[str, frozenset[str]],
        pod_images: Mapping[str, PodImages],
        now: datetime,
    ) -> dict[str, NodeTarget]:
        """Every node's target: kept, patched for the images that changed, or planned anew
        (also when its pods' images changed, or the images present where that decided what
        fits); with the keeper it should run and the images it misses."""
        config = self.config
        managed = set(edit.refs)
        by_image = {i.image: i for i in wanted}
        fresh: dict[str, NodeMemo] = {}
        for node in nodes:
            memo = self.memo.get(node.name)
            patched = False  # the target patched for the edit (not planned anew)
            pods_here = pod_images.get(node.name, NO_POD_IMAGES)
            held = present.get(node.name, EMPTY)
            if memo is None:
                placements = self._fresh_placements.pop(node.name, {})
                target = self.book.planned(
                    node, wanted, managed, now, edit.limited, placements, pods_here, held
                )
                memo = NodeMemo(node=node, target=target, placements=placements)
            elif (
                edit.everything
                or (memo.node is not node and memo.node != node)
                or memo.target.pod_images != pods_here
                or (memo.target.held is not None and memo.target.held != held)
            ):
                old = memo.target
                if not same_placement(memo.node, node):
                    memo.placements = self._fresh_placements.pop(node.name, {})
                memo.node = node
                memo.target = self.book.planned(
                    node, wanted, managed, now, edit.limited, memo.placements, pods_here, held
                )
                # A node that changed (its images' sizes, its disk) keeps its cells while its
                # target places the same images and leaves out the same ones, as large.
                memo.rebuild = not edit.empty or not same_cells(old, memo.target)
            else:
                memo.node = node
                if not edit.empty:
                    memo.target = self.book.patch(memo, wanted, by_image, managed, edit, now, held)
                    patched = not memo.rebuild
                urgent = recent(node.ready_since or node.created, now, config.urgent_window)
                if memo.target.urgent_recent != urgent:
                    memo.target = dataclasses.replace(memo.target, urgent_recent=urgent)
            if edit.rescored and memo.left_out and not memo.rebuild:
                memo.left_out = with_scores(memo.left_out, by_image)
            self.book.node_pods(memo, present.get(node.name, EMPTY), edit, patched=patched)
            fresh[node.name] = memo
        for name, memo in self.memo.items():
            if name not in fresh:
                self.cellbook.drop(memo)
        self.memo = fresh
        self._fresh_placements = {}
        return {name: memo.target for name, memo in fresh.items()}

    def _node_summary(self, memo: NodeMemo) -> NodeSummary:
        """node_summary(), kept while the node's target and counts are the same objects."""
        made = memo.summary
        if made is None or made[0] is not memo.target or made[1] is not memo.tally:
            made = memo.summary = (memo.target, memo.tally, node_summary(memo.target, memo.tally))
        return made[2]
