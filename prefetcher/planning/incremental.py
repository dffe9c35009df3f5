"""Planning in proportion to what changed: each pass reuses the previous pass's per-node and
per-image work wherever its inputs are the same, and returns the Plan `plan()` would.

What is kept between passes, and what makes it stale:

- per image: the merged facts of its CachedImages (same objects, same size hint, same UTC
  day) — a new, re-specified or re-scored image is merged again;
- per pod: a keeper's running images, a puller's results (same object);
- per node: its target (placement and disk budget), the keeper it should run, the images
  it misses, and its report cells with their counts. A node that joined or changed is
  planned from scratch; an image added, removed or re-ranked is patched into every node
  (its cells inserted or removed in place) unless the node's disk budget is under
  pressure; a node's cells are rebuilt only for the images whose inputs changed there
  (present, pulling, started, failed, waiting).

The stages that decide writes (pullers, pulls, keepers, taints) run every pass over the
remembered per-node results, so their cost follows the pods and the missing images, not
nodes x images. `full()` forgets everything first: the controller runs it at every sweep.
What is kept per node is `memo.NodeMemo`; the cells and their counts, `cellbook.CellBook`.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping
from datetime import datetime

from imagesync.config import Config
from prefetcher import budget as budgets
from prefetcher import observe, pods, scoring
from prefetcher.model import (
    BudgetExclusion,
    ManagedPod,
    NodeInfo,
    NodeSummary,
    Plan,
    Snapshot,
    WantedImage,
)
from prefetcher.planning.cellbook import CellBook
from prefetcher.planning.demand import DemandIndex, demand_index
from prefetcher.planning.images import (
    ImageFacts,
    MergedImage,
    group_images,
    image_facts,
    merged_image,
    placement,
    ranked,
    recent,
    size_hints,
    size_on,
)
from prefetcher.planning.keepers import plan_keepers
from prefetcher.planning.memo import EMPTY, ImageEdit, NodeMemo
from prefetcher.planning.pullers import read_pullers
from prefetcher.planning.pulls import choose_pulls
from prefetcher.planning.state import PlanState
from prefetcher.planning.summary import node_summary, result
from prefetcher.planning.taints import plan_startup_taints
from prefetcher.planning.targets import (
    NOT_PREDICTED,
    NodeTarget,
    limited_nodes,
    node_pod_images,
    node_target,
)

# Past this share of the wanted images changed, every node is planned from scratch.
PATCH_LIMIT = 0.25


SharedLists = tuple[list[str], frozenset[str], dict[str, str]]
PodFacts = tuple[frozenset[str], Mapping[str, observe.PullResult], frozenset[str]]


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
        return self._planner.pod_facts(pod)[0]

    def puller_results(self, pod: ManagedPod) -> Mapping[str, observe.PullResult]:
        return self._planner.pod_facts(pod)[1]

    def keeper_for(self, entry: NodeTarget) -> tuple[list[str], str]:
        return self._planner.memo[entry.node.name].keeper

    def missing(self, entry: NodeTarget) -> list[str]:
        return self._planner.memo[entry.node.name].missing


class IncrementalPlanner:
    """`plan(snapshot)` equals `prefetcher.planner.plan(snapshot, config)`, computed from
    the previous pass's results where they still hold. One caller at a time."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.memo: dict[str, NodeMemo] = {}
        self._sources: dict[str, tuple[str, ...]] = {}  # image → sources that count (config's)
        self._forget()

    def _forget(self) -> None:
        self.memo = {}
        self._facts: dict[str, tuple[tuple[WantedImage, ...], int | None, datetime, ImageFacts]]
        self._facts = {}
        self._hint_nodes: dict[str, NodeInfo] = {}
        self._hints: dict[str, int] = {}
        self._pods: dict[tuple[str, str], tuple[ManagedPod, PodFacts]] = {}
        self._seen_pods: dict[tuple[str, str], tuple[ManagedPod, PodFacts]] = {}
        self._refs: list[str] = []
        self._info: dict[str, tuple[tuple[int, float, str], str, int, frozenset[str] | None]]
        self._info = {}
        self.cellbook = CellBook()
        # Image lists shared by equal targets, and this pass's results made once for all
        # nodes that share their inputs (keyed by the inputs' ids; the values hold them).
        self._interned: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], SharedLists] = {}
        self._sets: dict[frozenset[str], frozenset[str]] = {}
        self._patches: dict[
            tuple[int, int, tuple[str | None, ...]], tuple[object, object, SharedLists]
        ] = {}
        self._pod_sets: dict[
            tuple[int, int], tuple[frozenset[str], frozenset[str], frozenset[str], list[str]]
        ] = {}

    def full(self, snapshot: Snapshot) -> Plan:
        """Forget every remembered result and plan from scratch."""
        self._forget()
        return self.plan(snapshot)

    def plan(self, snapshot: Snapshot) -> Plan:
        """The plan of `snapshot`, reusing what the previous pass computed."""
        try:
            return self._plan(snapshot)
        except BaseException:
            self._forget()  # half-updated memory must not shape the next pass
            raise

    def _plan(self, snapshot: Snapshot) -> Plan:
        config, now = self.config, snapshot.now
        nodes = sorted({n.name: n for n in snapshot.nodes}.values(), key=lambda n: n.name)
        demand = demand_index(snapshot.demand, nodes, config, now)
        images = self._merge(snapshot, nodes, demand)
        wanted = [i for i in images if i.wanted]
        edit = self._edit(wanted, limited_nodes(nodes, wanted, config, demand))
        self._patches, self._pod_sets = {}, {}
        if len(self._interned) > 4 * len(nodes) + 64:
            self._interned = {}
        if len(self._sets) > 4 * len(snapshot.pods) + 64:
            self._sets = {}
        ordered = sorted(snapshot.pods, key=lambda p: (p.node, p.role, p.name, p.uid))
        self._seen_pods = {}
        present = self._present(ordered)
        pod_images = node_pod_images(snapshot, edit.position)
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
        self._pods = self._seen_pods
        return result(state, [self._node_summary(memo) for memo in self.memo.values()])

    # --- images ---------------------------------------------------------------------------

    def _merge(
        self, snapshot: Snapshot, nodes: list[NodeInfo], demand: DemandIndex
    ) -> list[MergedImage]:
        """merge_images(), reusing each image's facts while its objects, hint and day hold."""
        config, now = self.config, snapshot.now
        hints = self._size_hints(nodes)
        day = scoring.day_start(now)
        known, self._facts = self._facts, {}
        merged: list[MergedImage] = []
        if len(self._sources) > 2 * len(snapshot.images) + 64:
            self._sources = {}  # images long gone
        for image, objects in group_images(snapshot.images, config, self._sources).items():
            key = tuple(objects)
            hint = hints.get(image)
            hit = known.get(image)
            if (
                hit is not None
                and hit[1] == hint
                and hit[2] == day
                and len(hit[0]) == len(key)
                and all(a is b for a, b in zip(hit[0], key, strict=True))
            ):
                facts = hit[3]
            elif (
                hit is not None
                and hit[1] == hint
                and hit[2] == day
                and len(hit[0]) == len(key)
                and all(map(_same_but_status, hit[0], key))
            ):
                # Only the status the prefetcher writes changed: the same facts, holding
                # the new objects (their status is compared with what a pass reports).
                facts = _with_objects(hit[3], key)
            else:
                facts = image_facts(image, objects, hint, day, config)
            self._facts[image] = (key, hint, day, facts)
            merged.append(merged_image(facts, now, config, demand))
        return ranked(merged)

    def _size_hints(self, nodes: list[NodeInfo]) -> dict[str, int]:
        """size_hints() of the nodes; nodes that joined only add their own."""
        known = self._hint_nodes
        current = {n.name: n for n in nodes}
        for name, node in known.items():
            now = current.get(name)
            if now is None or (
                now.hinted_images is not node.hinted_images
                and now.hinted_images != node.hinted_images
            ):
                self._hints = size_hints(nodes)
                break
        else:
            joined = [n for name, n in current.items() if name not in known]
            for image, size in size_hints(joined).items():
                self._hints[image] = max(self._hints.get(image, 0), size)
        self._hint_nodes = current
        return self._hints

    def _edit(self, wanted: list[MergedImage], limited: Mapping[str, frozenset[str]]) -> ImageEdit:
        refs = [i.image for i in wanted]
        info = {i.image: (i.rank, i.placement_key, i.size, limited.get(i.image)) for i in wanted}
        old = self._info
        rescored = False
        if refs == self._refs:
            # Same images in the same order: a new score alone moves no image in any target
            # (only the order does), so those images are not patched into every node.
            changed = [ref for ref in refs if old[ref][1:] != info[ref][1:]]
            rescored = any(old[ref][0] != info[ref][0] for ref in refs)
        else:
            changed = [ref for ref in refs if old.get(ref) != info[ref]]
        removed = set(changed).intersection(old).union(ref for ref in old if ref not in info)
        everything = not old or len(changed) + len(removed) > max(4, PATCH_LIMIT * len(refs))
        edit = ImageEdit(
            refs=refs,
            position={ref: index for index, ref in enumerate(refs)},
            changed=changed,
            removed=removed,
            old_position={ref: index for index, ref in enumerate(self._refs)},
            old_size={ref: old[ref][2] for ref in removed},
            touched=removed.union(changed),
            limited=limited,
            everything=everything,
            rescored=rescored,
        )
        self._refs, self._info = refs, info
        return edit

    # --- pods -----------------------------------------------------------------------------

    def pod_facts(self, pod: ManagedPod) -> PodFacts:
        """A pod's running images (keeper), results and pulled images (puller), remembered
        while the pod object is the same."""
        key = (pod.name, pod.uid)
        hit = self._seen_pods.get(key) or self._pods.get(key)
        if hit is None or hit[0] is not pod:
            if pod.role == "keeper":
                running = observe.keeper_running_images(pod)
                facts: PodFacts = (self._sets.setdefault(running, running), {}, EMPTY)
            else:
                results = observe.puller_results(pod)
                pulled = frozenset(image for image, r in results.items() if r.succeeded)
                facts = (EMPTY, results, self._sets.setdefault(pulled, pulled))
            hit = (pod, facts)
        self._seen_pods[key] = hit
        return hit[1]

    def _present(self, ordered: list[ManagedPod]) -> dict[str, frozenset[str]]:
        """observe.present_images(), sharing one pod's set when a node has only that."""
        present: dict[str, frozenset[str]] = {}
        for pod in ordered:
            running, _, pulled = self.pod_facts(pod)
            images = running if pod.role == "keeper" else pulled
            if images:
                before = present.get(pod.node)
                present[pod.node] = images if before is None else before | images
        return present

    # --- targets --------------------------------------------------------------------------

    def _targets(
        self,
        nodes: list[NodeInfo],
        wanted: list[MergedImage],
        edit: ImageEdit,
        present: Mapping[str, frozenset[str]],
        pod_images: Mapping[str, frozenset[str]],
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
            pods_here = pod_images.get(node.name, EMPTY)
            held = present.get(node.name, EMPTY)
            if memo is None:
                placements: dict[str, str | None] = {}
                target = self._shared(
                    node_target(
                        node,
                        wanted,
                        managed,
                        config,
                        now,
                        edit.limited,
                        placements,
                        pods_here,
                        held,
                    )
                )
                memo = NodeMemo(node=node, target=target, placements=placements)
            elif (
                edit.everything
                or (memo.node is not node and memo.node != node)
                or memo.target.pod_images != pods_here
                or (memo.target.held is not None and memo.target.held != held)
            ):
                memo.node, memo.placements, memo.rebuild = node, {}, True
                memo.target = self._shared(
                    node_target(
                        node,
                        wanted,
                        managed,
                        config,
                        now,
                        edit.limited,
                        memo.placements,
                        pods_here,
                        held,
                    )
                )
            else:
                memo.node = node
                if not edit.empty:
                    memo.target = self._patch_target(
                        memo, wanted, by_image, managed, edit, now, held
                    )
                elif edit.rescored and memo.left_out:
                    memo.left_out = _rescored(memo.left_out, by_image)
                urgent = recent(node.ready_since or node.created, now, config.urgent_window)
                if memo.target.urgent_recent != urgent:
                    memo.target = dataclasses.replace(memo.target, urgent_recent=urgent)
            self._node_pods(memo, present.get(node.name, EMPTY), edit)
            fresh[node.name] = memo
        for name, memo in self.memo.items():
            if name not in fresh:
                self.cellbook.drop(memo)
        self.memo = fresh
        return {name: memo.target for name, memo in fresh.items()}

    def _patch_target(
        self,
        memo: NodeMemo,
        wanted: list[MergedImage],
        by_image: Mapping[str, MergedImage],
        managed: set[str],
        edit: ImageEdit,
        now: datetime,
        held: frozenset[str],
    ) -> NodeTarget:
        """The node's target with the changed images placed in or taken out, when its disk
        budget keeps every placed image whichever are held (else planned anew: what fits
        may shift), and none of them is one its pods use (their bytes count apart)."""
        old, node, config = memo.target, memo.node, self.config
        if not old.left_out and edit.touched.isdisjoint(old.pod_images):
            placements = memo.placements
            whys: list[str | None] = []
            for ref in edit.changed:
                key = by_image[ref].placement_key
                if key not in placements:
                    placements[key] = placement(by_image[ref], node, config)
                why = placements[key]
                only = edit.limited.get(ref)
                if why is None and only is not None and node.name not in only:
                    why = NOT_PREDICTED
                whys.append(why)
            fitted, fitted_set, not_placed = self._patched(old, tuple(whys), edit)
            hinted = node.hinted_images
            used, alone = old.budget_used, old.budget_alone
            for ref in edit.removed:
                if ref in old.fitted_set:
                    size = hinted.get(ref) or edit.old_size[ref]
                    used, alone = used - size, alone - size
            for ref, why in zip(edit.changed, whys, strict=True):
                if why is None:
                    size = size_on(by_image[ref], node)
                    used, alone = used + size, alone + size
            room = old.room
            if (
                room is not None
                and node.image_fs_other_used is None
                and not edit.touched.isdisjoint(hinted.keys())
            ):
                room = budgets.node_room(node, config, managed, room.pods, room.pod_images)
            if budgets.fits_all(room, used, alone):
                budget = budgets.shown_budget(room, used, alone)
                return NodeTarget(
                    node=node,
                    problem=old.problem,
                    urgent_recent=old.urgent_recent,
                    budget=budget,
                    budget_used=used,
                    fitted=fitted,
                    not_placed=not_placed,
                    fitted_set=fitted_set,
                    budget_reason=budgets.budget_reason(room),
                    room=room,
                    budget_alone=alone,
                    pod_images=old.pod_images,
                )
        memo.rebuild = True
        return self._shared(
            node_target(
                node,
                wanted,
                managed,
                config,
                now,
                edit.limited,
                memo.placements,
                old.pod_images,
                held,
            )
        )

    def _patched(
        self, old: NodeTarget, whys: tuple[str | None, ...], edit: ImageEdit
    ) -> tuple[list[str], frozenset[str], dict[str, str]]:
        """A target's images with the edit applied (`whys`: where the changed ones may not
        go), made once for every node that shared the same ones before."""
        key = (id(old.fitted), id(old.not_placed), whys)
        hit = self._patches.get(key)
        if hit is not None and hit[0] is old.fitted and hit[1] is old.not_placed:
            return hit[2]
        not_placed = dict(old.not_placed)
        fitted = list(old.fitted)
        for ref in edit.removed:
            not_placed.pop(ref, None)
            if ref in old.fitted_set:
                fitted.remove(ref)
        for ref, why in zip(edit.changed, whys, strict=True):
            if why is not None:
                not_placed[ref] = why
            else:
                bisect.insort(fitted, ref, key=edit.position.__getitem__)
        made = (fitted, frozenset(fitted), not_placed)
        self._patches[key] = (old.fitted, old.not_placed, made)
        return made

    def _shared(self, target: NodeTarget) -> NodeTarget:
        """`target` holding the same image lists as an equal one planned before (nodes of
        one pool then share them, and a later patch is made once for all of them)."""
        key = (tuple(target.fitted), tuple(target.not_placed.items()))
        known = self._interned.setdefault(
            key, (target.fitted, target.fitted_set, target.not_placed)
        )
        target.fitted, target.fitted_set, target.not_placed = known
        return target

    def _node_pods(self, memo: NodeMemo, present: frozenset[str], edit: ImageEdit) -> None:
        """The node's keeper images and missing images, for its present images."""
        target = memo.target
        if target.fitted_set is memo.fitted_seen and present is memo.present:
            return
        key = (id(target.fitted_set), id(present))
        hit = self._pod_sets.get(key)
        if hit is None or hit[0] is not target.fitted_set or hit[1] is not present:
            missing = target.fitted_set - present
            ordered = sorted(missing, key=edit.position.__getitem__) if missing else []
            hit = self._pod_sets[key] = (
                target.fitted_set,
                present,
                target.fitted_set & present,
                ordered,
            )
        desired = hit[2]
        if desired != memo.desired:
            ordered = sorted(desired)
            memo.keeper = (ordered, pods.keeper_name(target.node.name, ordered) if ordered else "")
        memo.desired, memo.missing = desired, hit[3]
        memo.present, memo.fitted_seen = present, target.fitted_set

    def _node_summary(self, memo: NodeMemo) -> NodeSummary:
        """node_summary(), kept while the node's target and counts are the same objects."""
        made = memo.summary
        if made is None or made[0] is not memo.target or made[1] is not memo.tally:
            made = memo.summary = (memo.target, memo.tally, node_summary(memo.target, memo.tally))
        return made[2]


def _rescored(
    left_out: list[BudgetExclusion], by_image: Mapping[str, MergedImage]
) -> list[BudgetExclusion]:
    """A node's budget exclusions (the report shows them with their images' scores) with
    the current scores."""
    out = []
    for b in left_out:
        score = by_image[b.image].score
        out.append(
            b if b.score == score else BudgetExclusion(b.node, b.image, b.size, score, b.why)
        )
    return out


def _same_but_status(old: WantedImage, new: WantedImage) -> bool:
    """The two objects differ at most in the status the prefetcher reports."""
    return old is new or dataclasses.replace(new, reported=old.reported) == old


def _with_objects(facts: ImageFacts, objects: tuple[WantedImage, ...]) -> ImageFacts:
    """`facts` holding `objects` (the same objects but for their status) in its order."""
    by_name = {o.name: o for o in objects}
    return dataclasses.replace(facts, objects=tuple(by_name[o.name] for o in facts.objects))
