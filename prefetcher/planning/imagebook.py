"""The images stage of incremental planning: each image's merged facts, merged image and
status kept between passes while their inputs are the same objects, and how the wanted
images changed since the last pass (the edit every node's target is patched with)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from operator import is_

from imagesync.config import Config
from prefetcher import scoring
from prefetcher.model import NodeInfo, Snapshot, WantedImage
from prefetcher.planning.demand import DemandIndex
from prefetcher.planning.images import (
    ImageFacts,
    MergedImage,
    group_images,
    image_facts,
    merged_image,
    ranked,
)
from prefetcher.planning.memo import ImageEdit, same_but_status, steady_until, with_objects
from prefetcher.planning.state import ImageStatus, MakeImageStatus

# Past this share of the wanted images changed, every node is planned from scratch.
PATCH_LIMIT = 0.25


# (facts, templated, released, made at, steady until, the merged image)
_MergedHit = tuple[ImageFacts, bool, bool, datetime, datetime, MergedImage]


class ImageBook:
    """Per image: its facts (same objects, size hint and UTC day), its merged image (same
    facts and demand, no moment passed at which time alone changes it) and its status
    patches and summary (same merged image and counts); and the last pass's wanted images,
    to tell what changed."""

    def __init__(self, config: Config, sources: dict[str, tuple[str, ...]]) -> None:
        self.config = config
        self._sources = sources  # image → sources that count (config's); kept by the planner
        self._facts: dict[str, tuple[tuple[WantedImage, ...], int | None, datetime, ImageFacts]]
        self._facts = {}
        self._objects: tuple[WantedImage, ...] | None = None  # the last pass's CachedImages
        self._day: datetime | None = None
        self._fact_order: list[ImageFacts] = []  # their facts, in the order merged
        self._hint_nodes: dict[str, NodeInfo] = {}
        self._hints: dict[str, int] = {}
        self._image_hints: dict[str, dict[str, int]] = {}  # image → node → its size there
        self._merged: dict[str, _MergedHit] = {}
        self._seen_merged: dict[str, _MergedHit] = {}
        self._statuses: dict[str, tuple[MergedImage, tuple[int, ...], str, ImageStatus]] = {}
        self._seen_statuses: dict[str, tuple[MergedImage, tuple[int, ...], str, ImageStatus]] = {}
        self._wanted: list[MergedImage] = []  # the last pass's
        self._unchanged: ImageEdit | None = None  # the edit of a pass with the same images
        self._unranked: list[MergedImage] = []  # the last pass's images, before ranking
        self._ranked: list[MergedImage] = []
        self._refs: list[str] = []
        self._info: dict[str, tuple[tuple[int, float, str], str, int, frozenset[str] | None]]
        self._info = {}

    def end_pass(self) -> None:
        """Keep the statuses this pass used, for the next one."""
        self._statuses, self._seen_statuses = self._seen_statuses, {}

    def merge(
        self, snapshot: Snapshot, nodes: list[NodeInfo], demand: DemandIndex
    ) -> list[MergedImage]:
        """merge_images(), reusing each image's facts while its objects, hint and day hold."""
        config, now = self.config, snapshot.now
        hints, hints_moved = self._size_hints(nodes)
        day = scoring.day_start(now)
        if snapshot.images is self._objects and not hints_moved and day == self._day:
            # The same CachedImage objects, hints and day: every image's facts as before.
            merged = [self._merged_image(facts, now, demand) for facts in self._fact_order]
            return self._ranked_images(merged)
        self._objects, self._day = snapshot.images, day
        known, self._facts = self._facts, {}
        merged = []
        if len(self._sources) > 2 * len(snapshot.images) + 64:
            self._sources.clear()  # images long gone
        for image, objects in group_images(snapshot.images, config, self._sources).items():
            key = tuple(objects)
            hint = hints.get(image)
            hit = known.get(image)
            same_inputs = (
                hit is not None and hit[1] == hint and hit[2] == day and len(hit[0]) == len(key)
            )
            if hit is not None and same_inputs and all(map(is_, hit[0], key)):
                facts = hit[3]
            elif hit is not None and same_inputs and all(map(same_but_status, hit[0], key)):
                # Only the status the prefetcher writes changed: the same facts, holding
                # the new objects (their status is compared with what a pass reports).
                facts = with_objects(hit[3], key)
            else:
                facts = image_facts(image, objects, hint, day, config)
            self._facts[image] = (key, hint, day, facts)
            merged.append(self._merged_image(facts, now, demand))
        self._fact_order = [hit[3] for hit in self._facts.values()]
        return self._ranked_images(merged)

    def _ranked_images(self, merged: list[MergedImage]) -> list[MergedImage]:
        """ranked(merged), the last pass's order while the merged images are the same."""
        self._merged, self._seen_merged = self._seen_merged, {}
        if len(merged) == len(self._unranked) and all(map(is_, merged, self._unranked)):
            return list(self._ranked)  # the same images: the same order
        self._unranked = merged.copy()
        self._ranked = ranked(merged)
        return self._ranked

    def _merged_image(self, facts: ImageFacts, now: datetime, demand: DemandIndex) -> MergedImage:
        """merged_image(), the same object while its facts and demand are the same and no
        moment passed at which time alone changes it (`steady_until`)."""
        need = demand.of(facts.image)
        templated = need is not None and need.templated
        released = facts.image in demand.released
        hit = self._merged.get(facts.image)
        if (
            hit is None
            or hit[0] is not facts
            or hit[1] != templated
            or hit[2] != released
            or not hit[3] <= now < hit[4]
        ):
            merged = merged_image(facts, now, self.config, demand)
            until = steady_until(facts, now, self.config)
            hit = (facts, templated, released, now, until, merged)
        self._seen_merged[facts.image] = hit
        return hit[5]

    def _size_hints(self, nodes: list[NodeInfo]) -> tuple[dict[str, int], bool]:
        """size_hints() of the nodes, updated for the nodes that joined, left or list other
        images (every pull changes one node's list); and whether any node's list changed."""
        known, current = self._hint_nodes, {n.name: n for n in nodes}
        by_image, hints = self._image_hints, self._hints
        changed = [name for name in known.keys() - current.keys()]
        changed += [
            name
            for name, node in current.items()
            if (old := known.get(name)) is None
            or (
                old.hinted_images is not node.hinted_images
                and old.hinted_images != node.hinted_images
            )
        ]
        # A size added can only raise an image's hint; an image whose largest size went is
        # summed again once, after every node (so a sweep's cost follows the nodes' lists).
        stale: set[str] = set()
        for name in changed:
            old, new = known.get(name), current.get(name)
            before = old.hinted_images if old is not None else {}
            after = new.hinted_images if new is not None else {}
            for image, size in before.items():
                del by_image[image][name]
                if size >= hints[image]:
                    stale.add(image)
            for image, size in after.items():
                by_image.setdefault(image, {})[name] = size
                if image not in stale and size > hints.get(image, -1):
                    hints[image] = size
        for image in stale:
            sizes = by_image.get(image)
            if sizes:
                hints[image] = max(sizes.values())
            else:
                by_image.pop(image, None)
                hints.pop(image, None)
        self._hint_nodes = current
        return hints, bool(changed)

    def edit(self, wanted: list[MergedImage], limited: Mapping[str, frozenset[str]]) -> ImageEdit:
        if (
            self._unchanged is not None
            and len(wanted) == len(self._wanted)
            and all(map(is_, wanted, self._wanted))
            and limited == self._unchanged.limited
        ):
            return self._unchanged  # the same images (objects): nothing to patch
        self._wanted, self._unchanged = wanted, None
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
        if info:  # the next pass's edit, if its images are these same objects
            position = edit.position
            self._unchanged = ImageEdit(
                refs, position, [], set(), position, {}, set(), limited, everything=False
            )
        return edit

    def image_status(
        self, image: MergedImage, states: tuple[int, ...], last_error: str, make: MakeImageStatus
    ) -> ImageStatus:
        """An image's status patches and summary, the same while the merged image (its
        objects and their status) and its counts are."""
        hit = self._statuses.get(image.image)
        if hit is None or hit[0] is not image or hit[1] != states or hit[2] != last_error:
            hit = (image, states, last_error, make(image, states, last_error))
        self._seen_statuses[image.image] = hit
        return hit[3]
