"""The incremental planner's targets stage: a node's target patched for the images that
changed instead of planned anew, its keeper and missing images, and the image lists equal
targets share (nodes of one pool then share them, and a patch is made once for all)."""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from itertools import filterfalse

from imagesync.config import Config
from prefetcher import budget as budgets
from prefetcher import pods
from prefetcher.model import NodeInfo
from prefetcher.planning.images import MergedImage, placement, size_on
from prefetcher.planning.memo import ImageEdit, NodeMemo
from prefetcher.planning.targets import NOT_PREDICTED, NodeTarget, PodImages, node_target

SharedLists = tuple[list[str], frozenset[str], dict[str, str]]


class TargetBook:
    """Per-pass results made once for every node that shares their inputs (keyed by the
    inputs' ids; the values hold them), and the image lists shared by equal targets."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.interned: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], SharedLists] = {}
        self.patches: dict[
            tuple[int, int, tuple[str | None, ...]], tuple[object, object, SharedLists]
        ] = {}
        self.pod_sets: dict[
            tuple[int, int], tuple[frozenset[str], frozenset[str], frozenset[str], list[str]]
        ] = {}

    def new_pass(self, nodes: int) -> None:
        """Forget the previous pass's results; keep the shared lists while they stay few."""
        self.patches, self.pod_sets = {}, {}
        if len(self.interned) > 4 * nodes + 64:
            self.interned = {}

    def patch(
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
        may shift), and none of them is one its pods use (their bytes count apart). A node
        whose budget leaves images out is patched only when no image it places changed."""
        old, node, config = memo.target, memo.node, self.config
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
        same_fit = None not in whys and edit.removed <= old.not_placed.keys()
        if edit.touched.isdisjoint(old.pod_images.every) and (not old.left_out or same_fit):
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
                room = budgets.node_room(
                    node, config, managed, room.pods, room.pod_images, room.lately
                )
            fits = room == old.room if old.left_out else budgets.fits_all(room, used, alone)
            if fits:
                budget = budgets.shown_budget(room, used, alone)
                return NodeTarget(
                    node=node,
                    problem=old.problem,
                    urgent_recent=old.urgent_recent,
                    budget=budget,
                    budget_used=used,
                    fitted=fitted,
                    not_placed=not_placed,
                    left_out=old.left_out,
                    fitted_set=fitted_set,
                    budget_reason=(
                        old.budget_reason if room is old.room else budgets.budget_reason(room)
                    ),
                    room=room,
                    budget_alone=alone,
                    pod_images=old.pod_images,
                    held=old.held,
                )
        memo.rebuild = True
        return self.planned(
            node, wanted, managed, now, edit.limited, memo.placements, old.pod_images, held
        )

    def planned(
        self,
        node: NodeInfo,
        wanted: Sequence[MergedImage],
        managed: Collection[str],
        now: datetime,
        limited: Mapping[str, frozenset[str]],
        placements: dict[str, str | None],
        pod_images: PodImages,
        held: frozenset[str],
    ) -> NodeTarget:
        """The node's target planned anew, holding the image lists equal targets share."""
        return self.shared(
            node_target(
                node, wanted, managed, self.config, now, limited, placements, pod_images, held
            )
        )

    def _patched(
        self, old: NodeTarget, whys: tuple[str | None, ...], edit: ImageEdit
    ) -> tuple[list[str], frozenset[str], dict[str, str]]:
        """A target's images with the edit applied (`whys`: where the changed ones may not
        go), made once for every node that shared the same ones before."""
        key = (id(old.fitted), id(old.not_placed), whys)
        hit = self.patches.get(key)
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
        self.patches[key] = (old.fitted, old.not_placed, made)
        return made

    def shared(self, target: NodeTarget) -> NodeTarget:
        """`target` holding the same image lists as an equal one planned before (nodes of
        one pool then share them, and a later patch is made once for all of them)."""
        key = (tuple(target.fitted), tuple(target.not_placed.items()))
        known = self.interned.setdefault(key, (target.fitted, target.fitted_set, target.not_placed))
        target.fitted, target.fitted_set, target.not_placed = known
        return target

    def node_pods(
        self, memo: NodeMemo, present: frozenset[str], edit: ImageEdit, *, patched: bool = False
    ) -> None:
        """The node's keeper images and missing images, for its present images (`patched`:
        its target is the last pass's patched for `edit`)."""
        target = memo.target
        if target.fitted_set is memo.fitted_seen and present is memo.present:
            return
        if patched and present is memo.present and memo.fitted_seen is not None:
            _patch_pods(memo, edit)
            return
        key = (id(target.fitted_set), id(present))
        hit = self.pod_sets.get(key)
        if hit is None or hit[0] is not target.fitted_set or hit[1] is not present:
            missing = target.fitted_set - present
            ordered = sorted(missing, key=edit.position.__getitem__) if missing else []
            hit = self.pod_sets[key] = (
                target.fitted_set,
                present,
                target.fitted_set & present,
                ordered,
            )
        desired = hit[2]
        if desired != memo.desired:
            ordered = sorted(desired)
            memo.keeper = (ordered, pods.keeper_name(target.node.name, ordered) if ordered else "")
            memo.desired = desired  # (else the same object: the cells' counts see no change)
        memo.missing = hit[3]
        memo.present, memo.fitted_seen = present, target.fitted_set


def _patch_pods(memo: NodeMemo, edit: ImageEdit) -> None:
    """`node_pods` of a target patched for `edit`, with the same present images: its images
    differ from the last pass's only in the images the edit touched, and the others keep
    their order, so the missing images are the last pass's with the touched ones taken out
    and put in at their place (a new image: one insertion per node, not a sort of every
    image the node misses)."""
    before, after, present = memo.fitted_seen, memo.target.fitted_set, memo.present
    assert before is not None
    missing = memo.missing
    drop = {ref for ref in edit.touched if ref in before and ref not in present}
    if drop:
        missing = list(filterfalse(drop.__contains__, missing))
    add = [ref for ref in edit.changed if ref in after and ref not in present]
    if add:
        missing = missing.copy() if not drop else missing
        for ref in add:
            bisect.insort(missing, ref, key=edit.position.__getitem__)
    if not edit.touched.isdisjoint(present):
        desired = after & present
        if desired != memo.desired:
            ordered = sorted(desired)
            name = memo.target.node.name
            memo.keeper = (ordered, pods.keeper_name(name, ordered) if ordered else "")
            memo.desired = desired
    memo.missing, memo.fitted_seen = missing, after
